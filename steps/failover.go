package steps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

// Values the failover saves (write-once, never secrets).
const (
	valFailoverWindow    = "failover.data_loss_window" // lossWindow as JSON, when the decision was taken
	valFailoverIntent    = "failover.intent"           // "<sysid> <timeline>" of the main standby right before promoting
	valFailoverPromotion = "failover.promotion"        // promotionRecord as JSON
	valFailoverUnfenced  = "failover.unfenced"         // old-primary nodes that could not be fenced, comma-separated
)

// fenceMarkerName is the file sdr writes into a fenced old primary's data
// directory, beside standby.signal.
const fenceMarkerName = "sdr_fenced"

// failoverSteps is the failover workflow, run on the DR side.
func failoverSteps(e *Env) []workflow.Step {
	return []workflow.Step{
		{Num: 1, Name: "1_prepare", Short: "validate the config and record this run's inputs", Roles: standbyOnly, CheckOnly: true, Run: e.prepare},
		{Num: 2, Name: "2_check_cluster", Short: "check the DR nodes; probe the old primary cluster; state the data-loss window; refuse if the old primary runs",
			Roles: standbyOnly, CheckOnly: true, Run: e.checkFailover},
		{Num: 3, Name: "3_fence", Short: "stop every old-primary node sdr can reach and leave it unable to start as a primary", Roles: standbyOnly, Run: e.fenceOldPrimary, Plan: e.planFence},
		{Num: 4, Name: "4_promote", Short: "promote the main standby (pg_promote, then a checkpoint) and record the promotion", Roles: standbyOnly,
			OnStart: workflow.StatePromote, OnFail: workflow.StatePromoteFail, Run: e.promoteMain, Plan: e.planPromoteMain},
		{Num: 5, Name: "5_follow", Short: "check that every cascade streams from the new primary on its new timeline", Roles: standbyOnly,
			OnFail: workflow.StatePromoteFail, Run: e.cascadesFollow},
		{Num: 6, Name: "6_finish", Short: "the DR side is a primary without DR: say which config field to change", Roles: standbyOnly,
			OnDone: workflow.StateNormal, OnFail: workflow.StatePromoteFail, Run: e.finishFailover},
	}
}

// Failover returns the failover workflow (run on the DR side: role standby).
func Failover(e *Env) workflow.Workflow {
	return e.sideLocked(workflow.Workflow{Action: "failover", Role: workflow.RoleStandby, Steps: failoverSteps(e)})
}

// FailoverHelp lists the failover's steps, for --help.
func FailoverHelp() string {
	var b strings.Builder
	for _, s := range failoverSteps(&Env{}) {
		fmt.Fprintf(&b, "    %-18s %s\n", s.Name, s.Short)
	}
	return b.String()
}

// promotion returns the recorded promotion, if any.
func (e *Env) promotion(ctx context.Context, rc *workflow.RunContext) (*promotionRecord, error) {
	raw, ok, err := rc.Value(ctx, valFailoverPromotion)
	if err != nil || !ok {
		return nil, err
	}
	var p promotionRecord
	if err := json.Unmarshal([]byte(raw), &p); err != nil {
		return nil, fmt.Errorf("while reading the recorded promotion: %w", err)
	}
	return &p, nil
}

// checkFailover checks the DR side and the old primary cluster, and
// decides whether the failover may go ahead. Once the promotion is
// recorded (a rerun after a kill), it only checks that the recorded
// promotion still holds.
func (e *Env) checkFailover(ctx context.Context, rc *workflow.RunContext) error {
	main, _ := e.mainStandby()
	facts, err := e.drFacts(ctx, rc)
	if err != nil {
		return err
	}
	mf := facts[main.Name]
	if mf == nil {
		return permanent(fmt.Errorf("%s: sdr promotes only the main standby, never another node; nothing was changed", e.mainUnreachable(ctx, main)))
	}
	promo, err := e.promotion(ctx, rc)
	if err != nil {
		return err
	}
	if _, intent, _ := rc.Value(ctx, valFailoverIntent); promo != nil || intent {
		rc.Log.Info("a promotion by this failover is recorded; the old primary is not probed again", zap.Bool("recorded", promo != nil))
		return nil
	}
	for name, f := range facts {
		if !f.InRecovery {
			return permanent(fmt.Errorf("DR node %s is not in recovery: the DR side already runs a primary; nothing was changed "+
				"(if a switchover or failover made it the primary, it is done: set primary: in the config to this cluster, on both sides)", name))
		}
	}
	obs := e.probeOldPrimary(ctx, rc, mf.SystemID)
	w, err := e.lossWindow(ctx, main, obs, mf.SystemID)
	if err != nil {
		return err
	}
	rc.Log.Warn("data-loss window: " + w.String())
	for _, o := range obs {
		rc.Log.Info("old primary cluster node", zap.String("node", o.Node), zap.Bool("ssh", o.SSH), zap.String("ssh_error", o.SSHErr),
			zap.Bool("postmaster_running", o.PostmasterAlive), zap.Bool("answers", o.PGAnswered || o.AdminAnswered),
			zap.Bool("answers_as_primary", o.answersAsPrimary()), zap.String("pg_error", o.PGErr), zap.String("state", o.State))
	}
	if err := decideFailover(obs, w, e.AcceptDataLoss); err != nil {
		return err
	}
	e.oldPrimaryChecked = true
	raw, _ := json.Marshal(w)
	if _, err := rc.SaveOnce(ctx, valFailoverWindow, string(raw)); err != nil {
		return err
	}
	return nil
}

