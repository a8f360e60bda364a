package steps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

// Values the switchover saves (write-once, never secrets).
const valSwitchToken = "switchover.token" // switchToken as JSON, recorded by the demote half

// SwitchoverOptions are the switchover's flags.
type SwitchoverOptions struct {
	MaxLag int64  // demote half: refuse unless the main standby is at most this many bytes behind
	Token  string // promote half: the demote half's token, when the operator passes it
}

// switchoverSteps lists the two halves of a switchover.
func switchoverSteps(e *Env, o SwitchoverOptions) []workflow.Step {
	demote := []workflow.Role{workflow.RolePrimary}
	promote := []workflow.Role{workflow.RoleStandby}
	return []workflow.Step{
		{Num: 1, Name: "1_prepare", Short: "validate the config and record this run's inputs", Roles: both, CheckOnly: true, Run: e.prepare},
		{Num: 2, Name: "2_check_cluster", Short: "one primary; the main standby streams with little lag", Roles: demote, CheckOnly: true,
			Run: func(ctx context.Context, rc *workflow.RunContext) error { return e.checkDemote(ctx, rc, o.MaxLag) }},
		{Num: 2, Name: "2_check_cluster", Short: "the DR nodes are in recovery and the main standby answers", Roles: promote, CheckOnly: true, Run: e.checkPromoteHalf},
		{Num: 3, Name: "3_demote", Short: "stop the primary with a fast shutdown; check pg_control says shut down; record the token", Roles: demote,
			OnStart: workflow.StateSwitchover, OnFail: workflow.StateSwitchoverFail, Run: e.demotePrimary, Plan: e.planDemote},
		{Num: 3, Name: "3_wait_primary", Short: "wait until the main standby has replayed the old primary's shutdown checkpoint", Roles: promote,
			OnStart: workflow.StateSwitchover, OnFail: workflow.StateSwitchoverFail,
			Run: func(ctx context.Context, rc *workflow.RunContext) error {
				return e.waitShutdownReplayed(ctx, rc, o.Token)
			},
			Plan: e.planWaitShutdownReplayed(o.Token)},
		{Num: 4, Name: "4_rejoin", Short: "once the new primary is promoted past the token, start the old primary as its standby; drop its slot for the DR side", Roles: demote,
			OnFail: workflow.StateSwitchoverFail, Run: e.rejoinOldPrimary},
		{Num: 4, Name: "4_promote", Short: "promote the main standby, keep the old primary's WAL in a slot, checkpoint, record it", Roles: promote,
			OnFail: workflow.StateSwitchoverFail, Run: func(ctx context.Context, rc *workflow.RunContext) error {
				return e.promoteForSwitchover(ctx, rc, o.Token)
			}},
		{Num: 5, Name: "5_follow", Short: "check that the old primary's standbys follow it onto the new timeline", Roles: demote,
			OnFail: workflow.StateSwitchoverFail, Run: e.oldClusterFollows},
		{Num: 5, Name: "5_follow", Short: "check that every cascade streams from the new primary on its new timeline", Roles: promote,
			OnFail: workflow.StateSwitchoverFail, Run: e.cascadesFollow},
		{Num: 6, Name: "6_finish", Short: "this side is the DR side now: say which config field to change", Roles: demote,
			OnDone: workflow.StateRecovery, OnFail: workflow.StateSwitchoverFail, Run: e.finishSwitchover},
		{Num: 6, Name: "6_finish", Short: "this side is the primary now: say which config field to change", Roles: promote,
			OnDone: workflow.StateArchive, OnFail: workflow.StateSwitchoverFail, Run: e.finishSwitchover},
	}
}

// Switchover returns the switchover half of role: primary demotes, standby promotes.
func Switchover(role workflow.Role, e *Env, o SwitchoverOptions) workflow.Workflow {
	return e.sideLocked(forRole("switchover", role, switchoverSteps(e, o)))
}

// SwitchoverHelp lists both halves' steps, for --help.
func SwitchoverHelp() string {
	return stepsHelp(func(r workflow.Role) workflow.Workflow { return Switchover(r, &Env{}, SwitchoverOptions{}) })
}

// token returns the demote half's recorded token, if any.
func (e *Env) token(ctx context.Context, rc *workflow.RunContext) (*switchToken, error) {
	raw, ok, err := rc.Value(ctx, valSwitchToken)
	if err != nil || !ok {
		return nil, err
	}
	var t switchToken
	if err := json.Unmarshal([]byte(raw), &t); err != nil {
		return nil, fmt.Errorf("while reading the recorded switchover token: %w", err)
	}
	return &t, nil
}

