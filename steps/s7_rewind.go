package steps

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/pgsdr/sdr/cluster"
)

// The rewind path of 7_build_standby: a former primary (the old primary
// after a failover, DirFormerPrimary) whose pg_control allows it is made a
// standby of the primary by pg_rewind in place, instead of a new copy.
// Phases: saved (its own pg_hba.conf and pg_ident.conf) → kept (its WAL
// from the fork on and its pg_control, in <work>/diverged-<id>) →
// rewinding (pg_rewind started) → rewound → configured → started.

// RewindSockDir is the 0700 directory in the node's work directory where
// the primary's Unix socket is forwarded while pg_rewind runs.
func (l nodeLayout) RewindSockDir() string { return path.Join(l.Work, "rewind") }

// chooseMethod decides, for the node being built, between a rewind and a
// copy (decideRejoin), records the choice, and tells the operator why.
func (b *nodeBuild) chooseMethod(ctx context.Context) (rejoinMethod, error) {
	rec, err := b.rc.Phase(ctx, methodPart(b.n.Name))
	if err != nil {
		return "", err
	}
	o := rejoinObs{Node: b.n.Name, Kind: b.verdict.Kind, IsMain: b.wantFrom == "" && b.isMain(), NoRewind: b.e.NoRewind || b.verdict.CopyOnly,
		Recorded: rejoinMethod(rec), Phase: b.obs.Phase, VersionNum: b.p.VersionNum, SeparateConfig: b.n.SeparateConfig(),
		Tablespaces: len(b.tss), SocketPath: b.rewindSocket()}
	if o.Recorded == "" && o.Kind != DirFormerPrimary {
		return rejoinCopy, nil // the usual copy: nothing to record
	}
	if b.probe.Control != nil {
		o.Control = *b.probe.Control
	}
	// What only a rewind needs is looked at only while a rewind is still
	// a choice: not once pg_rewind has run (the record decides then).
	undecided := o.Recorded == "" || (o.Recorded == rejoinRewind && (o.Phase == "" || o.Phase == phaseSaved || o.Phase == phaseKept))
	if undecided && o.Kind == DirFormerPrimary && o.IsMain && !o.NoRewind && (o.Control.WalLogHints || o.Control.DataChecksums != 0) {
		if err := b.observeForRewind(ctx, &o); err != nil {
			return "", err
		}
	}
	m, reason := decideRejoin(o)
	switch {
	case reason == "":
	case m == rejoinRewind:
		b.log.Info(reason)
	default:
		b.log.Warn(reason)
	}
	if string(m) != rec {
		if err := b.rc.SetPhase(context.WithoutCancel(ctx), methodPart(b.n.Name), string(m)); err != nil {
			return "", err
		}
	}
	return m, nil
}

func (b *nodeBuild) isMain() bool {
	main, _ := b.e.mainStandby()
	return main == b.n
}

// rewindSocket is the path of the forwarded socket pg_rewind connects to.
func (b *nodeBuild) rewindSocket() string {
	return path.Join(b.lay.RewindSockDir(), ".s.PGSQL."+strconv.Itoa(b.p.Node.PGPort))
}

// observeForRewind fills in what only the rewind needs: where the
// primary's timeline left the node's, whether the node still has its WAL
// from there, and whether sdr can run pg_rewind against the primary.
func (b *nodeBuild) observeForRewind(ctx context.Context, o *rejoinObs) error {
	fork, ok := b.view.Forks[o.Control.TimeLineID]
	o.ForkKnown = ok
	if ok {
		names, err := b.walNames(ctx)
		if err != nil {
			return err
		}
		_, o.WALFromFork = walToKeep(names, o.Control.TimeLineID, fork, o.Control.WALSegSize)
	}
	o.SourceProblem = b.checkSource(ctx)
	return nil
}

// walNames lists the node's pg_wal.
func (b *nodeBuild) walNames(ctx context.Context) ([]string, error) {
	dir := path.Join(b.lay.DataDir, "pg_wal")
	out, err := b.e.run(ctx, b.n, "cd "+q(dir)+" && ls -1A", cluster.RunOpts{})
	if err != nil {
		return nil, fmt.Errorf("while listing %s on %s: %w", dir, b.n.Name, err)
	}
	return strings.Fields(out), nil
}

