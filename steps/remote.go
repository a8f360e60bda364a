package steps

import (
	"context"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/pgsdr/sdr/cluster"
)

// remoteFacts is what the standby side learns of the primary with the
// replication user's credentials.
type remoteFacts struct {
	Node       *cluster.Node
	VersionNum int
	SystemID   string
}

const remoteFactsSQL = `SELECT pg_is_in_recovery(),
	current_setting('server_version_num')::int,
	(SELECT system_identifier::text FROM pg_control_system())`

// remotePrimary connects to each primary-cluster node as the replication
// user, from the main standby's point of view (through its SSH
// connection), and returns the one that is not in recovery.
func (e *Env) remotePrimary(ctx context.Context) (remoteFacts, error) {
	main, _ := e.mainStandby()
	via, err := e.access(ctx, main)
	if err != nil {
		return remoteFacts{}, err
	}
	var errs []error
	var found []remoteFacts
	for _, n := range e.primaryNodes() {
		f, inRecovery, err := e.remoteNodeFacts(ctx, via, n)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !inRecovery {
			found = append(found, f)
		}
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) > 1:
		return remoteFacts{}, permanent(fmt.Errorf("%d nodes of the primary cluster are out of recovery (%s and %s)",
			len(found), found[0].Node.Name, found[1].Node.Name))
	case len(errs) > 0:
		return remoteFacts{}, fmt.Errorf("no primary reachable with replication user %s from %s: %w",
			e.Config.Replication.User, main.Name, errors.Join(errs...))
	}
	return remoteFacts{}, fmt.Errorf("no primary in the primary cluster: every node reachable from %s is in recovery", main.Name)
}

func (e *Env) remoteNodeFacts(ctx context.Context, via cluster.Access, n *cluster.Node) (remoteFacts, bool, error) {
	cctx, cancel := e.cmdCtx(ctx)
	defer cancel()
	c, err := cluster.ConnectReplUser(cctx, e.Config, via, n.Host, n.PGPort, e.Password, e.Config.Postgres.Database)
	if err != nil {
		return remoteFacts{}, false, fmt.Errorf("primary-cluster node %s: %w", n.Name, err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	f := remoteFacts{Node: n}
	var inRecovery bool
	if err := c.QueryRow(cctx, remoteFactsSQL).Scan(&inRecovery, &f.VersionNum, &f.SystemID); err != nil {
		return f, false, fmt.Errorf("while reading facts of %s as %s: %w", n.Name, e.Config.Replication.User, err)
	}
	return f, inRecovery, nil
}

// pgRunning reports whether PostgreSQL runs in dir on n (pg_ctl status:
// 0 running, 3 not running, 4 no data directory).
func (e *Env) pgRunning(ctx context.Context, n *cluster.Node, dir string) (bool, error) {
	_, err := e.run(ctx, n, bin(n, "pg_ctl")+" status -D "+q(dir), cluster.RunOpts{})
	var ce *cluster.CommandError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &ce) && (ce.ExitCode == 3 || ce.ExitCode == 4):
		return false, nil
	}
	return false, fmt.Errorf("while checking whether PostgreSQL runs in %s: %w", dir, err)
}

var sysIDRE = regexp.MustCompile(`(?m)^Database system identifier:\s+(\d+)`)

// dirSystemID reads the system identifier of data directory dir on n
// with pg_controldata ("" when dir holds no cluster).
func (e *Env) dirSystemID(ctx context.Context, n *cluster.Node, dir string) (string, error) {
	cmd := fmt.Sprintf("if [ -f %s ]; then LC_ALL=C %s -D %s; fi", q(path.Join(dir, "global", "pg_control")), bin(n, "pg_controldata"), q(dir))
	out, err := e.run(ctx, n, cmd, cluster.RunOpts{})
	if err != nil {
		return "", fmt.Errorf("while reading the system identifier of %s: %w", dir, err)
	}
	if m := sysIDRE.FindStringSubmatch(out); m != nil {
		return m[1], nil
	}
	return "", nil
}

// observeStandbyNode tells whether PostgreSQL runs on n, and if so whether
// it is in recovery, and the data directory's system identifier.
func (e *Env) observeStandbyNode(ctx context.Context, n *cluster.Node) (standbyNodeObs, error) {
	o := standbyNodeObs{Node: n.Name}
	running, err := e.pgRunning(ctx, n, n.DataDir)
	if err != nil {
		return o, err
	}
	o.Running = running
	if running {
		f, err := e.nodeFacts(ctx, n)
		if err != nil {
			return o, err
		}
		o.InRecovery, o.SystemID = f.InRecovery, f.SystemID
		return o, nil
	}
	o.SystemID, err = e.dirSystemID(ctx, n, n.DataDir)
	return o, err
}

var versionRE = regexp.MustCompile(`\(PostgreSQL\) (\d+)`)

// binMajor returns the major version of the PostgreSQL binaries on n.
func (e *Env) binMajor(ctx context.Context, n *cluster.Node) (int, error) {
	out, err := e.run(ctx, n, bin(n, "postgres")+" --version", cluster.RunOpts{})
	if err != nil {
		return 0, fmt.Errorf("while checking the PostgreSQL binaries in %s: %w", n.BinDir, err)
	}
	m := versionRE.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("on %s: cannot read a version from %q", n.Name, strings.TrimSpace(out))
	}
	return strconv.Atoi(m[1])
}
