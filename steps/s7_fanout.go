package steps

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

// The fan-out copy (copy.fan_out). The main standby's node runs
// pg_basebackup from the primary as one tar stream, which tee hands both
// to tar -x on that node (through a FIFO in its work directory) and to its
// stdout; sdr reads that through its connection to the node and writes the
// same bytes into tar -x on every cascade's node at once, each into
// <work>/new. So the copy crosses between the data centres once (primary
// -> main standby's node, pg_basebackup's own connection), and then goes
// main standby's node -> sdr -> each cascade's node over sdr's
// connections. Then only the starts are in order: the main standby first,
// then each cascade, streaming from the main standby through its slot
// there. Each node still goes through the recorded phases saved, copied,
// configured, swapped and started; a copy is complete on a node only once
// the whole stream went through, every node's tar ended well and the
// copies are on disk, and only a complete copy is ever swapped in.

// fanOutFailpointAt is how far into the stream the failpoint
// copying@<main standby> fires.
const fanOutFailpointAt = 16 << 20

// newCopyID is the id of a copy that this run makes of node.
func newCopyID(rc *workflow.RunContext, node string) string { return rc.RunID + "/" + node }

// buildFanOut rebuilds the DR cluster from one copy of the primary,
// streamed to every node at once (see above). A cascade that cannot take
// part (the stream has passed, or its copy cannot stream from the main
// standby) is copied from the main standby as without the fan-out.
//
// done is false, with nothing done, when the main standby is a former
// primary on the rewind path: there is no copy of the primary to share
// then, and the caller builds the DR cluster the ordinary way.
func (e *Env) buildFanOut(ctx context.Context, rc *workflow.RunContext, ups map[string]upstream, p remoteFacts, view func() PrimaryView) (done bool, err error) {
	main, _ := e.mainStandby()
	mb, releaseMain, err := e.prepareNode(ctx, rc, main, ups[main.Name], p, view, "", nil)
	if err != nil {
		return false, err
	}
	if mb.method == rejoinRewind {
		releaseMain()
		return false, nil
	}
	defer releaseMain()
	return true, e.fanOutFrom(ctx, rc, mb, ups, p, view)
}