// sourceSQL tells whether pg_rewind may use the primary as its source:
// full_page_writes, a superuser, and the timeline of its last checkpoint.
const sourceSQL = `SELECT current_setting('full_page_writes') = 'on',
	(SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
	(SELECT timeline_id FROM pg_control_checkpoint())`

// checkSource checks that sdr can run pg_rewind against the primary: an
// admin connection through SSH to it, full_page_writes on, postgres.user a
// superuser. When the primary's last checkpoint is still on an older
// timeline (no checkpoint since the promotion), it runs one: pg_rewind
// reads the source's timeline from its pg_control. It returns the problem,
// "" when there is none.
func (b *nodeBuild) checkSource(ctx context.Context) string {
	src := b.p.Node
	var problem string
	err := b.e.withAdmin(ctx, src, func(ctx context.Context, c *pgx.Conn) error {
		var fpw, super bool
		var ckptTLI int
		if err := c.QueryRow(ctx, sourceSQL).Scan(&fpw, &super, &ckptTLI); err != nil {
			return fmt.Errorf("while checking %s as pg_rewind's source: %w", src.Name, err)
		}
		switch {
		case !fpw:
			problem = fmt.Sprintf("full_page_writes is off on %s", src.Name)
		case !super:
			problem = fmt.Sprintf("postgres.user %s is not a superuser on %s", b.e.Config.Postgres.User, src.Name)
		case ckptTLI < b.p.TimeLineID:
			if _, err := c.Exec(ctx, "CHECKPOINT"); err != nil {
				return fmt.Errorf("while checkpointing %s (its last checkpoint is on timeline %d, before its promotion to %d): %w",
					src.Name, ckptTLI, b.p.TimeLineID, err)
			}
			b.log.Info("checkpoint on the primary, so that pg_rewind sees its timeline", zap.String("primary", src.Name))
		}
		return nil
	})
	if err != nil {
		return fmt.Sprintf("sdr cannot reach PostgreSQL on %s as postgres.user over SSH (%v)", src.Name, err)
	}
	return problem
}

