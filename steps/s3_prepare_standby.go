package steps

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

// pgpassContent is the password file installed on every standby node: one
// line per host a standby node streams from (the primary-cluster nodes and
// the main standby).
func (e *Env) pgpassContent() string {
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
	return b.String()
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
		lay, err := e.layoutOf(ctx, n)
		if err != nil {
			return err
		}
		if _, err := e.run(ctx, n, "mkdir -p "+q(lay.Work)+" && chmod 700 "+q(lay.Work), cluster.RunOpts{}); err != nil {
			return err
		}
		wrote, err := e.ensureFile(ctx, n, lay.Pgpass(), content)
		if err != nil {
			return fmt.Errorf("while installing the replication password file: %w", err)
		}
		msg := "replication password file already installed"
		if wrote {
			msg = "replication password file installed"
		}
		rc.Log.Info(msg, zap.String("node", n.Name), zap.String("file", lay.Pgpass()))
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