// checkDemote checks the primary side before the primary is stopped.
func (e *Env) checkDemote(ctx context.Context, rc *workflow.RunContext, maxLag int64) error {
	if t, err := e.token(ctx, rc); err != nil || t != nil {
		if t != nil {
			rc.Log.Info("the primary was already demoted by this switchover; not checked again", zap.String("node", t.Node))
		}
		return err
	}
	p, _, err := e.findPrimary(ctx)
	if err != nil {
		return err
	}
	main, _ := e.mainStandby()
	var streaming bool
	var lag int64
	err = e.withAdmin(ctx, p, func(ctx context.Context, c *pgx.Conn) error {
		err := c.QueryRow(ctx, `SELECT r.state = 'streaming', greatest(pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn), 0)::bigint
			FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid WHERE s.slot_name = $1`, e.slotName()).Scan(&streaming, &lag)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("while reading the main standby's stream on %s: %w", p.Name, err)
	}
	if err := checkDemoteLag(main.Name, streaming, lag, maxLag); err != nil {
		return err
	}
	// Replay paused on the main standby: the promote half would wait, with
	// the primary down, for WAL the standby receives but does not replay.
	if paused, err := e.replayPaused(ctx, main); err != nil {
		rc.Log.Warn("cannot ask the main standby whether its replay is paused; the promote half checks it again", zap.String("node", main.Name), zap.Error(err))
	} else if err := replayPausedProblem(main.Name, paused); err != nil {
		return err
	}
	rc.Log.Info("the main standby streams and is caught up", zap.String("primary", p.Name), zap.String("main_standby", main.Name), zap.Int64("lag_bytes", lag))
	return nil
}

// demotePrimary stops the primary with a fast shutdown (never immediate),
// checks that pg_control says "shut down", and records the token before
// anything restarts. A rerun reads the token from the stopped primary again.
func (e *Env) demotePrimary(ctx context.Context, rc *workflow.RunContext) error {
	if t, err := e.token(ctx, rc); err != nil || t != nil {
		// A run stopped between recording the token and printing it must
		// not leave the operator without it: it is printed again.
		if t != nil {
			rc.Log.Warn("the primary was shut down cleanly by an earlier run of this switchover; its token is recorded (pass it to the promote half with --token to have it checked)",
				zap.String("node", t.Node), zap.String("checkpoint", t.CheckpointLSN), zap.Int("timeline", t.TimeLineID), zap.String("token", t.Encode()))
		}
		return err
	}
	p, err := e.demoteTarget(ctx)
	if err != nil {
		return err
	}
	a, err := e.access(ctx, p)
	if err != nil {
		return err
	}
	if running, err := e.pgRunning(ctx, p, p.DataDir); err != nil {
		return err
	} else if running {
		if err := rc.Failpoint("before-stop"); err != nil {
			return err
		}
		if err := e.stopNode(ctx, rc, p); err != nil {
			return err
		}
	}
	cctx, cancel := e.cmdCtx(ctx)
	defer cancel()
	cd, err := cluster.ReadControlData(cctx, a, p.BinDir, p.DataDir)
	if err != nil {
		return fmt.Errorf("while reading pg_control of the stopped primary %s: %w", p.Name, err)
	}
	t, err := tokenFromControl(e.Config.Name, p.Name, cd)
	if err != nil {
		return err
	}
	raw, _ := json.Marshal(t)
	if _, err := rc.SaveOnce(ctx, valSwitchToken, string(raw)); err != nil {
		return err
	}
	rc.Log.Warn("the primary is shut down cleanly; switchover token recorded (pass it to the promote half with --token to have it checked)",
		zap.String("node", p.Name), zap.String("checkpoint", t.CheckpointLSN), zap.Int("timeline", t.TimeLineID), zap.String("token", t.Encode()))
	return nil
}

// demoteTarget finds the primary to demote: the running primary, or, when
// none runs (a rerun after the stop), the node whose pg_control says it
// was the primary ("shut down").
func (e *Env) demoteTarget(ctx context.Context) (*cluster.Node, error) {
	if p, _, err := e.findPrimary(ctx); err == nil {
		return p, nil
	}
	var found []*cluster.Node
	for _, n := range e.primaryNodes() {
		a, err := e.access(ctx, n)
		if err != nil {
			return nil, err
		}
		cctx, cancel := e.cmdCtx(ctx)
		cd, err := cluster.ReadControlData(cctx, a, n.BinDir, n.DataDir)
		cancel()
		if err == nil && cd.State == cluster.StateShutDown {
			found = append(found, n)
		}
	}
	if len(found) != 1 {
		return nil, permanent(fmt.Errorf("no running primary in cluster %s, and %d stopped nodes whose pg_control says \"shut down\": cannot tell which one to demote",
			e.Config.PrimaryName, len(found)))
	}
	return found[0], nil
}

// rejoinOldPrimary waits, bounded by --timeout, until the DR side's main
// standby is promoted past the token, then makes the old primary its
// standby (its own slot on the new primary, standby settings,
// standby.signal) and starts it. It never starts the old primary before.
func (e *Env) rejoinOldPrimary(ctx context.Context, rc *workflow.RunContext) error {
	t, err := e.token(ctx, rc)
	if err != nil {
		return err
	}
	if t == nil {
		return errors.New("no switchover token is recorded: rerun the switchover")
	}
	old, ok := e.Config.Node(t.Node)
	if !ok {
		return permanent(fmt.Errorf("node %s of the token is not in the config", t.Node))
	}
	newMain, _ := e.mainStandby()
	slot := cluster.SlotName(e.Config.Name, old.Name)
	err = poll(ctx, e.Timeout, pollStream, fmt.Sprintf("the DR side's main standby %s to be promoted past the old primary's shutdown checkpoint", newMain.Name),
		func(ctx context.Context) (bool, error) {
			via, err := e.access(ctx, old)
			if err != nil {
				return false, err
			}
			cctx, cancel := e.cmdCtx(ctx)
			defer cancel()
			conn, err := cluster.ConnectReplication(cctx, e.Config, via, newMain.Host, newMain.PGPort, e.Password)
			if err != nil {
				return false, err
			}
			defer conn.Close(context.WithoutCancel(ctx))
			res, err := conn.Exec(cctx, "IDENTIFY_SYSTEM").ReadAll()
			if err != nil || len(res) != 1 || len(res[0].Rows) != 1 {
				return false, fmt.Errorf("IDENTIFY_SYSTEM on %s: %v", newMain.Name, err)
			}
			var tli int
			fmt.Sscan(string(res[0].Rows[0][1]), &tli)
			if tli <= t.TimeLineID {
				return false, fmt.Errorf("%s is still on timeline %d: not promoted yet", newMain.Name, tli)
			}
			res, err = conn.Exec(cctx, fmt.Sprintf("TIMELINE_HISTORY %d", tli)).ReadAll()
			if err != nil || len(res) != 1 || len(res[0].Rows) != 1 {
				return false, fmt.Errorf("TIMELINE_HISTORY %d on %s: %v", tli, newMain.Name, err)
			}
			ready, err := rejoinReady(*t, tli, string(res[0].Rows[0][1]))
			if !ready || err != nil {
				return ready, err
			}
			// The old primary's own slot on the new primary, if the promote
			// half has not made it.
			if _, err := conn.Exec(cctx, fmt.Sprintf("CREATE_REPLICATION_SLOT %s PHYSICAL RESERVE_WAL", pgIdent(slot))).ReadAll(); err != nil &&
				!strings.Contains(err.Error(), "already exists") {
				return false, fmt.Errorf("while creating slot %s on %s: %w", slot, newMain.Name, err)
			}
			return true, nil
		})
	if err != nil {
		return err
	}
	up := upstream{Node: newMain.Name, Host: newMain.Host, Port: newMain.PGPort, Slot: slot}
	if err := e.configureAsStandby(ctx, rc, old, up); err != nil {
		return err
	}
	if err := rc.Failpoint("before-start"); err != nil {
		return err
	}
	if err := e.startNode(ctx, rc, old); err != nil {
		return err
	}
	if err := poll(ctx, e.Timeout, pollStream, fmt.Sprintf("%s to stream from %s", old.Name, newMain.Name), func(ctx context.Context) (bool, error) {
		w, err := e.walReceiver(ctx, old)
		if err != nil {
			return false, err
		}
		if err := checkStreaming(old.Name, w, up); err != nil {
			return false, err
		}
		rc.Log.Info("the old primary streams from the new primary", zap.String("node", old.Name), zap.String("upstream", newMain.Name))
		return true, nil
	}); err != nil {
		return err
	}
	return e.dropPromotedSideSlots(ctx, rc, old)
}

// dropPromotedSideSlots drops, on the old primary, this pair's slots
// named for the promoted cluster's nodes (the one it kept for the DR
// side's main standby): they stream from their own primary now, and on a
// standby an unused slot keeps WAL forever. A slot in use is left, and
// said so.
func (e *Env) dropPromotedSideSlots(ctx context.Context, rc *workflow.RunContext, old *cluster.Node) error {
	var names []string
	for _, n := range e.Config.Standby.Nodes {
		names = append(names, cluster.SlotName(e.Config.Name, n.Name))
	}
	return e.withAdmin(ctx, old, func(ctx context.Context, c *pgx.Conn) error {
		slots, err := pairSlots(ctx, c, old.Name, names)
		if err != nil {
			return err
		}
		for _, sl := range slots {
			if sl.Active {
				rc.Log.Warn("a slot of this pair for the promoted side is in use on the old primary: left", zap.String("node", old.Name),
					zap.String("slot", sl.Name), zap.Int("pid", sl.PID))
				continue
			}
			var dropped int
			if err := c.QueryRow(ctx, `SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active`,
				sl.Name).Scan(&dropped); err != nil {
				return fmt.Errorf("while dropping slot %s on %s (kept for the DR side before the switchover): %w", sl.Name, old.Name, err)
			}
			if dropped == 0 {
				rc.Log.Warn("a slot of this pair for the promoted side came into use on the old primary: left", zap.String("node", old.Name),
					zap.String("slot", sl.Name))
				continue
			}
			rc.Log.Info("slot kept for the DR side before the switchover dropped on the old primary", zap.String("node", old.Name), zap.String("slot", sl.Name))
		}
		return nil
	})
}

// configureAsStandby makes a stopped node a standby of up without a new
// copy: the password file, sdr's standby settings in its
// postgresql.auto.conf, and standby.signal.
func (e *Env) configureAsStandby(ctx context.Context, rc *workflow.RunContext, n *cluster.Node, up upstream) error {
	a, err := e.access(ctx, n)
	if err != nil {
		return err
	}
	lay, err := e.layoutOf(ctx, n)
	if err != nil {
		return err
	}
	cctx, cancel := e.cmdCtx(ctx)
	defer cancel()
	if _, err := a.Run(cctx, "mkdir -p "+q(lay.Work)+" && chmod 700 "+q(lay.Work), cluster.RunOpts{}); err != nil {
		return err
	}
	if _, err := e.ensureFile(ctx, n, lay.Pgpass(), e.pgpassContentFor(up)); err != nil {
		return fmt.Errorf("while installing the replication password file on %s: %w", n.Name, err)
	}
	if _, err := a.Run(cctx, "chmod 600 "+q(lay.Pgpass()), cluster.RunOpts{}); err != nil {
		return err
	}
	lines := standbySettings(e.Config, n, up, lay.Pgpass())
	if err := editFile(cctx, a, path.Join(lay.DataDir, "postgresql.auto.conf"), e.Config.Name, lines); err != nil {
		return err
	}
	if _, err := a.Run(cctx, "touch "+q(path.Join(lay.DataDir, "standby.signal")), cluster.RunOpts{}); err != nil {
		return err
	}
	rc.Log.Info("configured as a standby", zap.String("node", n.Name), zap.String("upstream", up.Node), zap.String("slot", up.Slot))
	return nil
}

// pgpassContentFor is the password file of a node that streams from up.
func (e *Env) pgpassContentFor(up upstream) string {
	return cluster.PgpassLine(up.Host, fmt.Sprint(up.Port), "*", e.Config.Replication.User, e.Password) + "\n"
}

// oldClusterFollows waits until the old primary's other nodes (its
// in-cluster standbys) stream on the new timeline. One that cannot be
// reached or does not run is not waited for (cascadeNotWaited): the run
// says so and goes on.
func (e *Env) oldClusterFollows(ctx context.Context, rc *workflow.RunContext) error {
	t, err := e.token(ctx, rc)
	if err != nil || t == nil {
		return errors.Join(err, errors.New("no switchover token is recorded"))
	}
	var others []*cluster.Node
	for _, n := range e.primaryNodes() {
		if n.Name != t.Node {
			others = append(others, n)
		}
	}
	return forEach(ctx, others, func(ctx context.Context, n *cluster.Node) error {
		why, err := e.followerNotWaited(ctx, rc, n)
		if err != nil {
			return err
		}
		if why != "" {
			rc.Log.Warn(fmt.Sprintf("standby %s of the old primary %s %s: not waited for; it follows onto the new timeline once it runs "+
				"(through the old primary, now a standby, with recovery_target_timeline latest, the default): start it, then check with sdr status --config",
				n.Name, t.Node, why), zap.String("node", n.Name))
			return nil
		}
		return poll(ctx, e.Timeout, pollStream, fmt.Sprintf("%s to follow onto the new timeline", n.Name), func(ctx context.Context) (bool, error) {
			var status string
			var tli int
			err := e.withAdmin(ctx, n, func(ctx context.Context, c *pgx.Conn) error {
				return c.QueryRow(ctx, `SELECT coalesce(status, 'none'), coalesce(received_tli, 0) FROM (SELECT 1) one LEFT JOIN pg_stat_wal_receiver ON true`).Scan(&status, &tli)
			})
			if err != nil {
				return false, err
			}
			if status != "streaming" || tli <= t.TimeLineID {
				return false, fmt.Errorf("%s: walreceiver %s on timeline %d", n.Name, status, tli)
			}
			rc.Log.Info("follows onto the new timeline", zap.String("node", n.Name), zap.Int("timeline", tli))
			return true, nil
		})
	})
}

// checkPromoteHalf checks the DR side before it waits for the old primary.
func (e *Env) checkPromoteHalf(ctx context.Context, rc *workflow.RunContext) error {
	main, _ := e.mainStandby()
	facts, err := e.drFacts(ctx, rc)
	if err != nil {
		return err
	}
	if facts[main.Name] == nil {
		return permanent(fmt.Errorf("%s; nothing was changed", e.mainUnreachable(ctx, main)))
	}
	if p, err := e.promotion(ctx, rc); err != nil || p != nil {
		return err
	}
	for name, f := range facts {
		if !f.InRecovery {
			return permanent(fmt.Errorf("DR node %s is not in recovery: the DR side already runs a primary; nothing was changed "+
				"(if a switchover or failover made it the primary, it is done: set primary: in the config to this cluster, on both sides)", name))
		}
	}
	paused, err := e.replayPaused(ctx, main)
	if err != nil {
		return err
	}
	return replayPausedProblem(main.Name, paused)
}

// replayPaused asks n (a standby) whether a pause of its WAL replay was
// asked for (pg_wal_replay_pause; pg_is_wal_replay_paused in PostgreSQL
// 13-17).
func (e *Env) replayPaused(ctx context.Context, n *cluster.Node) (bool, error) {
	var paused bool
	err := e.withAdmin(ctx, n, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, "SELECT CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END").Scan(&paused)
	})
	if err != nil {
		return false, fmt.Errorf("while asking %s whether its replay is paused: %w", n.Name, err)
	}
	return paused, nil
}

