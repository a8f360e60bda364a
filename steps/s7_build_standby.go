package steps

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"go.uber.org/zap"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

// Paths in a standby node's work directory.
func newDir(n *cluster.Node) string        { return path.Join(workDir(n), "new") }
func newComplete(n *cluster.Node) string   { return path.Join(workDir(n), "new.complete") }
func oldDir(n *cluster.Node) string        { return path.Join(workDir(n), "old") }
func savedDir(n *cluster.Node) string      { return path.Join(workDir(n), "saved") }
func builtMarker(n *cluster.Node) string   { return path.Join(workDir(n), "built") }
func basebackupPID(n *cluster.Node) string { return path.Join(workDir(n), "basebackup.pid") }

// savedFiles are the standby node's own files kept across the rebuild.
var savedFiles = []string{"pg_hba.conf", "pg_ident.conf"}

// buildStandby rebuilds the main standby from the primary, then every
// cascade standby from the main standby, in parallel.
func (e *Env) buildStandby(ctx context.Context, rc *workflow.RunContext) error {
	p, err := e.remotePrimary(ctx)
	if err != nil {
		return err
	}
	ups := e.upstreams(p.Node)
	main, cascades := e.mainStandby()
	if err := e.buildNode(ctx, rc, main, ups[main.Name], p.SystemID, ""); err != nil {
		return err
	}
	mainCopy, err := e.readMarker(ctx, main)
	if err != nil {
		return err
	}
	return forEach(ctx, cascades, func(ctx context.Context, n *cluster.Node) error {
		return e.buildNode(ctx, rc, n, ups[n.Name], p.SystemID, mainCopy.copyID)
	})
}

// marker is the content of the built marker: the primary's system
// identifier, an id of this copy, and for a cascade the id of the main
// standby's copy it was made from.
type marker struct{ sysID, copyID, from string }

func (m marker) String() string {
	return strings.TrimSpace(strings.Join([]string{m.sysID, m.copyID, m.from}, " ")) + "\n"
}

func (e *Env) readMarker(ctx context.Context, n *cluster.Node) (marker, error) {
	a, err := e.access(ctx, n)
	if err != nil {
		return marker{}, err
	}
	cctx, cancel := e.cmdCtx(ctx)
	defer cancel()
	raw, err := a.ReadFile(cctx, builtMarker(n))
	if errors.Is(err, fs.ErrNotExist) {
		return marker{}, nil
	}
	if err != nil {
		return marker{}, err
	}
	f := append(strings.Fields(string(raw)), "", "", "")
	return marker{sysID: f[0], copyID: f[1], from: f[2]}, nil
}

func (e *Env) fileExists(ctx context.Context, n *cluster.Node, p string) (bool, error) {
	_, err := e.run(ctx, n, "test -e "+q(p), cluster.RunOpts{})
	var ce *cluster.CommandError
	if errors.As(err, &ce) && ce.ExitCode == 1 {
		return false, nil
	}
	return err == nil, err
}

func (e *Env) observeBuild(ctx context.Context, n *cluster.Node) (buildObs, error) {
	var o buildObs
	var err error
	if o.Running, err = e.pgRunning(ctx, n, n.DataDir); err != nil {
		return o, err
	}
	if o.Running {
		f, err := e.nodeFacts(ctx, n)
		if err != nil {
			return o, err
		}
		o.InRecovery, o.SystemID = f.InRecovery, f.SystemID
		return o, nil
	}
	if o.SystemID, err = e.dirSystemID(ctx, n, n.DataDir); err != nil {
		return o, err
	}
	if o.StandbySignal, err = e.fileExists(ctx, n, path.Join(n.DataDir, "standby.signal")); err != nil {
		return o, err
	}
	m, err := e.readMarker(ctx, n)
	if err != nil {
		return o, err
	}
	o.BuiltMarker, o.CopyFrom = m.sysID, m.from
	return o, nil
}

// buildNode makes n a standby of up. wantFrom is, for a cascade, the id of
// the main standby's current copy.
func (e *Env) buildNode(ctx context.Context, rc *workflow.RunContext, n *cluster.Node, up upstream, sysID, wantFrom string) error {
	log := rc.Log.With(zap.String("node", n.Name))
	if err := checkNotPrimaryDir(e.Config, n); err != nil {
		return err
	}
	o, err := e.observeBuild(ctx, n)
	if err != nil {
		return err
	}
	o.WantFrom = wantFrom
	action, err := decideBuild(n.Name, o, sysID)
	if err != nil {
		return err
	}
	switch action {
	case buildDone:
		log.Info("already a running standby of the primary; not rebuilt")
		return nil
	case buildStart:
		log.Info("already rebuilt; starting it")
		return e.startNode(ctx, rc, n)
	}
	log.Info("rebuilding", zap.String("from", up.Node), zap.String("data_dir", n.DataDir))
	if err := e.saveOwnFiles(ctx, log, n); err != nil {
		return err
	}
	if err := e.basebackup(ctx, log, n, up); err != nil {
		return err
	}
	if err := e.swapIn(ctx, log, n, sysID); err != nil {
		return err
	}
	if err := e.configureCopy(ctx, n); err != nil {
		return err
	}
	if _, err := e.ensureFile(ctx, n, builtMarker(n), marker{sysID: sysID, copyID: rc.RunID + "/" + n.Name, from: wantFrom}.String()); err != nil {
		return err
	}
	return e.startNode(ctx, rc, n)
}

