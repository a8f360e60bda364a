package steps

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"runtime/debug"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

// leftoverGrace is how long a process left by a killed run gets to end
// after SIGTERM before it is killed.
const leftoverGrace = 5 * time.Second

// buildStandby rebuilds the main standby from the primary, then every
// cascade standby from the main standby, in parallel (or, with
// copy.fan_out, every node from one copy of the primary: s7_fanout.go).
// Each node goes
// through the phases saved, copied, configured, swapped and started,
// recorded in the store; a rerun resumes each node at its phase after
// checking the node agrees, and never copies again once a copy is complete.
func (e *Env) buildStandby(ctx context.Context, rc *workflow.RunContext) error {
	p, err := e.remotePrimary(ctx)
	if err != nil {
		return err
	}
	// The primary-cluster nodes are probed while the main standby is
	// locked and cleaned up.
	view := e.primaryViewLater(ctx, rc.Log, p)
	ups := e.upstreams(p.Node)
	main, cascades := e.mainStandby()
	fan, why := useFanOut(e.Config.Copy.FanOut, len(cascades), len(p.Tablespaces))
	if fan {
		done, err := e.buildFanOut(ctx, rc, ups, p, view)
		if done || err != nil {
			return err
		}
		why = "the main standby is a former primary that is rewound, not copied"
	}
	if why != "" {
		rc.Log.Info("copy.fan_out is on, but the fan-out copy is not used: " + why)
	}
	// The cascades are locked, and what an earlier run left running on
	// them is ended, while the main standby is built.
	claims := make([]func() claimed, len(cascades))
	for i, n := range cascades {
		claims[i] = later(func() (r claimed) {
			defer func() {
				if v := recover(); v != nil {
					r = claimed{err: fmt.Errorf("on %s: %w", n.Name, &workflow.PanicError{Value: v, Stack: string(debug.Stack())})}
				}
			}()
			c, err := e.claimNode(ctx, rc, n, p)
			return claimed{c, err}
		})
	}
	defer func() {
		for _, c := range claims {
			if r := c(); r.c != nil {
				r.c.release()
			}
		}
	}()
	if err := e.buildNode(ctx, rc, main, ups[main.Name], p, view, "", nil); err != nil {
		return err
	}
	if len(cascades) == 0 {
		return nil
	}
	// The main standby's copy id is read while the cascades' slots are
	// made on it.
	var mainCopy string
	if err := together(
		func() (err error) { mainCopy, err = e.currentCopy(ctx, main); return err },
		func() error { return e.ensureCascadeSlots(ctx, rc, main, cascades) },
	); err != nil {
		return err
	}
	return forEach(ctx, cascades, func(ctx context.Context, n *cluster.Node) error {
		r := claims[indexOf(cascades, n)]()
		if r.err != nil {
			return r.err
		}
		return e.buildNode(ctx, rc, n, ups[n.Name], p, view, mainCopy, r.c)
	})
}

// currentCopy returns the copy id in the sdr marker of n's data directory.
func (e *Env) currentCopy(ctx context.Context, n *cluster.Node) (string, error) {
	lay, err := e.layoutOf(ctx, n)
	if err != nil {
		return "", err
	}
	a, err := e.access(ctx, n)
	if err != nil {
		return "", err
	}
	cctx, cancel := e.cmdCtx(ctx)
	defer cancel()
	raw, err := a.ReadFile(cctx, path.Join(lay.DataDir, markerName))
	if err != nil {
		return "", fmt.Errorf("while reading the copy marker of %s: %w", n.Name, err)
	}
	m, ok := ParseCopyMarker(string(raw))
	if !ok {
		return "", fmt.Errorf("%s: %s is not an sdr copy marker", n.Name, path.Join(lay.DataDir, markerName))
	}
	return m.CopyID, nil
}

// cascadeSlotSQL tells whether a cascade's slot is still missing.
const cascadeSlotSQL = `SELECT count(*) = 0 FROM pg_replication_slots WHERE slot_name = $1`