// replayPausedProblem refuses a switchover while the main standby's
// replay is paused: the old primary's last WAL would reach it and not be
// replayed, so the promote half would wait with no primary running.
func replayPausedProblem(main string, paused bool) error {
	if !paused {
		return nil
	}
	return permanent(fmt.Errorf("WAL replay is paused on the main standby %s (pg_wal_replay_pause()): it would receive the old primary's "+
		"last WAL and not replay it, and the switchover would wait with no primary running; nothing was changed. Resume it "+
		"(SELECT pg_wal_replay_resume() on %s), then rerun", main, main))
}

// waitShutdownReplayed waits, bounded by --timeout, until the main standby
// has received and replayed the old primary's shutdown checkpoint: checked
// against the token when the operator passed one, else from what
// PostgreSQL alone proves (see shutdownReplayed). It holds the main
// standby's node lock while it waits; 4_promote takes it again and checks
// again under it before promoting, so that an abort of the demote half
// cannot restart the old primary in between.
func (e *Env) waitShutdownReplayed(ctx context.Context, rc *workflow.RunContext, tokenText string) error {
	if p, err := e.promotion(ctx, rc); err != nil || p != nil {
		return err
	}
	var tok *switchToken
	if tokenText != "" {
		t, err := decodeToken(tokenText)
		if err != nil {
			return permanent(err)
		}
		tok = &t
	}
	main, _ := e.mainStandby()
	lock, err := e.lockMain(ctx, rc)
	if err != nil {
		return err
	}
	defer lock.Release()
	return poll(ctx, e.Timeout, pollStream, "the main standby to replay the old primary's shutdown checkpoint", func(ctx context.Context) (bool, error) {
		o, err := e.readReplay(ctx, main)
		if err != nil {
			return false, err
		}
		if tok != nil {
			ok, err := validateToken(*tok, o)
			if !ok && err == nil {
				err = fmt.Errorf("the main standby has not replayed the token's REDO %s yet (its restartpoint is at %s)", tok.RedoLSN, o.Control.RedoLSN)
			}
			return ok, err
		}
		if why := shutdownReplayed(o); why != "" {
			return false, errors.New(why)
		}
		rc.Log.Info("the main standby replayed the old primary's shutdown checkpoint", zap.String("checkpoint", o.Control.CheckpointLSN.String()),
			zap.String("replayed", o.ReplayedLSN.String()))
		return true, nil
	})
}