// drNodeFacts is what the failover reads of a DR node.
type drNodeFacts struct {
	InRecovery bool
	SystemID   string
	Timeline   int
}

const drFactsSQL = `SELECT pg_is_in_recovery(), (SELECT system_identifier::text FROM pg_control_system()),
	CASE WHEN pg_is_in_recovery() THEN coalesce((SELECT received_tli FROM pg_stat_wal_receiver), (SELECT timeline_id FROM pg_control_checkpoint()))
	ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END`

// drFacts reads every reachable DR node; unreachable ones are left out (logged).
func (e *Env) drFacts(ctx context.Context, rc *workflow.RunContext) (map[string]*drNodeFacts, error) {
	nodes := e.standbyNodes()
	out := make([]*drNodeFacts, len(nodes))
	_ = forEach(ctx, nodes, func(ctx context.Context, n *cluster.Node) error {
		var f drNodeFacts
		err := e.withAdmin(ctx, n, func(ctx context.Context, c *pgx.Conn) error {
			return c.QueryRow(ctx, drFactsSQL).Scan(&f.InRecovery, &f.SystemID, &f.Timeline)
		})
		if err != nil {
			rc.Log.Warn("DR node cannot be reached", zap.String("node", n.Name), zap.Error(err))
			return nil
		}
		out[indexOf(nodes, n)] = &f
		return nil
	})
	m := map[string]*drNodeFacts{}
	for i, f := range out {
		if f != nil {
			m[nodes[i].Name] = f
		}
	}
	return m, nil
}

// mainUnreachable says why the main standby could not be asked: its node
// cannot be reached over SSH, or PostgreSQL does not run in its data
// directory (stopped by hand, or by a rebuild of this side that did not
// finish: 5_stop_cluster stops the DR nodes before the copy), or it runs
// but would not take a session.
func (e *Env) mainUnreachable(ctx context.Context, main *cluster.Node) string {
	lay, err := e.layoutOf(ctx, main)
	if err != nil {
		return fmt.Sprintf("the main standby %s cannot be reached: %v", main.Name, err)
	}
	running, err := e.pgRunning(ctx, main, lay.DataDir)
	switch {
	case err != nil:
		return fmt.Sprintf("the main standby %s cannot be reached: %v", main.Name, err)
	case !running:
		return fmt.Sprintf("PostgreSQL does not run on the main standby %s in %s (stopped by hand, or by a rebuild of this side that did not "+
			"finish: sdr start --role standby stops the DR nodes before it copies): start it with %s and check that it is a standby "+
			"(SELECT pg_is_in_recovery()), then run the failover again (runbook: \"The primary is lost while the DR side is rebuilt\")",
			main.Name, lay.DataDir, serviceCommands(main, 0).Describe)
	}
	return fmt.Sprintf("PostgreSQL runs on the main standby %s but sdr could not open a session on it (see the warning above)", main.Name)
}