// ensureCascadeSlots creates, on the main standby, one physical slot per
// cascade, so that the main standby itself keeps the WAL each cascade
// needs from its copy on. A freshly built main standby has no slots.
func (e *Env) ensureCascadeSlots(ctx context.Context, rc *workflow.RunContext, main *cluster.Node, cascades []*cluster.Node) error {
	return e.withAdmin(ctx, main, func(ctx context.Context, c *pgx.Conn) error {
		for _, n := range cascades {
			slot := cluster.SlotName(e.Config.Name, n.Name)
			var created bool
			err := c.QueryRow(ctx, cascadeSlotSQL, slot).Scan(&created)
			if err == nil && created {
				_, err = c.Exec(ctx, `SELECT pg_create_physical_replication_slot($1, true)`, slot)
			}
			if err != nil {
				return fmt.Errorf("while creating slot %s for cascade %s on the main standby %s: %w", slot, n.Name, main.Name, err)
			}
			if created {
				rc.Log.Info("slot for the cascade created on the main standby", zap.String("node", main.Name), zap.String("slot", slot))
			}
		}
		return nil
	})
}

// buildNode makes n a standby of up, resuming at its recorded phase.
// wantFrom is, for a cascade, the main standby's current copy id. c is
// the node's claim when it was taken ahead (nil: prepareNode takes it).
func (e *Env) buildNode(ctx context.Context, rc *workflow.RunContext, n *cluster.Node, up upstream, p remoteFacts, view func() PrimaryView,
	wantFrom string, c *nodeClaim) error {
	b, release, err := e.prepareNode(ctx, rc, n, up, p, view, wantFrom, c)
	if err != nil {
		return err
	}
	defer release()
	if b.method == rejoinRewind {
		return b.buildByRewind(ctx)
	}
	action, err := planNodeBuild(b.obs)
	if err != nil {
		return err
	}
	b.logResume(action)
	return b.runFrom(ctx, action)
}

// nodeClaim is a node whose directories this run has locked, with what an
// earlier run left running on them ended.
type nodeClaim struct {
	a    cluster.Access
	lay  nodeLayout
	tss  []tsMap
	lock *cluster.NodeLock
}

func (c *nodeClaim) release() { _ = c.lock.Release() }

type claimed struct {
	c   *nodeClaim
	err error
}

// claimNode takes the node-side lock on n's directories and ends what an
// earlier run left running on them.
func (e *Env) claimNode(ctx context.Context, rc *workflow.RunContext, n *cluster.Node, p remoteFacts) (*nodeClaim, error) {
	a, err := e.access(ctx, n)
	if err != nil {
		return nil, err
	}
	lay, err := e.layoutOf(ctx, n)
	if err != nil {
		return nil, err
	}
	lock, err := e.lockNode(ctx, rc, a, lay)
	if err != nil {
		return nil, err
	}
	main, _ := e.mainStandby()
	c := &nodeClaim{a: a, lay: lay, tss: tablespaceMaps(p.Tablespaces, n.Name, main.Name, n == main), lock: lock}
	if err := e.endLeftovers(ctx, rc.Log.With(zap.String("node", n.Name)), a, lay, c.tss); err != nil {
		c.release()
		return nil, err
	}
	return c, nil
}

// prepareNode claims n (claimNode) unless c already holds it, observes the
// node and chooses how it rejoins (b.method: a copy, or for a former
// primary a rewind). release frees the lock.
func (e *Env) prepareNode(ctx context.Context, rc *workflow.RunContext, n *cluster.Node, up upstream, p remoteFacts, view func() PrimaryView,
	wantFrom string, c *nodeClaim) (b *nodeBuild, release func(), err error) {
	if c == nil {
		if c, err = e.claimNode(ctx, rc, n, p); err != nil {
			return nil, nil, err
		}
	}
	// The deferred call must not read the result release: a return with
	// an error sets it to nil before deferred calls run.
	unlock := c.release
	release = unlock
	defer func() {
		if err != nil {
			unlock()
		}
	}()
	log := rc.Log.With(zap.String("node", n.Name))
	b = &nodeBuild{e: e, rc: rc, log: log, a: c.a, n: n, lay: c.lay, up: up, p: p, view: view(), wantFrom: wantFrom, tss: c.tss}
	if err := b.observe(ctx); err != nil {
		return nil, nil, err
	}
	if b.method, err = b.chooseMethod(ctx); err != nil {
		return nil, nil, err
	}
	if b.method == rejoinCopyKeep {
		b.keepWhatever()
	}
	return b, release, nil
}

func (b *nodeBuild) logResume(action buildAction) {
	b.log.Info("rebuild of the node resumes", zap.String("action", string(action)), zap.String("phase", orNone(b.obs.Phase)),
		zap.String("data_dir", string(b.verdict.Kind)))
}