// shutdownStillReplayed checks again, right before the promotion and
// under the main standby's node lock, that the old primary has not run
// since the wait: no node of it answers as a primary (a
// `switchover --role primary --abort` starts it again), and the main
// standby still shows the old primary's shutdown checkpoint as the end of
// its WAL (against the token when one was given).
func (e *Env) shutdownStillReplayed(tokenText string) func(ctx context.Context, rc *workflow.RunContext, sysID string) error {
	return func(ctx context.Context, rc *workflow.RunContext, sysID string) error {
		if err := e.oldPrimaryStillDown(ctx, rc, sysID, "The demote half was aborted, or the old primary was started by hand: "+
			"the switchover did not happen. If it is still wanted, run both halves again with --restart"); err != nil {
			return err
		}
		main, _ := e.mainStandby()
		o, err := e.readReplay(ctx, main)
		if err != nil {
			return err
		}
		why := shutdownReplayed(o)
		if tokenText != "" && why == "" {
			t, err := decodeToken(tokenText)
			if err != nil {
				return permanent(err)
			}
			if ok, err := validateToken(t, o); err != nil {
				why = err.Error()
			} else if !ok {
				why = "the main standby has not replayed the token's REDO"
			}
		}
		if why != "" {
			return permanent(fmt.Errorf("the main standby %s no longer shows the old primary's shutdown checkpoint as the end of its WAL (%s): "+
				"the old primary may have run since this half's wait (an --abort of the demote half?); nothing was promoted. If the "+
				"switchover is still wanted, run both halves again with --restart", main.Name, why))
		}
		return nil
	}
}