// probeOldPrimary looks at every node of the old primary cluster over
// every path sdr has, each bounded by the connect timeout: from the main
// standby as the replication user, and over SSH (the postmaster, pg_control,
// PostgreSQL on its own socket). The paths of a node are probed at the same
// time, so that a data centre that does not answer at all (its packets
// dropped) costs one connect timeout, not one per path.
func (e *Env) probeOldPrimary(ctx context.Context, rc *workflow.RunContext, sysID string) []oldPrimaryObs {
	nodes := e.primaryNodes()
	obs := make([]oldPrimaryObs, len(nodes))
	main, _ := e.mainStandby()
	bound := e.Config.Timeouts.Connect.Duration + 2*time.Second
	_ = forEach(ctx, nodes, func(ctx context.Context, n *cluster.Node) error {
		var viaDR oldPrimaryObs
		done := make(chan struct{})
		go func() {
			defer close(done)
			viaDR = e.probeFromDR(ctx, main, n, bound)
		}()
		viaSSH := e.probeOverSSH(ctx, n, bound)
		<-done
		obs[indexOf(nodes, n)] = mergeOldPrimaryObs(n.Name, viaDR, viaSSH)
		return nil
	})
	return obs
}

// probeFromDR asks old-primary node n, from the main standby as the
// replication user (the path the WAL came over), whether it is a primary.
func (e *Env) probeFromDR(ctx context.Context, main, n *cluster.Node, bound time.Duration) oldPrimaryObs {
	var o oldPrimaryObs
	pctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	via, err := e.access(pctx, main)
	if err != nil {
		return o
	}
	_, inRecovery, err := e.remoteNodeFacts(pctx, via, n)
	if err == nil {
		o.PGAnswered, o.PGPrimary = true, !inRecovery
	} else {
		o.PGErr = err.Error()
	}
	return o
}

// probeOverSSH looks at old-primary node n over SSH: its data directory
// (postmaster, pg_control, sdr's fence marker) and, when a postmaster
// runs, PostgreSQL on its own socket.
func (e *Env) probeOverSSH(ctx context.Context, n *cluster.Node, bound time.Duration) oldPrimaryObs {
	var o oldPrimaryObs
	sctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	a, err := e.access(sctx, n)
	if err != nil {
		o.SSHErr = err.Error()
		return o
	}
	pr, err := cluster.ProbeDataDir(sctx, a, n.BinDir, n.DataDir, []string{fenceMarkerName}, nil)
	if err != nil {
		o.SSHErr = err.Error()
		return o
	}
	o.SSH, o.PostmasterAlive = true, pr.PostmasterAlive
	_, o.Fenced = pr.Files[fenceMarkerName]
	if c := pr.Control; c != nil {
		o.State, o.CheckpointLSN, o.SystemID = c.State, c.CheckpointLSN, c.SystemID
	}
	if pr.PostmasterAlive {
		err := e.withAdmin(sctx, n, func(ctx context.Context, c *pgx.Conn) error {
			var inRecovery bool
			if err := c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
				return err
			}
			o.AdminAnswered, o.AdminPrimary = true, !inRecovery
			return nil
		})
		if err != nil {
			o.PGErr = err.Error()
		}
	}
	return o
}

const windowSQL = `SELECT coalesce(pg_last_wal_receive_lsn()::text, ''), coalesce(pg_last_wal_replay_lsn()::text, ''),
	(SELECT last_msg_receipt_time FROM pg_stat_wal_receiver), pg_last_xact_replay_timestamp(),
	coalesce((SELECT latest_end_lsn::text FROM pg_stat_wal_receiver), '')`

// lossWindow reads, on the main standby, what it had of the old primary's WAL.
func (e *Env) lossWindow(ctx context.Context, main *cluster.Node, obs []oldPrimaryObs, sysID string) (lossWindow, error) {
	var w lossWindow
	var lastMsg, lastTx *time.Time
	err := e.withAdmin(ctx, main, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, windowSQL).Scan(&w.ReceivedLSN, &w.ReplayedLSN, &lastMsg, &lastTx, &w.UpstreamEnd)
	})
	if err != nil {
		return w, fmt.Errorf("while reading what the main standby %s received: %w", main.Name, err)
	}
	if lastMsg != nil {
		w.LastMessage = *lastMsg
	}
	if lastTx != nil {
		w.LastReplayTx = *lastTx
	}
	recv, err1 := cluster.ParseLSN(w.ReceivedLSN)
	end, err2 := cluster.ParseLSN(w.UpstreamEnd)
	if err1 == nil && err2 == nil && w.UpstreamEnd != "" {
		d := int64(end) - int64(recv)
		if d < 0 {
			d = 0
		}
		w.LagBytes = &d
	}
	if replayed, err := cluster.ParseLSN(w.ReplayedLSN); err == nil {
		why, whyNot := noLossProofWhy(obs, sysID, replayed)
		if why != "" {
			w.NoLoss, w.NoLossBecause = true, why
		}
		w.noLossWhyNot = whyNot
	}
	return w, nil
}

