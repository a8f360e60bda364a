package steps

import (
	"context"
	"errors"
	"fmt"
	"path"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

// slotReleaseWait bounds the wait for a slot to be free after its
// walsender was ended (a standby whose pg_hba.conf rule is gone cannot
// take it again; one that still can is ended again).
const slotReleaseWait = 30 * time.Second

// dropPrimarySlots drops every slot of this pair (a name sdr gives a node
// of either cluster) on every primary-cluster node. The walsender that
// holds one (the DR stream) is ended first: 3_close_access has removed
// the pg_hba.conf rule it came in by. A slot that is gone is fine.
func (s *stopRun) dropPrimarySlots(ctx context.Context, rc *workflow.RunContext) error {
	names := pairSlotNames(s.e.Config)
	return forEach(ctx, s.e.primaryNodes(), func(ctx context.Context, n *cluster.Node) error {
		return s.e.dropSlots(ctx, rc.Log.With(zap.String("node", n.Name)), n, names)
	})
}

// dropStandbySlots drops the cascades' slots on every running DR node
// (sdr makes them on the main standby; after 3_detach no cascade streams).
// A DR node that is not running is refused when pg_replslot still holds
// one of them, and fine otherwise.
func (s *stopRun) dropStandbySlots(ctx context.Context, rc *workflow.RunContext) error {
	e := s.e
	names := cascadeSlotNames(e.Config)
	if len(names) == 0 {
		rc.Log.Info("no cascade standbys: no slots on the DR side")
		return nil
	}
	return forEach(ctx, e.standbyNodes(), func(ctx context.Context, n *cluster.Node) error {
		log := rc.Log.With(zap.String("node", n.Name))
		lay, err := e.layoutOf(ctx, n)
		if err != nil {
			return err
		}
		running, err := e.pgRunning(ctx, n, lay.DataDir)
		if err != nil {
			return err
		}
		if running {
			return e.dropSlots(ctx, log, n, names)
		}
		var onDisk []string
		for _, name := range names {
			ok, err := e.fileExists(ctx, n, path.Join(lay.DataDir, "pg_replslot", name))
			if err != nil {
				return err
			}
			if ok {
				onDisk = append(onDisk, name)
			}
		}
		if err := stoppedSlotsProblem(n.Name, onDisk); err != nil {
			return err
		}
		log.Info("not running and holds none of this pair's slots")
		return nil
	})
}

// dropSlots drops the slots among names that exist on n, one at a time.
func (e *Env) dropSlots(ctx context.Context, log *zap.Logger, n *cluster.Node, names []string) error {
	return e.withAdmin(ctx, n, func(ctx context.Context, c *pgx.Conn) error {
		present, err := pairSlots(ctx, c, n.Name, names)
		if err != nil {
			return err
		}
		if len(present) == 0 {
			log.Info("none of this pair's slots here (already dropped)")
		}
		for _, sl := range present {
			if err := dropSlot(ctx, log, c, n.Name, sl.Name); err != nil {
				return err
			}
		}
		return nil
	})
}

// dropSlot drops one slot, ending the process that holds it first, and
// is done when the slot is gone.
func dropSlot(ctx context.Context, log *zap.Logger, c *pgx.Conn, node, slot string) error {
	return poll(ctx, slotReleaseWait, pollFast, fmt.Sprintf("slot %s on %s to be dropped", slot, node), func(ctx context.Context) (bool, error) {
		o := slotRow{Name: slot, Exists: true}
		err := c.QueryRow(ctx, `SELECT active, coalesce(active_pid, 0) FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&o.Active, &o.PID)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			o.Exists = false
		case err != nil:
			return false, fmt.Errorf("while looking at slot %s on %s: %w", slot, node, err)
		}
		switch decideSlotRelease(o) {
		case slotGone:
			return true, nil
		case slotTerminate:
			if _, err := c.Exec(ctx, `SELECT pg_terminate_backend($1)`, o.PID); err != nil {
				return false, fmt.Errorf("while ending process %d, which holds slot %s on %s: %w", o.PID, slot, node, err)
			}
			log.Warn("ended the process that held the slot (the stream to the DR side)", zap.String("slot", slot), zap.Int("pid", o.PID))
			return false, fmt.Errorf("slot %s on %s was held by process %d", slot, node, o.PID)
		case slotWaitFree:
			return false, fmt.Errorf("slot %s on %s is in use", slot, node)
		}
		if _, err := c.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, slot); err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Code == "42704" { // undefined_object: dropped meanwhile
				return true, nil
			}
			return false, fmt.Errorf("while dropping slot %s on %s: %w", slot, node, err)
		}
		log.Info("slot dropped", zap.String("slot", slot))
		return true, nil
	})
}
