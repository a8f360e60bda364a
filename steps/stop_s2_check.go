package steps

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

// checkPrimary is stop/primary's 2_check_cluster: every primary-cluster
// node runs PostgreSQL (its live hba_file is read and reloaded over SQL),
// there is exactly one primary, no primary-cluster node holds a slot of
// this pair made for another primary-cluster node (inClusterSlotsProblem),
// and with --drop-role the role is one sdr created for this pair. It
// changes nothing.
func (s *stopRun) checkPrimary(ctx context.Context, rc *workflow.RunContext) error {
	e := s.e
	if err := e.primaryNodesUp(ctx); err != nil {
		return err
	}
	p, _, err := e.findPrimary(ctx)
	if err != nil {
		return err
	}
	// One session per node: the pair's slots there, of which none may be a
	// primary-cluster node's own; on the primary, also what was found and,
	// with --drop-role, the role.
	inCluster := map[string]bool{}
	for _, name := range inClusterSlotNames(e.Config) {
		inCluster[name] = true
	}
	return forEach(ctx, e.primaryNodes(), func(ctx context.Context, n *cluster.Node) error {
		return e.withAdmin(ctx, n, func(ctx context.Context, c *pgx.Conn) error {
			slots, err := pairSlots(ctx, c, n.Name, pairSlotNames(e.Config))
			if err != nil {
				return err
			}
			var names []string
			var own []slotRow
			for _, sl := range slots {
				names = append(names, sl.Name)
				if inCluster[sl.Name] {
					own = append(own, sl)
				}
			}
			if err := inClusterSlotsProblem(e.Config, n.Name, own); err != nil {
				return err
			}
			if n.Name != p.Name {
				return nil
			}
			rc.Log.Info("primary cluster checked", zap.String("node", p.Name), zap.Strings("pair_slots", names))
			if !s.opts.DropRole {
				return nil
			}
			o, err := e.observeRole(ctx, c, p.Name)
			if err != nil {
				return err
			}
			_, err = decideDropRole(e.Config.Replication.User, e.Config.Name, o, true, 0)
			return err
		})
	})
}

// checkStandby is stop/standby's 2_check_cluster: every DR node answers
// over SSH, none is provably the data directory of a primary-cluster
// node (those reachable over SSH from here are compared), and none runs
// out of recovery (drPrimaryProblem). It needs nothing
// from the primary side, which may be gone. It changes nothing.
func (s *stopRun) checkStandby(ctx context.Context, rc *workflow.RunContext) error {
	e := s.e
	view := e.primaryView(ctx, rc.Log, remoteFacts{})
	return forEach(ctx, e.standbyNodes(), func(ctx context.Context, n *cluster.Node) error {
		lay, err := e.layoutOf(ctx, n)
		if err != nil {
			return err
		}
		o, _, err := e.observeDir(ctx, n, lay, nil, nil)
		if err != nil {
			return err
		}
		if err := sameAsPrimaryNode(o, view.Nodes); err != nil {
			return err
		}
		if err := drPrimaryProblem(o); err != nil {
			return err
		}
		rc.Log.Info("DR node checked", zap.String("node", n.Name), zap.String("data_dir", lay.DataDir), zap.Bool("exists", o.Exists),
			zap.Bool("running", o.Running), zap.Bool("in_recovery", o.InRecovery), zap.Bool("sdr_copy", o.Marker != nil),
			zap.String("upstream", o.Upstream.String()))
		return nil
	})
}

// pairSlots lists the slots among names that exist on the node of c.
func pairSlots(ctx context.Context, c *pgx.Conn, node string, names []string) ([]slotRow, error) {
	rows, err := c.Query(ctx, `SELECT slot_name::text, active, coalesce(active_pid, 0) FROM pg_replication_slots
		WHERE slot_name = ANY($1) ORDER BY slot_name`, names)
	if err != nil {
		return nil, fmt.Errorf("while listing this pair's slots on %s: %w", node, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (slotRow, error) {
		sl := slotRow{Exists: true}
		err := r.Scan(&sl.Name, &sl.Active, &sl.PID)
		return sl, err
	})
	if err != nil {
		return nil, fmt.Errorf("while listing this pair's slots on %s: %w", node, err)
	}
	return out, nil
}