// fenceOldPrimary stops every old-primary node sdr can reach over SSH and
// leaves it unable to start as a primary: standby.signal (whatever starts
// it starts a standby, which takes no writes) and sdr's fence marker.
// Nodes it cannot reach are recorded and printed: the operator must keep
// them down.
func (e *Env) fenceOldPrimary(ctx context.Context, rc *workflow.RunContext) error {
	promo, err := e.promotion(ctx, rc)
	if err != nil {
		return err
	}
	sysID := ""
	if promo != nil {
		sysID = promo.SystemID
	}
	nodes := e.primaryNodes()
	unreached := make([]string, len(nodes))
	err = forEach(ctx, nodes, func(ctx context.Context, n *cluster.Node) error {
		a, pr, o, err := e.observeFence(ctx, n)
		switch decideFence(o) {
		case fenceUnreach:
			unreached[indexOf(nodes, n)] = n.Name
			rc.Log.Warn("old primary node cannot be reached over SSH, so it is NOT fenced: make sure it stays down", zap.String("node", n.Name), zap.Error(err))
			return nil
		case fenceNone:
			rc.Log.Info("old primary node already fenced", zap.String("node", n.Name))
			return nil
		case fenceStop:
			if err := e.stopForFence(ctx, rc, a, n, pr); err != nil {
				return err
			}
		}
		return e.markFenced(ctx, rc, a, n, sysID)
	})
	if err != nil {
		return err
	}
	var list []string
	for _, u := range unreached {
		if u != "" {
			list = append(list, u)
		}
	}
	if _, err := rc.SaveOnce(ctx, valFailoverUnfenced, strings.Join(list, ",")); err != nil {
		return err
	}
	return nil
}

// observeFence probes old-primary node n over SSH for 3_fence, bounded
// by the connect timeout. err says why SSH or the probe failed (o.SSH is
// then false); it is not the step's error.
func (e *Env) observeFence(ctx context.Context, n *cluster.Node) (cluster.Access, cluster.DataDirProbe, oldPrimaryObs, error) {
	bound := e.Config.Timeouts.Connect.Duration + 2*time.Second
	sctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	a, err := e.access(sctx, n)
	var pr cluster.DataDirProbe
	if err == nil {
		pr, err = cluster.ProbeDataDir(sctx, a, n.BinDir, n.DataDir, []string{fenceMarkerName}, nil)
	}
	o := oldPrimaryObs{Node: n.Name, SSH: err == nil, PostmasterAlive: pr.PostmasterAlive}
	_, o.Fenced = pr.Files[fenceMarkerName]
	return a, pr, o, err
}

// stopForFence stops an old-primary node: a fast shutdown, then an
// immediate one, and if its postmaster does not answer signals (frozen),
// SIGKILL to its whole process group, checked against its data directory.
func (e *Env) stopForFence(ctx context.Context, rc *workflow.RunContext, a cluster.Access, n *cluster.Node, pr cluster.DataDirProbe) error {
	for _, mode := range []string{"fast", "immediate"} {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := a.Run(sctx, fmt.Sprintf("%s stop -D %s -m %s -w -t 8", bin(n, "pg_ctl"), q(n.DataDir), mode), cluster.RunOpts{})
		cancel()
		if err == nil {
			rc.Log.Warn("old primary node stopped to fence it", zap.String("node", n.Name), zap.String("mode", mode))
			return nil
		}
		rc.Log.Info("stopping the old primary node did not finish", zap.String("node", n.Name), zap.String("mode", mode), zap.Error(err))
	}
	// A frozen postmaster: kill its process group, after checking the pid
	// still runs in this data directory.
	dir := pr.Dir.RealPath
	cmd := fmt.Sprintf(`p=%d; [ "$(readlink /proc/$p/cwd)" = %s ] || exit 0; kill -KILL -- -$p 2>/dev/null || kill -KILL $p; `+
		`i=0; while kill -0 $p 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; ! kill -0 $p 2>/dev/null`, pr.PostmasterPID, q(dir))
	cctx, cancel := e.cmdCtx(ctx)
	defer cancel()
	if _, err := a.Run(cctx, cmd, cluster.RunOpts{}); err != nil {
		return fmt.Errorf("while fencing %s: its postmaster %d does not stop: %w", n.Name, pr.PostmasterPID, err)
	}
	rc.Log.Warn("old primary node killed to fence it (it did not answer a shutdown)", zap.String("node", n.Name), zap.Int("pid", pr.PostmasterPID))
	return nil
}

