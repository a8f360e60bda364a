package steps

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

func pgpassPath(n *cluster.Node) string { return path.Join(workDir(n), "pgpass") }

// pgpassContent is the password file installed on every standby node: one
// line per host a standby node streams from (the primary-cluster nodes and
// the main standby).
func (e *Env) pgpassContent() []byte {
	var b strings.Builder
	add := func(n cluster.Node) {
		b.WriteString(cluster.PgpassLine(n.Host, strconv.Itoa(n.PGPort), "*", e.Config.Replication.User, e.Password))
		b.WriteString("\n")
	}
	for _, n := range e.Config.Primary.Nodes {
		add(n)
	}
	if m := e.Config.MainStandby(); m != nil {
		add(*m)
	}
	return []byte(b.String())
}

// prepareReplicationStandby drops inactive sdr slots left on running
// standby nodes and installs the replication password file (0600).
func (e *Env) prepareReplicationStandby(ctx context.Context, rc *workflow.RunContext) error {
	content := e.pgpassContent()
	return forEach(ctx, e.standbyNodes(), func(ctx context.Context, n *cluster.Node) error {
		running, err := e.pgRunning(ctx, n, n.DataDir)
		if err != nil {
			return err
		}
		if running {
			if err := e.dropStaleSlots(ctx, rc, n); err != nil {
				return err
			}
		}
		a, err := e.access(ctx, n)
		if err != nil {
			return err
		}
		if _, err := e.run(ctx, n, "mkdir -p "+q(workDir(n))+" && chmod 700 "+q(workDir(n)), cluster.RunOpts{}); err != nil {
			return err
		}
		cctx, cancel := e.cmdCtx(ctx)
		defer cancel()
		old, err := a.ReadFile(cctx, pgpassPath(n))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("while reading %s on %s: %w", pgpassPath(n), n.Name, err)
		}
		if string(old) == string(content) {
			rc.Log.Info("replication password file already installed", zap.String("node", n.Name), zap.String("file", pgpassPath(n)))
			return nil
		}
		if err := a.WriteFile(cctx, pgpassPath(n), content, 0o600); err != nil {
			return fmt.Errorf("while installing %s on %s: %w", pgpassPath(n), n.Name, err)
		}
		rc.Log.Info("replication password file installed", zap.String("node", n.Name), zap.String("file", pgpassPath(n)))
		return nil
	})
}

func (e *Env) dropStaleSlots(ctx context.Context, rc *workflow.RunContext, n *cluster.Node) error {
	return e.withAdmin(ctx, n, func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, `SELECT slot_name::text FROM pg_replication_slots WHERE slot_name LIKE 'sdr\_%' AND NOT active`)
		if err != nil {
			return fmt.Errorf("while listing slots on %s: %w", n.Name, err)
		}
		slots, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("while listing slots on %s: %w", n.Name, err)
		}
		for _, s := range slots {
			if _, err := c.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, s); err != nil {
				return fmt.Errorf("while dropping stale slot %s on %s: %w", s, n.Name, err)
			}
			rc.Log.Info("stale sdr slot dropped", zap.String("node", n.Name), zap.String("slot", s))
		}
		return nil
	})
}