// checkNotPrimaryDir refuses a standby node whose data directory is a
// primary-cluster node's on the same host.
func checkNotPrimaryDir(cfg *cluster.Config, n *cluster.Node) error {
	for _, p := range cfg.Primary.Nodes {
		if p.Host == n.Host && path.Clean(p.DataDir) == path.Clean(n.DataDir) {
			return permanent(fmt.Errorf("standby node %s has the data directory of primary-cluster node %s (%s on %s); sdr never replaces it",
				n.Name, p.Name, n.DataDir, n.Host))
		}
	}
	return nil
}

// saveOwnFiles copies the node's pg_hba.conf and pg_ident.conf aside,
// once: a rerun after the swap must not save the copy's files instead.
func (e *Env) saveOwnFiles(ctx context.Context, log *zap.Logger, n *cluster.Node) error {
	saved, tmp := savedDir(n), savedDir(n)+".tmp"
	var cp []string
	for _, f := range savedFiles {
		cp = append(cp, fmt.Sprintf("if [ -f %[1]s ]; then cp -p %[1]s %[2]s/; fi", q(path.Join(n.DataDir, f)), q(tmp)))
	}
	cmd := fmt.Sprintf("if [ -d %[1]s ]; then echo kept; exit 0; fi; rm -rf %[2]s && mkdir -p %[2]s && %[3]s && mv %[2]s %[1]s && ls %[1]s",
		q(saved), q(tmp), strings.Join(cp, " && "))
	out, err := e.run(ctx, n, cmd, cluster.RunOpts{})
	if err != nil {
		return fmt.Errorf("while saving pg_hba.conf and pg_ident.conf of %s: %w", n.Name, err)
	}
	if strings.TrimSpace(out) == "kept" {
		log.Info("own configuration files already saved", zap.String("dir", saved))
	} else {
		log.Info("own configuration files saved", zap.String("dir", saved), zap.String("files", strings.Join(strings.Fields(out), ",")))
	}
	return nil
}

// basebackup copies the upstream into the node's work directory. A copy
// left half-built by an earlier attempt, and its pg_basebackup if it still
// runs, are removed first.
func (e *Env) basebackup(ctx context.Context, log *zap.Logger, n *cluster.Node, up upstream) error {
	pidf := basebackupPID(n)
	clean := fmt.Sprintf(`if [ -f %[1]s ]; then p=$(cat %[1]s); if [ -n "$p" ] && grep -q pg_basebackup /proc/$p/cmdline 2>/dev/null; then kill $p; for i in 1 2 3 4 5 6 7 8 9 10; do kill -0 $p 2>/dev/null || break; sleep 0.5; done; kill -9 $p 2>/dev/null; fi; rm -f %[1]s; fi; rm -rf %[2]s %[3]s`,
		q(pidf), q(newDir(n)), q(newComplete(n)))
	if _, err := e.run(ctx, n, clean, cluster.RunOpts{}); err != nil {
		return fmt.Errorf("while removing the half-built copy of %s: %w", n.Name, err)
	}
	conninfo := fmt.Sprintf("host=%s port=%d user=%s passfile=%s application_name=%s",
		conninfoQuote(up.Host), up.Port, conninfoQuote(e.Config.Replication.User), conninfoQuote(pgpassPath(n)),
		conninfoQuote(cluster.AppName(e.Config.Name, n.Name)+"_basebackup"))
	args := []string{bin(n, "pg_basebackup"), "-D", q(newDir(n)), "-X", "stream", "-c", "fast", "-P", "-d", q(conninfo)}
	if up.Slot != "" {
		args = append(args, "-S", q(up.Slot))
	}
	cmd := fmt.Sprintf("echo $$ > %s && exec %s", q(pidf), strings.Join(args, " "))
	a, err := e.access(ctx, n)
	if err != nil {
		return err
	}
	bctx, cancel := context.WithTimeout(ctx, e.Timeout)
	defer cancel()
	log.Info("pg_basebackup started", zap.String("from", up.Node), zap.String("slot", up.Slot))
	pw := newProgressWriter(log)
	if _, err := a.Run(bctx, cmd, cluster.RunOpts{Stderr: pw}); err != nil {
		return fmt.Errorf("while copying %s from %s with pg_basebackup: %w", n.Name, up.Node, err)
	}
	pw.flush()
	if _, err := e.run(ctx, n, fmt.Sprintf("rm -f %s && touch %s", q(pidf), q(newComplete(n))), cluster.RunOpts{}); err != nil {
		return err
	}
	log.Info("pg_basebackup finished", zap.String("dir", newDir(n)))
	return nil
}