// lockMain takes the DR main standby's node lock (which an --abort of the
// demote half takes too).
func (e *Env) lockMain(ctx context.Context, rc *workflow.RunContext) (*cluster.NodeLock, error) {
	main, _ := e.mainStandby()
	a, err := e.access(ctx, main)
	if err != nil {
		return nil, err
	}
	lay, err := e.layoutOf(ctx, main)
	if err != nil {
		return nil, err
	}
	return e.lockNode(ctx, rc, a, lay)
}

// readReplay reads the main standby after a CHECKPOINT (a restartpoint on a standby).
func (e *Env) readReplay(ctx context.Context, main *cluster.Node) (replayObs, error) {
	var o replayObs
	var recv, replay string
	err := e.withAdmin(ctx, main, func(ctx context.Context, c *pgx.Conn) error {
		if _, err := c.Exec(ctx, "CHECKPOINT"); err != nil {
			return err
		}
		return c.QueryRow(ctx, `SELECT coalesce((SELECT status FROM pg_stat_wal_receiver), ''), coalesce(pg_last_wal_receive_lsn()::text, ''),
			coalesce(pg_last_wal_replay_lsn()::text, ''), (SELECT system_identifier::text FROM pg_control_system())`).Scan(&o.Receiver, &recv, &replay, &o.SystemID)
	})
	if err != nil {
		return o, fmt.Errorf("while reading the replay of %s: %w", main.Name, err)
	}
	o.ReceivedLSN, _ = cluster.ParseLSN(recv)
	o.ReplayedLSN, _ = cluster.ParseLSN(replay)
	a, err := e.access(ctx, main)
	if err != nil {
		return o, err
	}
	lay, err := e.layoutOf(ctx, main)
	if err != nil {
		return o, err
	}
	cctx, cancel := e.cmdCtx(ctx)
	defer cancel()
	if o.Control, err = cluster.ReadControlData(cctx, a, main.BinDir, lay.DataDir); err != nil {
		return o, err
	}
	o.ReplayTLI = o.Control.TimeLineID
	if o.Control.MinRecoveryTLI > o.ReplayTLI {
		o.ReplayTLI = o.Control.MinRecoveryTLI
	}
	return o, nil
}

