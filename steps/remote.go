package steps

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/pgsdr/sdr/cluster"
)

// remoteFacts is what the standby side learns of the primary with the
// replication user's credentials.
type remoteFacts struct {
	Node        *cluster.Node
	VersionNum  int
	SystemID    string
	TimeLineID  int          // the primary's current timeline
	Tablespaces []tablespace // besides pg_default and pg_global
}

// The current timeline is the first 8 hex digits of the current WAL file's
// name (a function any role may call, unlike IDENTIFY_SYSTEM over SQL).
const remoteFactsSQL = `SELECT pg_is_in_recovery(),
	current_setting('server_version_num')::int,
	(SELECT system_identifier::text FROM pg_control_system()),
	CASE WHEN pg_is_in_recovery() THEN 0 ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END,
	coalesce((SELECT string_agg(oid::text || E'\t' || spcname || E'\t' || pg_tablespace_location(oid), E'\n' ORDER BY oid)
		FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')), '')`

// parseTablespaces reads the tablespace list of remoteFactsSQL.
func parseTablespaces(s string) []tablespace {
	var out []tablespace
	for _, line := range strings.Split(s, "\n") {
		f := strings.SplitN(line, "\t", 3)
		if len(f) == 3 {
			out = append(out, tablespace{OID: f[0], Name: f[1], Location: f[2]})
		}
	}
	return out
}

// remotePrimary connects to each primary-cluster node as the replication
// user, from the main standby's point of view (through its SSH
// connection), and returns the one that is not in recovery.
func (e *Env) remotePrimary(ctx context.Context) (remoteFacts, error) {
	main, _ := e.mainStandby()
	via, err := e.access(ctx, main)
	if err != nil {
		return remoteFacts{}, err
	}
	// Every primary-cluster node at once; the results stay in config order.
	nodes := e.primaryNodes()
	facts := make([]remoteFacts, len(nodes))
	recovering := make([]bool, len(nodes))
	nodeErrs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			facts[i], recovering[i], nodeErrs[i] = e.remoteNodeFacts(ctx, via, n)
		}()
	}
	wg.Wait()
	var errs []error
	var found []remoteFacts
	for i := range nodes {
		if nodeErrs[i] != nil {
			errs = append(errs, nodeErrs[i])
			continue
		}
		if !recovering[i] {
			found = append(found, facts[i])
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
	// With the DR side's main standby out of recovery, the roles moved
	// (a switchover or failover) and the config was not changed: waiting
	// cannot help.
	pairSys := ""
	for i := range nodes {
		if nodeErrs[i] == nil && facts[i].SystemID != "" {
			pairSys = facts[i].SystemID
			break
		}
	}
	var mainInRecovery bool
	var mainSys string
	if err := e.withAdmin(ctx, main, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, "SELECT pg_is_in_recovery(), (SELECT system_identifier::text FROM pg_control_system())").Scan(&mainInRecovery, &mainSys)
	}); err == nil && !mainInRecovery && mainSys == pairSys && pairSys != "" {
		return remoteFacts{}, permanent(fmt.Errorf("no primary in the primary cluster %s (every node reachable from %s is in recovery), and "+
			"the DR side's main standby %s runs as a primary: the roles moved (a switchover or failover); set primary: %s in the "+
			"config on both sides (then this cluster is the primary side)", e.Config.PrimaryName, main.Name, main.Name, e.Config.StandbyName))
	}
	return remoteFacts{}, fmt.Errorf("no primary in the primary cluster: every node reachable from %s is in recovery", main.Name)
}

func (e *Env) remoteNodeFacts(ctx context.Context, via cluster.Access, n *cluster.Node) (remoteFacts, bool, error) {
	cctx, cancel := e.cmdCtx(ctx)
	defer cancel()
	f := remoteFacts{Node: n}
	var inRecovery bool
	var tss string
	var queryErr error
	err := e.withReplUser(cctx, via, n, func(ctx context.Context, c *pgx.Conn) error {
		queryErr = c.QueryRow(ctx, remoteFactsSQL).Scan(&inRecovery, &f.VersionNum, &f.SystemID, &f.TimeLineID, &tss)
		return queryErr
	})
	switch {
	case err != nil && err == queryErr:
		return f, false, fmt.Errorf("while reading facts of %s as %s: %w", n.Name, e.Config.Replication.User, err)
	case err != nil:
		return remoteFacts{}, false, fmt.Errorf("primary-cluster node %s: %w", n.Name, err)
	}
	f.Tablespaces = parseTablespaces(tss)
	return f, inRecovery, nil
}

var versionRE = regexp.MustCompile(`\(PostgreSQL\) (\d+)`)

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

func (e *Env) fileExists(ctx context.Context, n *cluster.Node, p string) (bool, error) {
	_, err := e.run(ctx, n, "test -e "+q(p), cluster.RunOpts{})
	var ce *cluster.CommandError
	if errors.As(err, &ce) && ce.ExitCode == 1 {
		return false, nil
	}
	return err == nil, err
}