// markFenced writes standby.signal and sdr's fence marker into n's data directory.
func (e *Env) markFenced(ctx context.Context, rc *workflow.RunContext, a cluster.Access, n *cluster.Node, sysID string) error {
	cctx, cancel := e.cmdCtx(ctx)
	defer cancel()
	marker := fmt.Sprintf("pair=%s\nfenced_by=sdr failover of cluster %s\nat=%s\nsystem_identifier=%s\n",
		e.Config.Name, e.Config.StandbyName, time.Now().UTC().Format(time.RFC3339), sysID)
	if err := a.WriteFile(cctx, path.Join(n.DataDir, fenceMarkerName), []byte(marker), 0o600); err != nil {
		return fmt.Errorf("while fencing %s: %w", n.Name, err)
	}
	if _, err := a.Run(cctx, "touch "+q(path.Join(n.DataDir, "standby.signal")), cluster.RunOpts{}); err != nil {
		return fmt.Errorf("while fencing %s: %w", n.Name, err)
	}
	rc.Log.Warn("old primary node fenced: it starts only as a standby now", zap.String("node", n.Name),
		zap.String("marker", path.Join(n.DataDir, fenceMarkerName)))
	return nil
}

// promoteMain promotes the main standby, once: the main standby's system
// identifier and timeline are recorded before pg_promote, so that a rerun
// after a kill recognises its own promotion and never promotes again.
func (e *Env) promoteMain(ctx context.Context, rc *workflow.RunContext) error {
	return e.promote(ctx, rc, nil, func(ctx context.Context, rc *workflow.RunContext, sysID string) error {
		return e.oldPrimaryStillDown(ctx, rc, sysID, "Stop it (or decide for a switchover instead), then run the failover again "+
			"with --restart, so that the check and the fence run again")
	})
}

// oldPrimaryStillDown probes the old primary cluster again right before a
// promotion whose check ran earlier (a failover resumed at 4_promote; a
// switchover's promote half): a node that came back since (a data centre
// that returned, a node the fence could not reach, an aborted demote
// half) must not be left beside a second primary. advice says what to do.
func (e *Env) oldPrimaryStillDown(ctx context.Context, rc *workflow.RunContext, sysID, advice string) error {
	var up []string
	for _, o := range e.probeOldPrimary(ctx, rc, sysID) {
		if o.answersAsPrimary() {
			up = append(up, o.Node)
		}
	}
	if len(up) > 0 {
		return permanent(fmt.Errorf("the old primary cluster answers as a primary again (%s): nothing was promoted. %s",
			strings.Join(up, ", "), advice))
	}
	rc.Log.Info("the old primary cluster was checked again before the promotion (this run resumed at the promotion): no node answers as a primary")
	return nil
}