// fanOutFrom is buildFanOut once the main standby mb is locked and
// observed.
func (e *Env) fanOutFrom(ctx context.Context, rc *workflow.RunContext, mb *nodeBuild, ups map[string]upstream, p remoteFacts, view func() PrimaryView) error {
	main, cascades := e.mainStandby()
	mainAct, err := planNodeBuild(mb.obs)
	if err != nil {
		return err
	}
	mainCopy := mb.obs.CopyID
	if mainAct == actCopy {
		mainCopy = newCopyID(rc, main.Name)
	}

	// Every cascade: lock, observe, and decide whether it takes part.
	cbs := make([]*nodeBuild, len(cascades))
	releases := make([]func(), len(cascades))
	paths := make([]cascadePath, len(cascades))
	actions := make([]buildAction, len(cascades))
	recs := make([]fanOutRecord, len(cascades))
	defer func() {
		for _, r := range releases {
			if r != nil {
				r()
			}
		}
	}()
	err = forEach(ctx, cascades, func(ctx context.Context, n *cluster.Node) error {
		i := indexOf(cascades, n)
		b, release, err := e.prepareNode(ctx, rc, n, ups[n.Name], p, view, mainCopy, nil)
		if err != nil {
			return err
		}
		cbs[i], releases[i] = b, sync.OnceFunc(release)
		raw, err := rc.Phase(ctx, fanOutPart(n.Name))
		if err != nil {
			return err
		}
		rec, recOK := parseFanOutRecord(raw)
		// A cascade that may not be replaced is refused before anything
		// is copied.
		if actions[i], err = planNodeBuild(b.obs); err != nil {
			return err
		}
		paths[i] = planFanOutCascade(mainAct, mainCopy, rec, recOK, b.obs, actions[i])
		recs[i] = rec
		return nil
	})
	if err != nil {
		return err
	}
	mb.logResume(mainAct)
	for i, b := range cbs {
		b.log.Info("cascade of the fan-out copy", zap.String("path", string(paths[i])), zap.String("action", string(actions[i])),
			zap.String("phase", orNone(b.obs.Phase)))
	}

	if mainAct == actCopy {
		parts := []*nodeBuild{mb}
		for i, b := range cbs {
			if paths[i] == pathJoin {
				parts = append(parts, b)
			}
		}
		if err := forEachBuild(ctx, parts, func(ctx context.Context, b *nodeBuild) error { return b.beginCopy(ctx) }); err != nil {
			return err
		}
		got, err := e.fanOutCopy(ctx, rc, mb, parts[1:], p)
		if err != nil {
			return err
		}
		mainAct = actConfigure
		for i := range cbs {
			if r, ok := got[cascades[i].Name]; ok {
				recs[i], actions[i] = r, actConfigure
			}
		}
	}

	// The main standby is configured, swapped and started while each
	// fan-out cascade's copy is configured beside its data directory.
	all := append([]*nodeBuild{mb}, cbs...)
	err = forEachBuild(ctx, all, func(ctx context.Context, b *nodeBuild) error {
		if b == mb {
			return mb.runFrom(ctx, mainAct)
		}
		i := indexOf(cascades, b.n)
		if paths[i] == pathOrdinary || actions[i] != actConfigure {
			return nil
		}
		if err := b.configure(ctx); err != nil {
			return err
		}
		actions[i] = actSwap
		return b.setPhase(ctx, phaseConfigured)
	})
	if err != nil {
		return err
	}

	// The cascades, once the main standby runs.
	mainCopy, err = e.currentCopy(ctx, main)
	if err != nil {
		return err
	}
	if err := e.ensureCascadeSlots(ctx, rc, main, cascades); err != nil {
		return err
	}
	return forEach(ctx, cascades, func(ctx context.Context, n *cluster.Node) error {
		i := indexOf(cascades, n)
		b := cbs[i]
		if paths[i] != pathOrdinary {
			o, err := e.observeCascadeReady(ctx, main, n, recs[i], mainCopy)
			if err != nil {
				return err
			}
			ok, why := decideCascadeReady(o)
			if ok {
				b.log.Info("the fan-out copy can stream from the main standby", zap.Stringer("start_lsn", recs[i].StartLSN),
					zap.Stringer("slot_restart_lsn", o.RestartLSN))
				return b.runFrom(ctx, actions[i])
			}
			b.log.Warn("the fan-out copy of the cascade is not used ("+why+"); it is copied from the main standby instead",
				zap.String("dir", b.lay.New()))
			if err := b.forgetCopy(ctx); err != nil {
				return err
			}
		}
		releases[i]() // buildNode takes the node's lock again
		return e.buildNode(ctx, rc, n, ups[n.Name], p, view, mainCopy, nil)
	})
}

// forgetCopy drops the records of the node's copy (phase, copy id and
// fan-out record), so that its rebuild starts over with a new copy. The
// copy itself, never swapped in, is removed by that new copy.
func (b *nodeBuild) forgetCopy(ctx context.Context) error {
	return b.rc.SetPhases(context.WithoutCancel(ctx), map[string]string{fanOutPart(b.n.Name): "", copyPart(b.n.Name): "", b.n.Name: ""})
}