// promoteForSwitchover promotes the main standby (once, as the failover
// does), creating right after pg_promote, before the checkpoint, the slot
// the old primary will stream through: it keeps its WAL from the switch
// point on, however late the demote half comes.
func (e *Env) promoteForSwitchover(ctx context.Context, rc *workflow.RunContext, tokenText string) error {
	oldMain := e.Config.Primary.Main
	// The main standby's node lock, which an --abort of the demote half
	// takes too, is held from the check to the promotion: the abort cannot
	// start the old primary between them. 3_wait_primary held it only
	// while it waited, so the check is made again under it, always.
	lock, err := e.lockMain(ctx, rc)
	if err != nil {
		return fmt.Errorf("%w (an --abort of the demote half may be running)", err)
	}
	defer lock.Release()
	e.oldPrimaryChecked = false
	return e.promote(ctx, rc, func(ctx context.Context, c *pgx.Conn) error {
		if oldMain == "" {
			return nil
		}
		slot := cluster.SlotName(e.Config.Name, oldMain)
		_, err := c.Exec(ctx, `SELECT pg_create_physical_replication_slot($1, true) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)`, slot)
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "42710" {
			err = nil // the demote half made it at the same moment
		}
		if err != nil {
			return fmt.Errorf("creating slot %s for %s: %w", slot, oldMain, err)
		}
		rc.Log.Info("slot for the old primary created on the new primary", zap.String("slot", slot))
		return nil
	}, e.shutdownStillReplayed(tokenText))
}