// buildByRewind runs the rewind path for the node, resuming at its
// recorded phase.
func (b *nodeBuild) buildByRewind(ctx context.Context) error {
	o := rewindObs{Node: b.n.Name, Phase: b.obs.Phase, CopyID: b.obs.CopyID, Kind: b.verdict.Kind,
		DataCopy: b.obs.DataCopy, Running: b.obs.Running, InRecov: b.obs.InRecovery,
		SameSys: b.probe.Control != nil && b.probe.Control.SystemID == b.p.SystemID}
	if o.CopyID != "" {
		o.KeptDone = b.probe.Extra[b.lay.Kept(o.CopyID)].Exists
	}
	action, err := planRewind(o)
	if err != nil {
		return err
	}
	b.log.Info("rewind of the former primary resumes", zap.String("action", string(action)), zap.String("phase", orNone(o.Phase)))
	if o.KeptDone && action != rwKeep {
		// Kept by an earlier run: say where again.
		b.log.Warn("the former primary's WAL after the fork and its pg_control are kept; sdr never deletes them",
			zap.String("kept_in", b.lay.Kept(o.CopyID)))
	}
	if action == rwDone {
		return b.setPhase(ctx, phaseStarted)
	}
	stages := []struct {
		from  rewindAction
		phase string
		run   func(context.Context) error
	}{
		{rwSave, phaseSaved, b.saveForRewind},
		{rwKeep, phaseKept, b.keepDiverged},
		{rwRewind, phaseRewound, b.pgRewind},
		{rwConfigure, phaseConfigured, b.configureRewound},
		{rwStart, phaseStarted, b.start},
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

// saveForRewind saves the node's own files (pg_rewind copies the
// primary's pg_hba.conf and pg_ident.conf over them) and records this
// rewind's id.
func (b *nodeBuild) saveForRewind(ctx context.Context) error {
	if err := b.saveOwnFiles(ctx); err != nil {
		return err
	}
	id := b.rc.RunID + "/" + b.n.Name
	if err := b.rc.SetPhase(context.WithoutCancel(ctx), copyPart(b.n.Name), id); err != nil {
		return err
	}
	b.obs.CopyID = id
	return nil
}

// keptFiles are the files of the data directory kept with the WAL (those
// present): the configuration pg_rewind replaces with the primary's, and
// what says how the directory was last run.
var keptFiles = []string{"PG_VERSION", "postgresql.conf", "postgresql.auto.conf", "pg_hba.conf", "pg_ident.conf",
	"backup_label", "tablespace_map", "postmaster.opts", "standby.signal", "recovery.signal", fenceMarkerName}

// keepDiverged keeps, before pg_rewind changes the data directory in
// place, what the former primary wrote after the fork: every WAL segment
// of its timeline from the one holding the fork point on, the timeline
// history files, global/pg_control and its configuration, with a note
// (KEPT.txt), in <work>/diverged-<id>. It is built under a temporary name
// and renamed when complete; sdr never deletes it.
func (b *nodeBuild) keepDiverged(ctx context.Context) error {
	kept := b.lay.Kept(b.obs.CopyID)
	if b.probe.Extra[kept].Exists {
		b.log.Warn("the former primary's WAL after the fork is kept; sdr never deletes it", zap.String("kept_in", kept))
		return nil
	}
	cd := b.probe.Control
	if cd == nil {
		return fmt.Errorf("%s: no pg_control in %s to keep", b.n.Name, b.lay.DataDir)
	}
	fork, ok := b.view.Forks[cd.TimeLineID]
	if !ok {
		return permanent(fmt.Errorf("%s: the primary's timeline history does not say where it left timeline %d", b.n.Name, cd.TimeLineID))
	}
	names, err := b.walNames(ctx)
	if err != nil {
		return err
	}
	wal, complete := walToKeep(names, cd.TimeLineID, fork, cd.WALSegSize)
	if !complete {
		return permanent(fmt.Errorf("%s: pg_wal no longer holds every segment of timeline %d from the fork at %s on; nothing was changed",
			b.n.Name, cd.TimeLineID, fork))
	}
	tmp := kept + ".tmp"
	lctx, cancel := b.e.longCtx(ctx)
	defer cancel()
	if err := cluster.RemoveTree(lctx, b.a, tmp, b.lay.Trash()); err != nil {
		return fmt.Errorf("while removing the half-kept %s on %s: %w", tmp, b.n.Name, err)
	}
	data := b.lay.DataDir
	var sb strings.Builder
	fmt.Fprintf(&sb, "set -e\nmkdir -p %s %s\n", q(path.Join(tmp, "pg_wal")), q(path.Join(tmp, "global")))
	fmt.Fprintf(&sb, "cp -p %s %s\n", q(path.Join(data, "global", "pg_control")), q(path.Join(tmp, "global")+"/"))
	for i := 0; i < len(wal); i += 200 {
		chunk := wal[i:min(i+200, len(wal))]
		quoted := make([]string, len(chunk))
		for j, n := range chunk {
			quoted[j] = q(n)
		}
		fmt.Fprintf(&sb, "(cd %s && cp -p -- %s %s)\n", q(path.Join(data, "pg_wal")), strings.Join(quoted, " "), q(path.Join(tmp, "pg_wal")+"/"))
	}
	for _, f := range keptFiles {
		fmt.Fprintf(&sb, "if [ -f %[1]s ]; then cp -p %[1]s %[2]s; fi\n", q(path.Join(data, f)), q(tmp+"/"))
	}
	fmt.Fprintf(&sb, "cat > %s\nsync -- %s %s %s\n", q(path.Join(tmp, "KEPT.txt")), q(path.Join(tmp, "pg_wal")), q(path.Join(tmp, "global", "pg_control")), q(tmp))
	note := keptNote(b.n.Name, data, *cd, fork, b.p, wal)
	if _, err := b.a.Run(lctx, sb.String(), cluster.RunOpts{Stdin: strings.NewReader(note)}); err != nil {
		return fmt.Errorf("while keeping the former primary's WAL after the fork in %s on %s: %w", tmp, b.n.Name, err)
	}
	cctx, ccancel := b.e.cmdCtx(ctx)
	defer ccancel()
	if err := cluster.RenameNoReplace(cctx, b.a, tmp, kept); err != nil {
		return fmt.Errorf("while renaming %s to %s on %s: %w", tmp, kept, b.n.Name, err)
	}
	b.log.Warn("the former primary's WAL after the fork and its pg_control are kept; sdr never deletes them", zap.String("kept_in", kept),
		zap.Int("wal_segments", countSegments(wal)), zap.String("fork", fork.String()), zap.Int("timeline", cd.TimeLineID))
	return nil
}

func countSegments(names []string) int {
	n := 0
	for _, s := range names {
		if walSegRE.MatchString(s) {
			n++
		}
	}
	return n
}

// keptNote is KEPT.txt: what the kept directory holds and how to read it.
func keptNote(node, data string, cd cluster.ControlData, fork cluster.LSN, p remoteFacts, wal []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Kept by sdr before pg_rewind made %s (data directory %s) a standby of %s.\n", node, data, p.Node.Name)
	fmt.Fprintf(&b, "sdr never deletes this directory. Delete it yourself once nothing in it is needed.\n\n")
	fmt.Fprintf(&b, "system identifier:        %s\n", cd.SystemID)
	fmt.Fprintf(&b, "former primary timeline:  %d (pg_control state %q, latest checkpoint %s, redo %s)\n", cd.TimeLineID, cd.State, cd.CheckpointLSN, cd.RedoLSN)
	fmt.Fprintf(&b, "fork:                     the primary's timeline %d left timeline %d at %s\n", p.TimeLineID, cd.TimeLineID, fork)
	fmt.Fprintf(&b, "\nWhat the former primary wrote after %s on timeline %d is in the WAL kept here:\n", fork, cd.TimeLineID)
	fmt.Fprintf(&b, "  pg_wal/            %d segments of timeline %d from the one holding the fork on (some at the end may be\n", countSegments(wal), cd.TimeLineID)
	fmt.Fprintf(&b, "                     recycled segments with old contents), and the timeline history files\n")
	fmt.Fprintf(&b, "  global/pg_control  its control file before the rewind (pg_controldata -D <this directory> reads it)\n")
	fmt.Fprintf(&b, "  *.conf, ...        its configuration files and signal files as they were\n\n")
	fmt.Fprintf(&b, "Read the transactions it committed after the fork with, for example:\n")
	fmt.Fprintf(&b, "  pg_waldump --path <this directory>/pg_wal --timeline %d --start %s\n", cd.TimeLineID, fork)
	fmt.Fprintf(&b, "The data pages it changed after the fork were replaced by the rewind: this WAL (with its full-page images) is what is left of them.\n")
	return b.String()
}

// pgRewind runs pg_rewind on the node, with the primary's Unix socket
// forwarded into the node's work directory as its source. It records
// phaseRewinding first: a pg_rewind that does not finish is not run again
// (decideRejoin makes a copy instead).
func (b *nodeBuild) pgRewind(ctx context.Context) error {
	src := b.p.Node
	srcAccess, err := b.e.access(ctx, src)
	if err != nil {
		return fmt.Errorf("while reaching the primary %s for pg_rewind: %w", src.Name, err)
	}
	cd := b.probe.Control
	unclean := cd == nil || (cd.State != cluster.StateShutDown && cd.State != cluster.StateShutDownInRecovery)
	var cmds []string
	if unclean && (b.probe.StandbySignal || b.probe.RecoverySignal) {
		// pg_rewind brings an unclean target to a clean shutdown in
		// single-user mode, which refuses to run with a signal file.
		// The files are kept in diverged-<id>; the rewind's configure
		// writes standby.signal again.
		cmds = append(cmds, "rm -f "+q(path.Join(b.lay.DataDir, "standby.signal"))+" "+q(path.Join(b.lay.DataDir, "recovery.signal")))
	}
	args := []string{"exec", bin(b.n, "pg_rewind"), "--target-pgdata=" + q(b.lay.DataDir),
		"--source-server=" + q(rewindConninfo(b.lay.RewindSockDir(), src.PGPort, b.e.Config.Postgres.User, b.e.Config.Postgres.Database))}
	if b.n.SeparateConfig() && pgVersion(b.p.VersionNum).Major() >= configFileRewindVersion {
		conf, err := b.e.confOf(ctx, b.n)
		if err != nil {
			return err
		}
		args = append(args, "--config-file="+q(conf.ConfigFile))
	}
	if _, err := b.e.run(ctx, b.n, "mkdir -p "+q(b.lay.RewindSockDir())+" && chmod 700 "+q(b.lay.RewindSockDir()), cluster.RunOpts{}); err != nil {
		return fmt.Errorf("while preparing pg_rewind on %s: %w", b.n.Name, err)
	}
	lctx, cancel := b.e.longCtx(ctx)
	defer cancel()
	fwd, err := cluster.ForwardUnix(lctx, b.a, b.rewindSocket(), srcAccess, cluster.SocketPath(src))
	if err != nil {
		return fmt.Errorf("while giving pg_rewind on %s a way to the primary %s: %w", b.n.Name, src.Name, err)
	}
	defer func() {
		cctx, ccancel := b.e.cmdCtx(context.WithoutCancel(ctx))
		defer ccancel()
		if err := fwd.Close(cctx); err != nil {
			b.log.Warn("the socket forwarded for pg_rewind was not removed", zap.Error(err))
		}
		_, _ = b.a.Run(cctx, "rmdir "+q(b.lay.RewindSockDir())+" 2>/dev/null || true", cluster.RunOpts{})
	}()
	// From here on the data directory may change: a pg_rewind that does
	// not finish is not run again.
	if err := b.setPhase(ctx, phaseRewinding); err != nil {
		return err
	}
	if len(cmds) > 0 {
		if _, err := b.e.run(ctx, b.n, strings.Join(cmds, " && "), cluster.RunOpts{}); err != nil {
			return fmt.Errorf("while preparing pg_rewind on %s: %w", b.n.Name, err)
		}
		b.log.Warn("signal files removed for pg_rewind's crash recovery of the former primary (kept in the diverged directory)",
			zap.String("dir", b.lay.DataDir))
	}
	b.log.Info("pg_rewind started", zap.String("from", src.Name), zap.String("dir", b.lay.DataDir), zap.String("state", stateOf(cd)))
	lw := &lineLog{log: b.log, msg: "pg_rewind"}
	start := time.Now()
	_, err = cluster.RunLong(lctx, b.a, b.lay.Tag(), strings.Join(args, " "), cluster.RunOpts{Stderr: lw, Env: map[string]string{"LC_ALL": "C"}})
	lw.flush()
	if err != nil {
		if ferr := fwd.DialErr(); ferr != nil {
			err = errors.Join(err, fmt.Errorf("the forwarded socket could not reach %s: %w", src.Name, ferr))
		}
		return fmt.Errorf("while rewinding %s from %s with pg_rewind (its WAL from the fork on is kept in %s; "+
			"a rerun makes a new copy instead and keeps the whole directory aside): %w", b.n.Name, src.Name, b.lay.Kept(b.obs.CopyID), err)
	}
	b.log.Info("pg_rewind finished", zap.String("dir", b.lay.DataDir), zap.Duration("took", time.Since(start)), zap.Int("connections", fwd.Accepted()))
	return nil
}

func stateOf(cd *cluster.ControlData) string {
	if cd == nil {
		return "none"
	}
	return cd.State
}

// configureRewound configures the rewound data directory in place as the
// node's standby (the node's own files, sdr's settings, standby.signal,
// the marker), then proves it would start as such.
func (b *nodeBuild) configureRewound(ctx context.Context) error {
	if err := b.configureIn(ctx, b.lay.DataDir); err != nil {
		return err
	}
	b.obs.DataCopy = b.obs.CopyID
	return b.checkCopy(ctx, b.lay.DataDir)
}

// lineLog logs each line written to it.
type lineLog struct {
	log *zap.Logger
	msg string
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	for {
		line, err := l.buf.ReadString('\n')
		if err != nil {
			l.buf.WriteString(line) // not a whole line yet
			return len(p), nil
		}
		l.emit(line)
	}
}

func (l *lineLog) emit(line string) {
	// --progress rewrites one line with carriage returns; log its last state.
	if i := strings.LastIndexByte(strings.TrimRight(line, "\r\n"), '\r'); i >= 0 {
		line = line[i+1:]
	}
	if line = strings.TrimSpace(line); line != "" {
		l.log.Info(l.msg, zap.String("line", line))
	}
}

func (l *lineLog) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf.Len() > 0 {
		l.emit(l.buf.String())
		l.buf.Reset()
	}
}