// fanOutCopy makes the fan-out copy into <work>/new of src (the main
// standby) and every node of cascades, whose copies beginCopy has begun.
// When it returns without error, each of them holds the complete copy on
// disk, its new.complete and the phase copied; each cascade has its
// fan-out record, also returned by node name.
func (e *Env) fanOutCopy(ctx context.Context, rc *workflow.RunContext, src *nodeBuild, cascades []*nodeBuild, p remoteFacts) (map[string]fanOutRecord, error) {
	wan := e.Config.Copy
	all := append([]*nodeBuild{src}, cascades...)
	names := make([]string, len(all))
	for i, b := range all {
		names[i] = b.n.Name
	}
	lctx, cancelLong := e.longCtx(ctx)
	defer cancelLong()
	cctx, cancel := context.WithCancelCause(lctx)
	defer cancel(nil)

	// tar -x on every cascade's node, reading the stream on its stdin.
	var sinks []*relaySink
	for _, b := range cascades {
		proc, err := cluster.StartFed(cctx, b.a, b.lay.Tag(), extractCommand(b.lay.New(), wan), cluster.RunOpts{})
		if err != nil {
			for _, s := range sinks {
				_ = s.in.Close()
				_ = s.wait()
			}
			return nil, fmt.Errorf("while starting tar on %s to unpack the copy: %w", b.n.Name, err)
		}
		sinks = append(sinks, &relaySink{name: b.n.Name, in: proc.Stdin(), wait: func() error { _, err := proc.Wait(); return err }})
	}
	r := newRelay(sinks, func(err error) { cancel(err) })
	r.at(fanOutFailpointAt, func() error { return rc.Failpoint("copying@" + src.n.Name) })

	conninfo := fmt.Sprintf("host=%s port=%d user=%s passfile=%s application_name=%s",
		conninfoQuote(cluster.ConninfoHost(src.up.Host)), src.up.Port, conninfoQuote(e.Config.Replication.User), conninfoQuote(src.lay.Pgpass()),
		conninfoQuote(cluster.AppName(e.Config.Name, src.n.Name)+"_basebackup"))
	args := append([]string{bin(src.n, "pg_basebackup")}, features(pgVersion(p.VersionNum)).tarStreamArgs(conninfo, wan)...)
	script := fanOutSource(strings.Join(args, " "), src.lay.FanOutFIFO(), extractCommand(src.lay.New(), wan))
	src.log.Info("fan-out copy started: pg_basebackup on the main standby's node, its tar stream unpacked on every DR node",
		zap.String("from", src.up.Node), zap.Strings("to", names), zap.String("compress", orNone(wan.Compress)),
		zap.String("max_rate", orNone(wan.MaxRate)))
	pw := newProgressWriter(src.log).reportTo(partsReporter{to: rc, parts: names}, "")
	defer pw.end()
	start := time.Now()
	_, runErr := cluster.RunLong(cctx, src.a, src.lay.Tag(), script, cluster.RunOpts{Stdout: r, Stderr: pw})
	first := r.failure()
	if runErr != nil {
		cancel(runErr) // ends the unpacking on every node
	}
	relayErr := r.close()
	switch {
	case first != nil:
		return nil, fmt.Errorf("fan-out copy from %s: %w", src.up.Node, first)
	case runErr != nil:
		return nil, fmt.Errorf("while copying from %s with pg_basebackup on %s (fan-out copy): %w", src.up.Node, src.n.Name, runErr)
	case relayErr != nil:
		return nil, fmt.Errorf("fan-out copy from %s: %w", src.up.Node, relayErr)
	}
	pw.flush()
	streamed := time.Since(start)

	// On disk everywhere before it counts as copied, as pg_basebackup
	// does it for a copy of its own.
	err := forEachBuild(ctx, all, func(ctx context.Context, b *nodeBuild) error {
		lctx, cancel := e.longCtx(ctx)
		defer cancel()
		if _, err := cluster.RunLong(lctx, b.a, b.lay.Tag(), "exec "+bin(b.n, "initdb")+" --sync-only -D "+q(b.lay.New()), cluster.RunOpts{}); err != nil {
			return fmt.Errorf("while writing the copy in %s on %s to disk: %w", b.lay.New(), b.n.Name, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	// The WAL from the backup's start is in the copy up to its end; from
	// there on the main standby streams it through the pair's slot, which
	// must still keep it.
	startLSN, err := e.copyStart(ctx, src)
	if err != nil {
		return nil, err
	}
	so, err := e.primarySlot(ctx, src, p)
	if err != nil {
		return nil, err
	}
	if err := checkPrimarySlotKeeps(p.Node.Name, e.slotName(), startLSN, so); err != nil {
		return nil, err
	}

	// Each node's copy is complete: new.complete on every node, then the
	// phase copied of all of them (and the cascades' fan-out records) in
	// one record, so that a rerun sees the copy complete everywhere or
	// nowhere.
	err = forEachBuild(ctx, all, func(ctx context.Context, b *nodeBuild) error {
		_, err := e.ensureFile(ctx, b.n, b.lay.NewComplete(), b.obs.CopyID+"\n")
		return err
	})
	if err != nil {
		return nil, err
	}
	recs := map[string]fanOutRecord{}
	phases := map[string]string{}
	for _, b := range all {
		b.obs.NewComplete = b.obs.CopyID
		phases[b.n.Name] = phaseCopied
		if b != src {
			rec := fanOutRecord{Main: src.obs.CopyID, Copy: b.obs.CopyID, StartLSN: startLSN}
			recs[b.n.Name] = rec
			phases[fanOutPart(b.n.Name)] = rec.String()
		}
	}
	if err := rc.SetPhases(context.WithoutCancel(ctx), phases); err != nil {
		return nil, err
	}
	for _, b := range append(append([]*nodeBuild{}, cascades...), src) {
		b.log.Info("phase reached", zap.String("phase", phaseCopied))
		if err := rc.Failpoint(phaseCopied + "@" + b.n.Name); err != nil {
			return nil, err
		}
	}
	src.log.Info("fan-out copy finished", zap.Strings("nodes", names), zap.Int64("bytes", r.bytes()),
		zap.Duration("streamed_in", streamed), zap.Duration("took", time.Since(start)), zap.Stringer("start_lsn", startLSN))
	return recs, nil
}

// fanOutExitUnpack is the exit code of fanOutSource when pg_basebackup
// succeeded but unpacking the copy on the main standby's node failed.
const fanOutExitUnpack = 70

// fanOutSource is the script the main standby's node runs for the fan-out
// copy: pgbb (pg_basebackup writing the tar stream on stdout) piped into
// tee, which writes it both to stdout (to sdr, for the cascades) and into
// fifo, read by extract (tar -x into the node's own <work>/new). It exits
// with pg_basebackup's exit code, or fanOutExitUnpack when only extract
// failed. Either side failing ends the other: an extract that stops
// reading makes tee, and so pg_basebackup, die of SIGPIPE; a
// pg_basebackup that fails ends the stream, and extract reads EOF.
func fanOutSource(pgbb, fifo, extract string) string {
	return fmt.Sprintf(`sdr_f=%s
rm -f -- "$sdr_f" && mkfifo -m 600 -- "$sdr_f" || exit 1
( %s ) <"$sdr_f" &
sdr_t=$!
{ sdr_rc=$( { { ( %s ) 3>&- 4>&-; echo $? >&3; } | tee -- "$sdr_f" >&4 3>&- 4>&-; } 3>&1 ); } 4>&1
wait "$sdr_t"
sdr_trc=$?
rm -f -- "$sdr_f"
[ "$sdr_rc" = 0 ] || exit "${sdr_rc:-1}"
if [ "$sdr_trc" != 0 ]; then
	echo "sdr: unpacking the copy on this node failed (exit code $sdr_trc)" >&2
	exit %d
fi
`, q(fifo), extract, pgbb, fanOutExitUnpack)
}

// copyStart reads where the backup in b's <work>/new starts.
func (e *Env) copyStart(ctx context.Context, b *nodeBuild) (cluster.LSN, error) {
	cctx, cancel := e.cmdCtx(ctx)
	defer cancel()
	label, err := b.a.ReadFile(cctx, path.Join(b.lay.New(), "backup_label"))
	if err != nil {
		return 0, fmt.Errorf("while reading the backup_label of the copy on %s: %w", b.n.Name, err)
	}
	l, err := backupStartLSN(string(label))
	if err != nil {
		return 0, fmt.Errorf("%s: the copy in %s: %w", b.n.Name, b.lay.New(), err)
	}
	return l, nil
}

// slotLSNSQL reads a physical slot's restart_lsn and wal_status.
const slotLSNSQL = `SELECT restart_lsn::text, coalesce(wal_status, '') FROM pg_replication_slots WHERE slot_name = $1`

// scanSlotLSN runs slotLSNSQL for slot on c.
func scanSlotLSN(ctx context.Context, c *pgx.Conn, slot string) (exists bool, restart *cluster.LSN, walStatus string, err error) {
	var lsn *string
	err = c.QueryRow(ctx, slotLSNSQL, slot).Scan(&lsn, &walStatus)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil, "", nil
	}
	if err != nil {
		return false, nil, "", err
	}
	if lsn != nil {
		l, err := cluster.ParseLSN(*lsn)
		if err != nil {
			return false, nil, "", err
		}
		restart = &l
	}
	return true, restart, walStatus, nil
}

// primarySlot reads the pair's slot on the primary as the replication
// user, from the main standby's node.
func (e *Env) primarySlot(ctx context.Context, via *nodeBuild, p remoteFacts) (primarySlotObs, error) {
	cctx, cancel := e.cmdCtx(ctx)
	defer cancel()
	c, err := cluster.ConnectReplUser(cctx, e.Config, via.a, p.Node.ReplHost(), p.Node.PGPort, e.Password, e.Config.Postgres.Database)
	if err != nil {
		return primarySlotObs{}, fmt.Errorf("primary %s: %w", p.Node.Name, err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	var o primarySlotObs
	if o.Exists, o.RestartLSN, o.WalStatus, err = scanSlotLSN(cctx, c, e.slotName()); err != nil {
		return o, fmt.Errorf("while reading slot %s on %s: %w", e.slotName(), p.Node.Name, err)
	}
	return o, nil
}

// observeCascadeReady gathers what decideCascadeReady needs for cascade n.
func (e *Env) observeCascadeReady(ctx context.Context, main, n *cluster.Node, rec fanOutRecord, mainCopy string) (cascadeReadyObs, error) {
	o := cascadeReadyObs{Node: n.Name, Rec: rec, MainNode: main.Name, MainDataCopy: mainCopy, Slot: cluster.SlotName(e.Config.Name, n.Name)}
	err := e.withAdmin(ctx, main, func(ctx context.Context, c *pgx.Conn) error {
		var err error
		o.SlotExists, o.RestartLSN, o.WalStatus, err = scanSlotLSN(ctx, c, o.Slot)
		return err
	})
	if err != nil {
		return o, fmt.Errorf("while reading slot %s on the main standby %s: %w", o.Slot, main.Name, err)
	}
	return o, nil
}

// forEachBuild runs fn for every node build in parallel (forEach).
func forEachBuild(ctx context.Context, bs []*nodeBuild, fn func(ctx context.Context, b *nodeBuild) error) error {
	nodes := make([]*cluster.Node, len(bs))
	for i, b := range bs {
		nodes[i] = b.n
	}
	return forEach(ctx, nodes, func(ctx context.Context, n *cluster.Node) error {
		return fn(ctx, bs[indexOf(nodes, n)])
	})
}

// partsReporter reports one copy's progress as that of several parts (the
// nodes the fan-out copy goes to).
type partsReporter struct {
	to    progressReporter
	parts []string
}

func (r partsReporter) Progress(_ string, done, total int64) {
	for _, p := range r.parts {
		r.to.Progress(p, done, total)
	}
}

func (r partsReporter) EndProgress(string) {
	for _, p := range r.parts {
		r.to.EndProgress(p)
	}
}
