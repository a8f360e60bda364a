package steps

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

// checkPrimaryCluster checks every primary-cluster node over SSH and SQL.
func (e *Env) checkPrimaryCluster(ctx context.Context, rc *workflow.RunContext) error {
	if err := e.checkRolesNotMoved(ctx, rc); err != nil {
		return err
	}
	if err := e.primaryNodesUp(ctx); err != nil {
		return err
	}
	p, f, err := e.findPrimary(ctx)
	if err != nil {
		return err
	}
	var slotExists bool
	if err := e.withAdmin(ctx, p, func(ctx context.Context, c *pgx.Conn) error {
		if err := e.markPass(ctx, rc, c, p.Name); err != nil {
			return err
		}
		if err := c.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1),
			(SELECT count(*) FROM pg_stat_replication r JOIN pg_replication_slots s ON s.active_pid = r.pid WHERE s.slot_name = $1)::int`,
			e.slotName()).Scan(&slotExists, &f.PairWalSenders); err != nil {
			return fmt.Errorf("while looking for slot %s on %s: %w", e.slotName(), p.Name, err)
		}
		_, err := e.checkRole(ctx, c, p.Name)
		return err
	}); err != nil {
		return err
	}
	if err := checkPrimarySettings(f, slotExists); err != nil {
		return err
	}
	rc.Log.Info("primary cluster is ready", zap.String("node", p.Name), zap.Int("version", f.VersionNum),
		zap.String("system_identifier", f.SystemID))
	return nil
}

// primaryNodesUp checks that PostgreSQL runs on every primary-cluster
// node and listens on the configured socket.
func (e *Env) primaryNodesUp(ctx context.Context) error {
	return forEach(ctx, e.primaryNodes(), func(ctx context.Context, n *cluster.Node) error {
		running, err := e.pgRunning(ctx, n, n.DataDir)
		if err != nil {
			return err
		}
		if !running {
			return permanent(fmt.Errorf("PostgreSQL is not running in %s on %s: start it, then rerun", n.DataDir, n.Name))
		}
		if ok, err := e.fileExists(ctx, n, cluster.SocketPath(n)); err != nil {
			return err
		} else if !ok {
			return permanent(fmt.Errorf("PostgreSQL runs in %s on %s but nothing listens on %s: check pg_port (%d) and socket_dir in the config",
				n.DataDir, n.Name, cluster.SocketPath(n), n.PGPort))
		}
		return nil
	})
}

func (e *Env) slotName() string { return cluster.SlotName(e.Config.Name, e.Config.Standby.Main) }

// markPass records the primary's clock as the start of this pass through
// the workflow (valWaitSince), replacing an earlier record: 8_wait_standby
// counts only streams that start later. 2_check_cluster calls it first
// thing, every time it runs (every --restart); on a first start it comes
// before the slot exists, so no stream through the slot can be older.
func (e *Env) markPass(ctx context.Context, rc *workflow.RunContext, c *pgx.Conn, node string) error {
	var now time.Time
	if err := c.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&now); err != nil {
		return fmt.Errorf("while reading the clock of %s: %w", node, err)
	}
	if err := rc.Forget(ctx, valWaitSince); err != nil {
		return err
	}
	_, err := rc.SaveOnce(ctx, valWaitSince, now.UTC().Format(time.RFC3339Nano))
	return err
}