// promote promotes the main standby once (see promoteMain). after, when
// not nil, runs on the new primary right after pg_promote and before the
// checkpoint (a switchover creates the old primary's slot there). recheck,
// when this run did not itself just check the old primary (a rerun that
// resumes at the promotion), runs before pg_promote and refuses it when
// the old primary may run again.
func (e *Env) promote(ctx context.Context, rc *workflow.RunContext, after func(ctx context.Context, c *pgx.Conn) error,
	recheck func(ctx context.Context, rc *workflow.RunContext, sysID string) error) error {
	main, _ := e.mainStandby()
	if promo, err := e.promotion(ctx, rc); err != nil || promo != nil {
		if promo != nil {
			rc.Log.Info("promotion already recorded", zap.String("node", promo.Node), zap.Int("timeline", promo.Timeline))
		}
		return err
	}
	var f drNodeFacts
	if err := e.withAdmin(ctx, main, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, drFactsSQL).Scan(&f.InRecovery, &f.SystemID, &f.Timeline)
	}); err != nil {
		return fmt.Errorf("while reading the main standby %s before promoting it: %w", main.Name, err)
	}
	// Not promoted yet: a run that did not itself just check the old
	// primary checks it again first, before anything is recorded (a
	// recorded intent makes later runs skip the failover's check).
	if f.InRecovery && !e.oldPrimaryChecked && recheck != nil {
		if err := recheck(ctx, rc, f.SystemID); err != nil {
			return err
		}
	}
	if f.InRecovery {
		if _, err := rc.SaveOnce(ctx, valFailoverIntent, fmt.Sprintf("%s %d", f.SystemID, f.Timeline)); err != nil {
			return err
		}
	}
	intent, _, err := rc.Value(ctx, valFailoverIntent)
	if err != nil {
		return err
	}
	intentSys, intentTLI := parseIntent(intent)
	done, err := promotedAlready(main.Name, f.InRecovery, f.SystemID, f.Timeline, intentSys, intentTLI)
	if err != nil {
		return err
	}
	if !done {
		if err := rc.Failpoint("before-pg_promote"); err != nil {
			return err
		}
		lctx, cancel := e.longCtx(ctx)
		defer cancel()
		start := time.Now()
		err := e.withAdminLong(lctx, main, func(ctx context.Context, c *pgx.Conn) error {
			var ok bool
			if err := c.QueryRow(ctx, "SELECT pg_promote(true, 300)").Scan(&ok); err != nil {
				return err
			}
			if !ok {
				return errors.New("pg_promote returned false: not promoted within 300 s")
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("while promoting the main standby %s: %w", main.Name, err)
		}
		rc.Log.Warn("main standby promoted", zap.String("node", main.Name), zap.Duration("took", time.Since(start)))
		if err := rc.Failpoint("after-pg_promote"); err != nil {
			return err
		}
	}
	rec := promotionRecord{Node: main.Name, SystemID: f.SystemID, OldTimeline: intentTLI, At: time.Now().UTC(), Cluster: e.Config.StandbyName}
	lctx, cancel := e.longCtx(ctx)
	defer cancel()
	err = e.withAdminLong(lctx, main, func(ctx context.Context, c *pgx.Conn) error {
		if after != nil {
			if err := after(ctx, c); err != nil {
				return err
			}
		}
		if _, err := c.Exec(ctx, "CHECKPOINT"); err != nil {
			return fmt.Errorf("CHECKPOINT: %w", err)
		}
		if err := c.QueryRow(ctx, `SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int`).Scan(&rec.Timeline); err != nil {
			return err
		}
		var hist string
		if err := c.QueryRow(ctx, `SELECT pg_read_file('pg_wal/' || lpad(upper(to_hex($1::int)), 8, '0') || '.history')`, rec.Timeline).Scan(&hist); err != nil {
			return fmt.Errorf("reading the history of timeline %d: %w", rec.Timeline, err)
		}
		_, sp, err := parseHistory(hist, rec.Timeline)
		rec.SwitchPoint = sp
		return err
	})
	if err != nil {
		return fmt.Errorf("while recording the promotion of %s: %w", main.Name, err)
	}
	rec.Epoch = rec.Timeline
	if raw, ok, _ := rc.Value(ctx, valFailoverWindow); ok {
		_ = json.Unmarshal([]byte(raw), &rec.Window)
	}
	if u, _, _ := rc.Value(ctx, valFailoverUnfenced); u != "" {
		rec.Unfenced = strings.Split(u, ",")
	}
	raw, _ := json.Marshal(rec)
	if _, err := rc.SaveOnce(ctx, valFailoverPromotion, string(raw)); err != nil {
		return err
	}
	rc.Log.Warn("promotion recorded", zap.String("node", main.Name), zap.Int("timeline", rec.Timeline), zap.String("switch_point", rec.SwitchPoint),
		zap.String("system_identifier", rec.SystemID))
	return nil
}

// parseIntent reads valFailoverIntent: the main standby's system
// identifier and timeline right before promoting ("", 0 when none).
func parseIntent(intent string) (string, int) {
	fs := strings.Fields(intent)
	if len(fs) != 2 {
		return "", 0
	}
	tli, _ := strconv.Atoi(fs[1])
	return fs[0], tli
}

// withAdminLong is withAdmin bounded by ctx only (for pg_promote and CHECKPOINT).
func (e *Env) withAdminLong(ctx context.Context, n *cluster.Node, fn func(ctx context.Context, c *pgx.Conn) error) error {
	c, err := e.admin(ctx, n)
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	return fn(ctx, c)
}

// cascadesFollow waits, bounded by --timeout, until every cascade streams
// from the new primary on its new timeline. A cascade that cannot be
// reached or does not run is not waited for (cascadeNotWaited): the run
// says so and goes on.
func (e *Env) cascadesFollow(ctx context.Context, rc *workflow.RunContext) error {
	promo, err := e.promotion(ctx, rc)
	if err != nil {
		return err
	}
	if promo == nil {
		return errors.New("no promotion is recorded: rerun the failover")
	}
	main, cascades := e.mainStandby()
	return forEach(ctx, cascades, func(ctx context.Context, n *cluster.Node) error {
		why, err := e.followerNotWaited(ctx, rc, n)
		if err != nil {
			return err
		}
		if why != "" {
			rc.Log.Warn(fmt.Sprintf("cascade %s %s: not waited for. Its upstream is %s and its recovery_target_timeline latest, so it follows "+
				"the new primary onto timeline %d once it runs: start it, then check with sdr status --config", n.Name, why, main.Name, promo.Timeline),
				zap.String("node", n.Name))
			return nil
		}
		err = poll(ctx, e.Timeout, pollStream, fmt.Sprintf("cascade %s to follow %s onto timeline %d", n.Name, main.Name, promo.Timeline),
			func(ctx context.Context) (bool, error) {
				var status, host string
				var port, tli int
				err := e.withAdmin(ctx, n, func(ctx context.Context, c *pgx.Conn) error {
					return c.QueryRow(ctx, `SELECT coalesce(status, 'none'), coalesce(sender_host, ''), coalesce(sender_port, 0), coalesce(received_tli, 0)
						FROM (SELECT 1) one LEFT JOIN pg_stat_wal_receiver ON true`).Scan(&status, &host, &port, &tli)
				})
				if err != nil {
					return false, err
				}
				if status != "streaming" || !streamsFrom(main, host, port) || tli != promo.Timeline {
					return false, fmt.Errorf("%s: walreceiver %s from %s:%d on timeline %d", n.Name, status, host, port, tli)
				}
				rc.Log.Info("cascade follows the new primary", zap.String("node", n.Name), zap.Int("timeline", tli))
				return true, nil
			})
		if err != nil {
			return fmt.Errorf("cascade %s does not follow the new primary: %w", n.Name, err)
		}
		return nil
	})
}

// cascadeNotWaited says why 5_follow does not wait for a cascade ("" when
// it does): one that cannot be reached or whose PostgreSQL does not run
// cannot follow now, and would only hold up the end of a promotion that
// has happened; it follows once it runs, as sdr configured it.
func cascadeNotWaited(reachable, running bool) string {
	switch {
	case !reachable:
		return "cannot be reached over SSH"
	case !running:
		return "does not run"
	}
	return ""
}

// followerNotWaited looks at a node that should follow a new timeline
// and says why it is not waited for ("" when it is; cascadeNotWaited):
// SSH cannot reach it (the error is logged), or its PostgreSQL does not
// run.
func (e *Env) followerNotWaited(ctx context.Context, rc *workflow.RunContext, n *cluster.Node) (string, error) {
	if _, err := e.access(ctx, n); err != nil {
		rc.Log.Warn("node cannot be reached", zap.String("node", n.Name), zap.Error(err))
		return cascadeNotWaited(false, false), nil
	}
	running, err := e.pgRunning(ctx, n, n.DataDir)
	if err != nil {
		return "", err
	}
	return cascadeNotWaited(true, running), nil
}

// finishFailover says what the operator changes now.
func (e *Env) finishFailover(ctx context.Context, rc *workflow.RunContext) error {
	promo, err := e.promotion(ctx, rc)
	if err != nil {
		return err
	}
	if promo == nil {
		return errors.New("no promotion is recorded: rerun the failover")
	}
	if len(promo.Unfenced) > 0 {
		rc.Log.Warn("these old-primary nodes were NOT fenced: keep them down until they are re-protected", zap.Strings("nodes", promo.Unfenced))
	}
	rc.Log.Warn(fmt.Sprintf("cluster %s is the primary now (timeline %d, switch point %s): set \"primary: %s\" in %s on both sides",
		e.Config.StandbyName, promo.Timeline, promo.SwitchPoint, e.Config.StandbyName, e.Config.Path))
	return nil
}

// streamsFrom reports whether a walreceiver's sender host and port are
// node n's: its configured host, or its Unix socket directory for a
// standby on the same machine.
func streamsFrom(n *cluster.Node, host string, port int) bool {
	return port == n.PGPort && (host == n.Host || host == n.SocketDir)
}