// runFrom runs the node's rebuild stages from action on, recording each
// phase as it is reached.
func (b *nodeBuild) runFrom(ctx context.Context, action buildAction) error {
	stages := []struct {
		from  buildAction
		phase string
		run   func(context.Context) error
	}{
		{actCopy, phaseCopied, b.copy},
		{actConfigure, phaseConfigured, b.configure},
		{actSwap, phaseSwapped, b.swap},
		{actStart, phaseStarted, b.start},
	}
	if action == actDone {
		b.log.Info("this run's copy already runs as a standby")
		return b.setPhase(ctx, phaseStarted)
	}
	on := false
	for _, s := range stages {
		on = on || s.from == action
		if !on {
			continue
		}
		if err := s.run(ctx); err != nil {
			return err
		}
		if err := b.setPhase(ctx, s.phase); err != nil {
			return err
		}
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// lockNode takes the node-side lock on n's directories for as long as
// this run works on them.
func (e *Env) lockNode(ctx context.Context, rc *workflow.RunContext, a cluster.Access, lay nodeLayout) (*cluster.NodeLock, error) {
	cctx, cancel := e.cmdCtx(ctx)
	defer cancel()
	host, _ := os.Hostname()
	holder := fmt.Sprintf("sdr pid %d on %s, run %s, step %s", os.Getpid(), host, rc.RunID, rc.Step)
	// sdr's work directory is created (mode 0700) where it is missing.
	l, err := cluster.LockNodeMakingDir(cctx, a, lay.Lock(), holder, e.Config.Timeouts.Connect.Duration)
	if err != nil {
		return nil, fmt.Errorf("while locking the directories of %s (in sdr's work directory %s): %w", a.Node().Name, lay.Work, err)
	}
	return l, nil
}

// endLeftovers ends whatever a killed run left running on n's directories
// (a pg_basebackup and its WAL streaming child, a delete), then finishes
// any delete that was cut short, in one remote action. This comes before
// anything touches them.
func (e *Env) endLeftovers(ctx context.Context, log *zap.Logger, a cluster.Access, lay nodeLayout, tss []tsMap) error {
	trashes := []string{lay.Trash()}
	for _, t := range tss {
		trashes = append(trashes, t.Live+".sdr/trash")
	}
	lctx, cancel := e.longCtx(ctx)
	defer cancel()
	return e.killLeftoversThen(lctx, log, a, lay, cluster.Then{Empty: trashes})
}

// killLeftoversThen ends whatever a killed run left running on n's
// directories (sdr's tagged processes; not a background delete of a
// trash), then does then's deletes in the same remote action
// (cluster.KillTaggedThen); ctx bounds both.
func (e *Env) killLeftoversThen(ctx context.Context, log *zap.Logger, a cluster.Access, lay nodeLayout, then cluster.Then) error {
	killed, err := cluster.KillTaggedThen(ctx, a, lay.Tag(), leftoverGrace, then)
	for _, k := range killed {
		log.Warn("ended a process left by an earlier run", zap.Int("pid", k.PID), zap.String("command", k.Args))
	}
	// The errors name the node, and the processes, the trash or the tree.
	return err
}

// nodeBuild is one node's rebuild in progress.
type nodeBuild struct {
	e        *Env
	rc       *workflow.RunContext
	log      *zap.Logger
	a        cluster.Access
	n        *cluster.Node
	lay      nodeLayout
	up       upstream
	p        remoteFacts
	view     PrimaryView
	wantFrom string
	tss      []tsMap

	obs     buildObs
	verdict Verdict
	probe   cluster.DataDirProbe
	method  rejoinMethod // how the node rejoins (chooseMethod); "" until chosen
	// pre: settings of the copy read while configure ran (nil: none).
	pre *copyPre
	// What configureIn last saw in dir's postgresql.auto.conf: the
	// settings it named before and after the edit; autoAll: it holds an
	// include, so it may set any setting.
	autoDir     string
	autoTouched map[string]bool
	autoAll     bool
	autoContent string // the content it wrote
	// swappedNow: this run's swap has just found no PostgreSQL running in
	// the data directory and put the copy in place (start does not ask again).
	swappedNow bool
}

// observe probes the node and reads the recorded phase and copy id.
func (b *nodeBuild) observe(ctx context.Context) error {
	phase, err := b.rc.Phase(ctx, b.n.Name)
	if err != nil {
		return err
	}
	copyID, err := b.rc.Phase(ctx, copyPart(b.n.Name))
	if err != nil {
		return err
	}
	files := []string{b.lay.NewComplete(), path.Join(b.lay.New(), markerName), path.Join(b.lay.New(), "standby.signal")}
	extra := []string{b.lay.Old(), b.lay.New()}
	if copyID != "" {
		extra = append(extra, b.lay.Kept(copyID))
	}
	for _, t := range b.tss {
		extra = append(extra, t.Live, t.Live+".sdr/new", t.Live+".sdr/old")
	}
	o, pr, err := b.e.observeDir(ctx, b.n, b.lay, files, extra)
	if err != nil {
		return err
	}
	b.probe = pr
	b.verdict = ClassifyDataDir(o, b.view, b.e.named(b.n.Name))
	if b.method == rejoinCopyKeep {
		b.keepWhatever()
	}
	b.obs = buildObs{Node: b.n.Name, Phase: phase, CopyID: copyID, Verdict: b.verdict,
		Running: o.Running, InRecovery: o.InRecovery, WantFrom: b.wantFrom}
	if o.Marker != nil {
		b.obs.DataCopy, b.obs.DataFrom = o.Marker.CopyID, o.Marker.From
	}
	b.obs.NewComplete = strings.TrimSpace(string(pr.Files[b.lay.NewComplete()]))
	if m, ok := ParseCopyMarker(string(pr.Files[path.Join(b.lay.New(), markerName)])); ok && m.CopyID == b.obs.NewComplete {
		_, signal := pr.Files[path.Join(b.lay.New(), "standby.signal")]
		b.obs.NewReady = signal && m.Node == b.n.Name
	}
	return nil
}

// keepWhatever makes the copy path move the data directory aside and keep
// it, whatever the classifier makes of what a cut-short pg_rewind left
// there, as long as it is a directory of this system that no server runs in.
func (b *nodeBuild) keepWhatever() {
	switch b.verdict.Kind {
	case DirMissing, DirOtherCluster, DirPrimaryNode:
		return
	}
	if b.probe.PostmasterAlive {
		return
	}
	b.verdict.Replace, b.verdict.KeepAside = true, true
	b.verdict.Reason += "; an earlier pg_rewind of it did not finish: it is moved aside and kept, never deleted"
	b.obs.Verdict = b.verdict
}

func (b *nodeBuild) setPhase(ctx context.Context, phase string) error {
	if err := b.rc.SetPhase(context.WithoutCancel(ctx), b.n.Name, phase); err != nil {
		return err
	}
	b.log.Info("phase reached", zap.String("phase", phase))
	return b.rc.Failpoint(phase + "@" + b.n.Name)
}

// copy saves the node's own files, then copies the upstream into <work>/new
// with pg_basebackup (tablespaces into <location>.sdr/new beside each).
func (b *nodeBuild) copy(ctx context.Context) error {
	if err := b.beginCopy(ctx); err != nil {
		return err
	}
	copyID := b.obs.CopyID
	lctx, cancel := b.e.longCtx(ctx)
	defer cancel()
	conninfo := fmt.Sprintf("host=%s port=%d user=%s passfile=%s application_name=%s",
		conninfoQuote(cluster.ConninfoHost(b.up.Host)), b.up.Port, conninfoQuote(b.e.Config.Replication.User), conninfoQuote(b.lay.Pgpass()),
		conninfoQuote(cluster.AppName(b.e.Config.Name, b.n.Name)+"_basebackup"))
	var mapping [][2]string
	for _, t := range b.tss {
		mapping = append(mapping, [2]string{t.Upstream, t.Live + ".sdr/new"})
	}
	var wan cluster.CopyOptions
	if b.up.Node == b.p.Node.Name {
		// Only the copy from the primary crosses between the data centres.
		wan = b.e.Config.Copy
	}
	args := append([]string{bin(b.n, "pg_basebackup")},
		features(pgVersion(b.p.VersionNum)).basebackupArgs(b.lay.New(), conninfo, b.up.Slot, mapping, wan)...)
	// The copy is recorded complete by the same command, once pg_basebackup
	// has succeeded (it syncs the copy before it exits).
	cmd := strings.Join(args, " ") + " && " + recordLineCmd(b.lay.NewComplete(), copyID, "the complete copy")
	b.log.Info("pg_basebackup started", zap.String("from", b.up.Node), zap.String("slot", b.up.Slot), zap.Int("tablespaces", len(b.tss)),
		zap.String("compress", orNone(wan.Compress)), zap.String("max_rate", orNone(wan.MaxRate)))
	pw := newProgressWriter(b.log).reportTo(b.rc, b.n.Name)
	defer pw.end()
	start := time.Now()
	if _, err := cluster.RunLong(lctx, b.a, b.lay.Tag(), cmd, cluster.RunOpts{Stderr: pw}); err != nil {
		return fmt.Errorf("while copying %s from %s with pg_basebackup: %w", b.n.Name, b.up.Node, err)
	}
	pw.flush()
	b.obs.NewComplete = copyID
	b.log.Info("pg_basebackup finished", zap.String("dir", b.lay.New()), zap.Duration("took", time.Since(start)))
	return nil
}

// recordLineCmd is a shell command that writes line to p (mode 0600,
// synced, put in place by a rename), to follow another command with &&.
// A failure says what could not be recorded, naming p.
func recordLineCmd(p, line, what string) string {
	tmp := p + ".tmp"
	return fmt.Sprintf("{ (umask 077 && printf '%%s\\n' %s >%s && sync -- %s && mv -f -T -- %s %s) || { echo %s >&2; exit 1; }; }",
		q(line), q(tmp), q(tmp), q(tmp), q(p), q("sdr: could not record "+what+" in "+p))
}

// beginCopy starts a new copy of the node: it saves the node's own files,
// records the copy id (this run's id and the node's name), and removes
// what an earlier attempt left half built in <work>/new (and beside each
// tablespace), so that <work>/new is free for the copy.
func (b *nodeBuild) beginCopy(ctx context.Context) error {
	if err := b.saveOwnFiles(ctx); err != nil {
		return err
	}
	if err := b.setPhase(ctx, phaseSaved); err != nil {
		return err
	}
	copyID := newCopyID(b.rc, b.n.Name)
	if err := b.rc.SetPhase(context.WithoutCancel(ctx), copyPart(b.n.Name), copyID); err != nil {
		return err
	}
	b.obs.CopyID = copyID
	// A half-built copy of an earlier attempt goes to the trash first.
	lctx, cancel := b.e.longCtx(ctx)
	defer cancel()
	stale := []struct{ dir, trash string }{{b.lay.New(), b.lay.Trash()}}
	mk := []string{}
	for _, t := range b.tss {
		stale = append(stale, struct{ dir, trash string }{t.Live + ".sdr/new", t.Live + ".sdr/trash"})
		mk = append(mk, q(t.Live+".sdr"))
	}
	// The probe under this run's node lock says what is there.
	probed := b.probe.Extra != nil
	for _, s := range stale {
		if pi, ok := b.probe.Extra[s.dir]; probed && ok && !pi.Exists {
			continue
		}
		if err := cluster.RemoveTree(lctx, b.a, s.dir, s.trash); err != nil {
			return fmt.Errorf("while removing the half-built copy %s on %s: %w", s.dir, b.n.Name, err)
		}
	}
	var cmds []string
	if _, ok := b.probe.Files[b.lay.NewComplete()]; ok || !probed {
		cmds = append(cmds, "rm -f "+q(b.lay.NewComplete()))
	}
	if len(mk) > 0 {
		cmds = append(cmds, "mkdir -p "+strings.Join(mk, " ")+" && chmod 700 "+strings.Join(mk, " "))
	}
	if len(cmds) == 0 {
		return nil
	}
	_, err := b.e.run(ctx, b.n, strings.Join(cmds, " && "), cluster.RunOpts{})
	return err
}

// saveOwnFiles copies aside, once, the node's pg_hba.conf and
// pg_ident.conf that live in its data directory (nodeconf.go): a rerun
// after the swap must not save the copy's files instead. Files outside the
// data directory are not touched by the rebuild and are not saved.
func (b *nodeBuild) saveOwnFiles(ctx context.Context) error {
	conf, err := b.e.confOf(ctx, b.n)
	if err != nil {
		return err
	}
	saved, tmp := b.lay.Saved(), b.lay.Saved()+".tmp"
	cp := []string{"mkdir -p " + q(tmp)}
	for _, f := range ownFiles(conf, b.n, b.lay) {
		cp = append(cp, fmt.Sprintf("if [ -f %[1]s ]; then cp -p %[1]s %[2]s; fi", q(path.Join(b.lay.DataDir, f.Rel)), q(path.Join(tmp, f.Saved))))
	}
	cmd := fmt.Sprintf("if [ -d %[1]s ]; then echo kept; exit 0; fi; rm -rf %[2]s && %[3]s && mv %[2]s %[1]s && ls %[1]s",
		q(saved), q(tmp), strings.Join(cp, " && "))
	out, err := b.e.run(ctx, b.n, cmd, cluster.RunOpts{})
	if err != nil {
		return fmt.Errorf("while saving pg_hba.conf and pg_ident.conf of %s: %w", b.n.Name, err)
	}
	if strings.TrimSpace(out) == "kept" {
		b.log.Info("own configuration files already saved", zap.String("dir", saved))
	} else {
		b.log.Info("own configuration files saved", zap.String("dir", saved), zap.String("files", strings.Join(strings.Fields(out), ",")))
	}
	return nil
}

// configure makes the copy in <work>/new a fully configured standby before
// it is swapped in: the node's own pg_hba.conf and pg_ident.conf, sdr's
// replication block in the pg_hba.conf the node's server reads, the
// standby settings, standby.signal, sdr's marker, and tablespace links
// that point at the node's own locations. Whatever starts PostgreSQL in it
// from then on starts a standby.
//
// The settings of the copy that configuring it does not set (copySettings
// less those of standbySettings) are read with postgres -C meanwhile, for
// the check before the swap (checkCopy), which then asks only for the
// rest and for any setting the copy's postgresql.auto.conf named, less
// those whose last line there is sdr's own (blockValues).
func (b *nodeBuild) configure(ctx context.Context) error {
	dir := b.lay.New()
	b.pre = nil
	names := b.preCheckNames()
	var pre cluster.Settings
	var preErr error
	if err := together(
		func() error { return b.configureIn(ctx, dir) },
		func() error {
			cctx, cancel := b.e.cmdCtx(ctx)
			defer cancel()
			confDir, override := b.copyConfDir(dir)
			pre, preErr = cluster.ShowSettings(cctx, b.a, b.n.BinDir, confDir, override, names)
			return nil // the check reads them again
		},
	); err != nil {
		return err
	}
	if preErr == nil && b.autoDir == dir {
		b.pre = &copyPre{dir: dir, names: names, s: pre, touched: b.autoTouched, all: b.autoAll,
			auto: b.autoContent, own: standbySettings(b.e.Config, b.n, b.up, b.lay.Pgpass())}
	}
	return nil
}

// preCheckNames are the settings the copy check reads that sdr's block
// in postgresql.auto.conf does not set.
func (b *nodeBuild) preCheckNames() []string {
	set := map[string]bool{}
	for _, l := range standbySettings(b.e.Config, b.n, b.up, b.lay.Pgpass()) {
		set[settingName(l)] = true
	}
	var out []string
	for _, n := range features(pgVersion(b.p.VersionNum)).copySettings() {
		if !set[n] {
			out = append(out, n)
		}
	}
	return out
}

// configureIn makes dir (the new copy, or the data directory itself after
// a rewind) a fully configured standby of this node.
func (b *nodeBuild) configureIn(ctx context.Context, dir string) error {
	conf, err := b.e.confOf(ctx, b.n)
	if err != nil {
		return err
	}
	var cmds []string
	for _, f := range ownFiles(conf, b.n, b.lay) {
		cmds = append(cmds, fmt.Sprintf("if [ -f %[1]s ]; then cp -p %[1]s %[2]s; fi", q(path.Join(b.lay.Saved(), f.Saved)), q(path.Join(dir, f.Rel))))
	}
	for _, t := range b.tss {
		cmds = append(cmds, fmt.Sprintf("ln -sfn %s %s", q(t.Live), q(path.Join(dir, "pg_tblspc", t.OID))))
	}
	cmds = append(cmds, "touch "+q(path.Join(dir, "standby.signal")))
	// One action puts the node's own files and links in place and reads
	// the files sdr edits; one more writes those that change.
	cctx, cancel := b.e.cmdCtx(ctx)
	defer cancel()
	hba, auto := inCopy(conf.HbaFile, b.n, b.lay, dir), path.Join(dir, "postgresql.auto.conf")
	files, err := cluster.ReadFilesAfter(cctx, b.a, strings.Join(cmds, " && "), hba, b.lay.StandbyConf(), auto)
	if err != nil {
		return fmt.Errorf("while configuring %s as a standby of %s (its own files, standby.signal, then reading the files sdr edits): %w",
			dir, b.n.Name, err)
	}
	settings, ok := files[b.lay.StandbyConf()]
	if !ok {
		return fmt.Errorf("while reading the settings prepared by 6_set_guc on %s: %s does not exist (rerun; 6_set_guc writes it again)",
			b.n.Name, b.lay.StandbyConf())
	}
	from := append(append([]cluster.Node{}, b.e.Config.Standby.Nodes...), b.e.Config.Primary.Nodes...)
	var writes []cluster.FileWrite
	writes = blockEdit(writes, files, hba, b.e.Config.Name, hbaLines(b.e.Config, from))
	writes = blockEdit(writes, files, auto, b.e.Config.Name, strings.Split(strings.TrimSpace(string(settings)), "\n"))
	newAuto := string(files[auto])
	for _, w := range writes {
		if w.Path == auto {
			newAuto = string(w.Data)
		}
	}
	m := CopyMarker{Pair: b.e.Config.Name, Node: b.n.Name, SystemID: b.p.SystemID, CopyID: b.obs.CopyID, From: b.wantFrom}
	writes = append(writes, cluster.FileWrite{Path: path.Join(dir, markerName), Data: []byte(m.String()), Mode: 0o600})
	if err := cluster.WriteFiles(cctx, b.a, writes); err != nil {
		return fmt.Errorf("while configuring %s as a standby of %s: %w", dir, b.n.Name, err)
	}
	b.autoDir = dir
	b.autoTouched, b.autoAll = autoConfNames(string(files[auto]), newAuto)
	b.autoContent = newAuto
	b.log.Info("configured as a standby", zap.String("dir", dir), zap.String("upstream", b.up.Node))
	return nil
}

// swap moves the configured copy into place in one remote action, which
// checks right before the renames that no PostgreSQL runs in the data
// directory. Tablespaces are swapped first, the data directory last, so
// that a data directory holding this copy means the whole copy is in place.
func (b *nodeBuild) swap(ctx context.Context) error {
	// The node is probed again (the swap may have been cut short) while
	// the copy is checked: both only look, and the check's verdict counts
	// only if the probe says the copy is not in place yet.
	check := b.obs.DataCopy != b.obs.CopyID || b.obs.CopyID == ""
	var checkErr error
	if err := together(
		func() error { return b.observe(ctx) },
		func() error {
			if check {
				checkErr = b.checkCopy(ctx, b.lay.New())
			}
			return nil
		},
	); err != nil {
		return err
	}
	if b.obs.DataCopy != b.obs.CopyID || b.obs.CopyID == "" {
		if !check {
			checkErr = b.checkCopy(ctx, b.lay.New())
		}
		if checkErr != nil {
			return checkErr
		}
	}
	// A data directory kept aside keeps its tablespaces: each goes beside
	// its location, and the kept directory's links point there, so that
	// starting the kept directory never opens the new copy's files.
	keepData := b.verdict.KeepAside && b.probe.Dir.Exists && (b.obs.DataCopy != b.obs.CopyID || b.obs.CopyID == "")
	var ops []renameOp
	var links []cluster.Link
	for _, t := range b.tss {
		keep := ""
		if keepData {
			keep = keptTablespace(t.Live, b.obs.CopyID)
		}
		tsOps := tablespaceSwap(t.Live, b.lay.TrashName("tablespace-"+t.OID, b.obs.CopyID), keep,
			b.probe.Extra[t.Live].Exists, b.probe.Extra[t.Live+".sdr/new"].Exists, b.probe.Extra[t.Live+".sdr/old"].Exists)
		for _, op := range tsOps {
			if keep != "" && op.From == t.Live {
				links = append(links, cluster.Link{Path: path.Join(b.lay.DataDir, "pg_tblspc", t.OID), Target: keep, Was: t.Live})
			}
		}
		ops = append(ops, tsOps...)
	}
	// A tablespace's trash must be on its own filesystem.
	for i := range ops {
		for _, t := range b.tss {
			if ops[i].From == t.Live && strings.HasPrefix(ops[i].To, b.lay.Trash()) {
				ops[i].To = path.Join(t.Live+".sdr/trash", path.Base(ops[i].To))
			}
		}
	}
	if b.obs.DataCopy != b.obs.CopyID || b.obs.CopyID == "" {
		dataOps, err := planSwap(b.n.Name, swapObs{Verdict: b.verdict, DataDir: b.lay.DataDir, DataExist: b.probe.Dir.Exists,
			OldExists: b.probe.Extra[b.lay.Old()].Exists, Keep: b.lay.Kept(b.obs.CopyID), Old: b.lay.Old(), New: b.lay.New(),
			Trash: b.lay.TrashName("data", b.obs.CopyID)})
		if err != nil {
			return err
		}
		ops = append(ops, dataOps...)
	}
	renames := make([]cluster.Rename, len(ops))
	mk := []string{b.lay.Trash()}
	for i, op := range ops {
		renames[i] = cluster.Rename{From: op.From, To: op.To}
		mk = append(mk, path.Dir(op.To))
	}
	// One remote action makes the directories the renames move into,
	// checks that no PostgreSQL runs in the data directory, renames, and
	// then removes new.complete (the copy it marked is in place).
	cctx, cancel := b.e.cmdCtx(ctx)
	done, err := cluster.Renames(cctx, b.a, cluster.RenamePlan{Idle: []string{b.lay.DataDir}, MakeDirs: mk, Links: links, Renames: renames,
		RemoveAfter: []string{b.lay.NewComplete()}})
	cancel()
	for _, r := range renames[:done] {
		b.log.Info("renamed", zap.String("from", r.From), zap.String("to", r.To))
		if b.verdict.KeepAside && r.From == b.lay.DataDir {
			b.log.Warn("the diverged data directory is kept; sdr never deletes it", zap.String("kept_in", r.To))
		}
		for _, l := range links {
			if l.Target == r.To {
				b.log.Warn("the kept data directory's tablespace is kept beside its location, and the kept directory's link points there; "+
					"sdr never deletes it", zap.String("kept_in", r.To), zap.String("link", path.Join(b.lay.Kept(b.obs.CopyID), "pg_tblspc", path.Base(l.Path))))
			}
		}
	}
	if err != nil {
		if errors.Is(err, cluster.ErrInUse) {
			return permanent(fmt.Errorf("PostgreSQL runs in %s on %s: sdr never replaces a data directory in use; stop it and keep it stopped, then rerun: %w",
				b.lay.DataDir, b.n.Name, err))
		}
		return fmt.Errorf("while swapping the new copy into %s on %s: %w", b.lay.DataDir, b.n.Name, err)
	}
	// The rename script has just checked that no PostgreSQL runs there.
	b.swappedNow = true
	if b.movedToTrash(renames) {
		lctx, lcancel := b.e.longCtx(ctx)
		defer lcancel()
		if err := b.emptyTrashes(lctx); err != nil {
			return err
		}
	}
	return nil
}

// movedToTrash tells whether one of renames put something into one of the
// node's trashes (which the swap then empties; prepareNode empties them of
// anything an earlier run left).
func (b *nodeBuild) movedToTrash(renames []cluster.Rename) bool {
	trashes := []string{b.lay.Trash()}
	for _, t := range b.tss {
		trashes = append(trashes, t.Live+".sdr/trash")
	}
	for _, r := range renames {
		for _, tr := range trashes {
			if strings.HasPrefix(r.To, tr+"/") {
				return true
			}
		}
	}
	return false
}

func (b *nodeBuild) emptyTrashes(ctx context.Context) error {
	trashes := []string{b.lay.Trash()}
	for _, t := range b.tss {
		trashes = append(trashes, t.Live+".sdr/trash")
	}
	for _, tr := range trashes {
		if err := cluster.EmptyTrash(ctx, b.a, tr); err != nil {
			return fmt.Errorf("while deleting %s on %s: %w", tr, b.n.Name, err)
		}
	}
	return nil
}

// start starts PostgreSQL on the node.
func (b *nodeBuild) start(ctx context.Context) error {
	return b.e.startNodeFrom(ctx, b.rc, b.n, b.swappedNow)
}

// blockEdit adds to writes the file p (read into files; missing when it
// does not exist) with sdr's marked block replaced, when that changes it.
func blockEdit(writes []cluster.FileWrite, files map[string][]byte, p, marker string, lines []string) []cluster.FileWrite {
	old := string(files[p])
	if updated := cluster.ReplaceBlock(old, marker, lines); updated != old {
		writes = append(writes, cluster.FileWrite{Path: p, Data: []byte(updated), Mode: 0o600})
	}
	return writes
}

// editFile replaces sdr's marked block in a file, keeping every other line.
func editFile(ctx context.Context, a cluster.Access, p, marker string, lines []string) error {
	old, err := a.ReadFile(ctx, p)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("while reading %s on %s: %w", p, a.Node().Name, err)
	}
	updated := cluster.ReplaceBlock(string(old), marker, lines)
	if updated == string(old) {
		return nil
	}
	if err := a.WriteFile(ctx, p, []byte(updated), 0o600); err != nil {
		return fmt.Errorf("while writing %s on %s: %w", p, a.Node().Name, err)
	}
	return nil
}