// swapIn moves the finished copy into place, keeping the previous data
// directory as old until 9_finish.
func (e *Env) swapIn(ctx context.Context, log *zap.Logger, n *cluster.Node, sysID string) error {
	var o swapObs
	var err error
	if o.DataDirExists, err = e.fileExists(ctx, n, n.DataDir); err != nil {
		return err
	}
	if o.DataDirExists {
		if running, err := e.pgRunning(ctx, n, n.DataDir); err != nil {
			return err
		} else if running {
			return permanent(fmt.Errorf("PostgreSQL started in %s on %s during the rebuild; sdr never replaces a data directory in use", n.DataDir, n.Name))
		}
		if o.DataDirSysID, err = e.dirSystemID(ctx, n, n.DataDir); err != nil {
			return err
		}
	}
	if o.NewComplete, err = e.fileExists(ctx, n, newComplete(n)); err != nil {
		return err
	}
	if o.OldExists, err = e.fileExists(ctx, n, oldDir(n)); err != nil {
		return err
	}
	ops, err := planSwap(n.Name, o, sysID)
	if err != nil {
		return err
	}
	for _, op := range ops {
		var cmd string
		switch op {
		case opKeepOld:
			cmd = fmt.Sprintf("mv %s %s", q(n.DataDir), q(oldDir(n)))
		case opDropSdrCopy:
			cmd = fmt.Sprintf("rm -rf %s", q(n.DataDir))
		case opMoveNewIn:
			cmd = fmt.Sprintf("mv %s %s && rm -f %s", q(newDir(n)), q(n.DataDir), q(newComplete(n)))
		}
		if _, err := e.run(ctx, n, cmd, cluster.RunOpts{}); err != nil {
			return fmt.Errorf("while swapping the new copy into %s on %s (%s): %w", n.DataDir, n.Name, op, err)
		}
		log.Info(string(op), zap.String("data_dir", n.DataDir))
	}
	return nil
}

// configureCopy puts the node's own pg_hba.conf and pg_ident.conf back,
// adds sdr's replication block to pg_hba.conf, writes the standby settings
// into postgresql.auto.conf and creates standby.signal.
func (e *Env) configureCopy(ctx context.Context, n *cluster.Node) error {
	var cp []string
	for _, f := range savedFiles {
		cp = append(cp, fmt.Sprintf("if [ -f %[1]s ]; then cp -p %[1]s %[2]s; fi", q(path.Join(savedDir(n), f)), q(path.Join(n.DataDir, f))))
	}
	if _, err := e.run(ctx, n, strings.Join(cp, " && "), cluster.RunOpts{}); err != nil {
		return fmt.Errorf("while restoring pg_hba.conf and pg_ident.conf of %s: %w", n.Name, err)
	}
	a, err := e.access(ctx, n)
	if err != nil {
		return err
	}
	cctx, cancel := e.cmdCtx(ctx)
	defer cancel()
	from := append(append([]cluster.Node{}, e.Config.Standby.Nodes...), e.Config.Primary.Nodes...)
	if err := editFile(cctx, a, path.Join(n.DataDir, "pg_hba.conf"), e.Config.Name, hbaLines(e.Config, from)); err != nil {
		return err
	}
	settings, err := a.ReadFile(cctx, standbyConfPath(n))
	if err != nil {
		return fmt.Errorf("while reading the settings prepared by 6_set_guc on %s: %w", n.Name, err)
	}
	lines := strings.Split(strings.TrimSpace(string(settings)), "\n")
	if err := editFile(cctx, a, path.Join(n.DataDir, "postgresql.auto.conf"), e.Config.Name, lines); err != nil {
		return err
	}
	if _, err := a.Run(cctx, "touch "+q(path.Join(n.DataDir, "standby.signal")), cluster.RunOpts{}); err != nil {
		return err
	}
	return nil
}

// editFile replaces sdr's marked block in a file, keeping every other line.
func editFile(ctx context.Context, a cluster.Access, p, marker string, lines []string) error {
	old, err := a.ReadFile(ctx, p)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
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

// startNode starts PostgreSQL on n unless it runs.
func (e *Env) startNode(ctx context.Context, rc *workflow.RunContext, n *cluster.Node) error {
	running, err := e.pgRunning(ctx, n, n.DataDir)
	if err != nil {
		return err
	}
	if running {
		return nil
	}
	secs := int(e.Config.Timeouts.Command.Seconds())
	cmd := fmt.Sprintf("mkdir -p %s && %s start -D %s -l %s -w -t %d", q(path.Dir(n.LogFile)), bin(n, "pg_ctl"), q(n.DataDir), q(n.LogFile), secs)
	if _, err := e.run(ctx, n, cmd, cluster.RunOpts{}); err != nil {
		return fmt.Errorf("while starting %s (see %s on it): %w", n.Name, n.LogFile, err)
	}
	rc.Log.Info("started", zap.String("node", n.Name))
	return nil
}
