package steps

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

// valWaitSince is when this pass through the workflow began
// (2_check_cluster), on the primary's clock (RFC 3339). 2_check_cluster
// writes it anew each time it runs (every --restart); a rerun that resumes
// at a later step keeps it.
//
// Why not the start of 8_wait_standby itself: a run that failed or was
// killed before its step 8 got going is rerun after the standby side has
// finished, and the new copy's stream then rightly predates the rerun. A
// stream older than the start of this pass, on the other hand, was running
// before it began, so it is not the copy a --restart rebuild makes.
const valWaitSince = "primary.wait_standby.since"

// waitStandby waits, bounded by --timeout, until the main standby streams
// from the primary through sdr's slot, on a walsender that started after
// this pass began: the stream of the copy made in this
// run, not one that was running before a --restart rebuild.
func (e *Env) waitStandby(ctx context.Context, rc *workflow.RunContext) error {
	p, _, err := e.findPrimary(ctx)
	if err != nil {
		return err
	}
	var now time.Time
	if err := e.withAdmin(ctx, p, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&now)
	}); err != nil {
		return fmt.Errorf("while reading the clock of %s: %w", p.Name, err)
	}
	// SaveOnce keeps step 2's record; it writes now only for a pass whose
	// step 2 ran under an earlier version of sdr.
	saved, err := rc.SaveOnce(ctx, valWaitSince, now.UTC().Format(time.RFC3339Nano))
	if err != nil {
		return err
	}
	since, err := time.Parse(time.RFC3339Nano, saved)
	if err != nil {
		return permanent(fmt.Errorf("saved %s %q is not a time: %w; rerun with --restart", valWaitSince, saved, err))
	}
	app, slot := cluster.AppName(e.Config.Name, e.Config.Standby.Main), e.slotName()
	rc.Log.Info("waiting for the main standby to stream the copy of this run", zap.String("node", p.Name), zap.String("application_name", app),
		zap.String("slot", slot), zap.Time("since", since), zap.Duration("timeout", e.Timeout))
	var o walsenderObs
	s := &adminSession{e: e, n: p}
	defer s.close()
	err = poll(ctx, e.Timeout, pollStream, fmt.Sprintf("%s to stream from %s", app, p.Name), func(ctx context.Context) (bool, error) {
		err := s.do(ctx, func(ctx context.Context, c *pgx.Conn) error {
			var err error
			o, err = queryWalsender(ctx, c, slot)
			return err
		})
		if err != nil {
			return false, err
		}
		if err := decideStreamReady(o, app, slot, since); err != nil {
			return false, err
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	rc.Log.Info("main standby is streaming", zap.String("node", p.Name), zap.String("application_name", app), zap.Int("pid", o.PID),
		zap.Time("backend_start", *o.BackendStart), zap.String("lsn", o.ReplayLSN))
	return e.recordEpoch(ctx, rc, p)
}

// ValPrimaryTimeline is the primary's timeline when the primary side
// reached archive: its epoch. A later promotion elsewhere (failover,
// switchover) raises the pair's timeline past it, which is how `sdr status`
// tells that this side's state is stale.
const ValPrimaryTimeline = "primary.timeline"

// recordEpoch records the primary's current timeline, replacing an earlier one.
func (e *Env) recordEpoch(ctx context.Context, rc *workflow.RunContext, p *cluster.Node) error {
	var tli int
	if err := e.withAdmin(ctx, p, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int`).Scan(&tli)
	}); err != nil {
		return fmt.Errorf("while reading the timeline of %s: %w", p.Name, err)
	}
	if err := rc.Forget(ctx, ValPrimaryTimeline); err != nil {
		return err
	}
	_, err := rc.SaveOnce(ctx, ValPrimaryTimeline, fmt.Sprint(tli))
	return err
}

// StaleNote explains, from the live facts, why a side's recorded state is
// stale: the state file says this side is the primary of the pair
// (archive) on timeline recorded, but a node of the pair runs as a primary
// on a later timeline: the roles moved (a failover or a switchover) and
// this side was not told. It returns "" when nothing is stale.
func StaleNote(state workflow.State, recorded string, nodes []NodeStatus) string {
	if state != workflow.StateArchive || recorded == "" {
		return ""
	}
	var t int
	if _, err := fmt.Sscan(recorded, &t); err != nil {
		return ""
	}
	for _, n := range nodes {
		if n.Reachable && n.Role == "primary" && n.Timeline != nil && *n.Timeline > t {
			return fmt.Sprintf("stale: this side reached archive on timeline %d, but %s (cluster %s) runs as a primary on timeline %d: "+
				"the primary moved (sdr failover or switchover); set primary: to that cluster and re-protect this side with start --role standby",
				t, n.Name, n.Cluster, *n.Timeline)
		}
	}
	return ""
}

// walsenderObs is sdr's slot on the primary and the walsender holding it.
type walsenderObs struct {
	SlotExists   bool
	WalStatus    string
	ActivePID    int // 0 when no process holds the slot
	PID          int // the walsender's row in pg_stat_replication, 0 when none
	App          string
	State        string
	BackendStart *time.Time
	ReplayLSN    string
}

const walsenderSQL = `SELECT coalesce(s.wal_status, ''), coalesce(s.active_pid, 0), coalesce(r.pid, 0), coalesce(r.application_name, ''),
	coalesce(r.state, ''), r.backend_start, coalesce(r.replay_lsn::text, '')
	FROM pg_replication_slots s LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
	WHERE s.slot_name = $1`

func queryWalsender(ctx context.Context, c *pgx.Conn, slot string) (walsenderObs, error) {
	o := walsenderObs{SlotExists: true}
	err := c.QueryRow(ctx, walsenderSQL, slot).Scan(&o.WalStatus, &o.ActivePID, &o.PID, &o.App, &o.State, &o.BackendStart, &o.ReplayLSN)
	if errors.Is(err, pgx.ErrNoRows) {
		return walsenderObs{}, nil
	}
	return o, err
}

// decideStreamReady decides whether the main standby streams the copy of
// this run: the walsender that holds sdr's slot is the main standby's
// (application_name), is streaming, and started after since. nil means
// done; a permanent error ends the wait.
func decideStreamReady(o walsenderObs, app, slot string, since time.Time) error {
	switch {
	case !o.SlotExists:
		return permanent(fmt.Errorf("slot %s no longer exists on the primary: run start --role primary --restart (its step 4 "+
			"creates it), then rebuild the standby side with start --role standby --restart", slot))
	case o.WalStatus == "lost":
		return permanent(fmt.Errorf("slot %s has lost WAL (wal_status lost): run start --role primary --restart (its step 4 "+
			"recreates the slot), then start --role standby --restart", slot))
	case o.ActivePID == 0:
		return fmt.Errorf("no walsender on slot %s yet", slot)
	case o.PID == 0:
		return fmt.Errorf("slot %s is held by pid %d, which is not a walsender in pg_stat_replication", slot, o.ActivePID)
	case o.App != app:
		return fmt.Errorf("slot %s is used by %q (pid %d), not yet by the main standby %s", slot, o.App, o.PID, app)
	case o.BackendStart == nil || !o.BackendStart.After(since):
		start := "at an unknown time"
		if o.BackendStart != nil {
			start = "at " + o.BackendStart.UTC().Format(time.RFC3339)
		}
		return fmt.Errorf("the walsender of %s on slot %s (pid %d) started %s, before this run's pass began at %s (2_check_cluster): "+
			"a stream from before this run's copy; waiting for the new copy's (run the standby side's start, with --restart if it had completed)",
			app, slot, o.PID, start, since.UTC().Format(time.RFC3339))
	case o.State != "streaming":
		return fmt.Errorf("walsender of %s on slot %s is %s", app, slot, o.State)
	}
	return nil
}