// finishSwitchover says which config field to change.
func (e *Env) finishSwitchover(ctx context.Context, rc *workflow.RunContext) error {
	rc.Log.Warn(fmt.Sprintf("cluster %s is the primary now: set \"primary: %s\" in %s on both sides",
		e.Config.StandbyName, e.Config.StandbyName, e.Config.Path))
	return nil
}

// abortSteps is `sdr switchover --role primary --abort`: bring the old
// primary back as the primary, only while the DR side provably did not
// promote.
func abortSteps(e *Env) []workflow.Step {
	demote := []workflow.Role{workflow.RolePrimary}
	return []workflow.Step{
		{Num: 1, Name: "1_prepare", Short: "validate the config and record this run's inputs", Roles: demote, CheckOnly: true, Run: e.prepare},
		{Num: 2, Name: "2_check_cluster", Short: "the demote half ran, and the DR side's main standby provably did not promote", Roles: demote, CheckOnly: true,
			Run: func(ctx context.Context, rc *workflow.RunContext) error { _, err := e.abortCheck(ctx, rc); return err }},
		{Num: 3, Name: "3_restore_primary", Short: "holding the main standby's node lock, check again, then start the old primary as the primary", Roles: demote,
			OnStart: workflow.StateSwitchover, OnFail: workflow.StateSwitchoverFail, Run: e.restoreOldPrimary},
		{Num: 4, Name: "4_finish", Short: "the main standby streams from the old primary again", Roles: demote,
			OnDone: workflow.StateArchive, OnFail: workflow.StateSwitchoverFail, Run: e.abortFinish},
	}
}

// SwitchoverAbort is the abort of the demote half.
func SwitchoverAbort(e *Env) workflow.Workflow {
	return forRole("switchover-abort", workflow.RolePrimary, abortSteps(e))
}

// abortCheck reads the demote half's token and decides whether aborting is allowed.
func (e *Env) abortCheck(ctx context.Context, rc *workflow.RunContext) (*switchToken, error) {
	raw, ok, err := rc.ValueOf(ctx, "switchover/primary", valSwitchToken)
	if err != nil {
		return nil, err
	}
	if !ok {
		if done, _, _ := rc.Value(ctx, "abort.restored"); done != "" {
			return nil, nil
		}
		return nil, permanent(errors.New("no switchover token is recorded: this side's primary was not demoted by sdr switchover; nothing to abort"))
	}
	var t switchToken
	if err := json.Unmarshal([]byte(raw), &t); err != nil {
		return nil, err
	}
	main, _ := e.mainStandby()
	var f drNodeFacts
	var ckptErr error
	err = e.withAdmin(ctx, main, func(ctx context.Context, c *pgx.Conn) error {
		// With no WAL receiver (the old primary is down) a standby's
		// timeline is read from pg_control's last restartpoint, which may
		// be from before it replayed into the old primary's timeline: a
		// restartpoint first, at the last checkpoint it replayed. Not in a
		// read-only session (plan): plan changes nothing.
		var inRecovery, readOnly bool
		if err := c.QueryRow(ctx, "SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only') = 'on'").Scan(&inRecovery, &readOnly); err != nil {
			return err
		}
		if inRecovery && !readOnly {
			if _, err := c.Exec(ctx, "CHECKPOINT"); err != nil {
				ckptErr = err
				return nil
			}
		}
		return c.QueryRow(ctx, drFactsSQL).Scan(&f.InRecovery, &f.SystemID, &f.Timeline)
	})
	if ckptErr != nil {
		return nil, fmt.Errorf("the DR side's main standby %s answers, but a restartpoint (CHECKPOINT), which the abort makes to read the "+
			"timeline it has replayed, failed: %w; the old primary stays down (rerun the abort once it can be made, or finish the switchover)", main.Name, ckptErr)
	}
	reachErr := ""
	if err != nil {
		reachErr = err.Error()
	}
	if err := abortAllowed(t, err == nil, reachErr, f.InRecovery, f.Timeline); err != nil {
		return nil, err
	}
	return &t, nil
}

// restoreOldPrimary starts the demoted primary again as the primary. It
// holds the DR main standby's node lock (which the promote half holds while
// it waits and promotes) and checks again under it.
func (e *Env) restoreOldPrimary(ctx context.Context, rc *workflow.RunContext) error {
	main, _ := e.mainStandby()
	ma, err := e.access(ctx, main)
	if err != nil {
		return fmt.Errorf("the DR side's main standby %s cannot be reached to hold it while aborting: %w", main.Name, err)
	}
	mlay, err := e.layoutOf(ctx, main)
	if err != nil {
		return err
	}
	lock, err := e.lockNode(ctx, rc, ma, mlay)
	if err != nil {
		return fmt.Errorf("%w (the promote half may be running: stop it, or let the switchover finish)", err)
	}
	defer lock.Release()
	t, err := e.abortCheck(ctx, rc)
	if err != nil {
		return err
	}
	if t == nil { // restored by an earlier run
		return nil
	}
	old, ok := e.Config.Node(t.Node)
	if !ok {
		return permanent(fmt.Errorf("node %s of the token is not in the config", t.Node))
	}
	a, err := e.access(ctx, old)
	if err != nil {
		return err
	}
	cctx, cancel := e.cmdCtx(ctx)
	defer cancel()
	if running, err := e.pgRunning(ctx, old, old.DataDir); err != nil {
		return err
	} else if !running {
		if _, err := a.Run(cctx, "rm -f "+q(path.Join(old.DataDir, "standby.signal")), cluster.RunOpts{}); err != nil {
			return err
		}
		// The replication lines go; the node's own port, socket directory
		// and cluster_name stay (a former DR node's postgresql.conf is a
		// copy of another node's).
		if _, _, err := editDRFile(ctx, e, a, path.Join(old.DataDir, "postgresql.auto.conf"), func(content string) string {
			updated, _, _ := detachAutoConf(content, e.Config.Name, ownNames(e.Config))
			return updated
		}); err != nil {
			return err
		}
		if err := e.startNode(ctx, rc, old); err != nil {
			return err
		}
	}
	var inRecovery bool
	if err := e.withAdmin(ctx, old, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery)
	}); err != nil {
		return err
	}
	if inRecovery {
		return permanent(fmt.Errorf("%s started in recovery, not as the primary: check its standby.signal and primary_conninfo", old.Name))
	}
	if _, err := rc.SaveOnce(ctx, "abort.restored", old.Name); err != nil {
		return err
	}
	if err := rc.ForgetOf(ctx, "switchover/primary", valSwitchToken); err != nil {
		return err
	}
	rc.Log.Warn("the old primary runs as the primary again; the switchover is aborted", zap.String("node", old.Name))
	return nil
}

// abortFinish waits until the main standby streams from the restored primary.
func (e *Env) abortFinish(ctx context.Context, rc *workflow.RunContext) error {
	p, _, err := e.findPrimary(ctx)
	if err != nil {
		return err
	}
	return e.waitMainStreams(ctx, rc, p)
}

// waitMainStreams waits until the main standby streams from p.
func (e *Env) waitMainStreams(ctx context.Context, rc *workflow.RunContext, p *cluster.Node) error {
	main, _ := e.mainStandby()
	up := upstream{Node: p.Name, Host: p.Host, Port: p.PGPort, Slot: e.slotName()}
	return poll(ctx, e.Timeout, pollStream, fmt.Sprintf("%s to stream from %s", main.Name, p.Name), func(ctx context.Context) (bool, error) {
		w, err := e.walReceiver(ctx, main)
		if err != nil {
			return false, err
		}
		if err := checkStreaming(main.Name, w, up); err != nil {
			return false, err
		}
		rc.Log.Info("the main standby streams from the primary again", zap.String("node", main.Name), zap.String("primary", p.Name))
		return true, nil
	})
}
