package steps

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

// detachWaitFor bounds the wait for a reloaded DR node to drop its
// upstream (the startup process ends the WAL receiver at once).
const detachWaitFor = 30 * time.Second

// detach takes each DR node off its upstream, all nodes in parallel: the
// replication lines of sdr's block in postgresql.auto.conf and sdr's
// block in pg_hba.conf go (every other line stays), then a running node
// reloads, and is restarted only if a setting it lost needs it. A node
// that is not running has its files edited and stays down. standby.signal
// stays: each node remains a read-only standby, with no upstream.
func (s *stopRun) detach(ctx context.Context, rc *workflow.RunContext) error {
	return forEach(ctx, s.e.standbyNodes(), func(ctx context.Context, n *cluster.Node) error {
		return s.detachNode(ctx, rc, n)
	})
}

func (s *stopRun) detachNode(ctx context.Context, rc *workflow.RunContext, n *cluster.Node) error {
	e := s.e
	log := rc.Log.With(zap.String("node", n.Name))
	a, err := e.access(ctx, n)
	if err != nil {
		return err
	}
	lay, err := e.layoutOf(ctx, n)
	if err != nil {
		return err
	}
	release, _, err := s.lockWork(ctx, rc, log, a, n, lay)
	if err != nil {
		return err
	}
	defer release()

	auto, autoChanged, err := editDRFile(ctx, e, a, path.Join(lay.DataDir, "postgresql.auto.conf"), func(old string) string {
		updated, gone, flattened := detachAutoConf(old, e.Config.Name, ownNames(e.Config))
		if len(gone) > 0 {
			log.Info("replication settings taken out of sdr's block in postgresql.auto.conf", zap.Strings("settings", gone))
		}
		if len(flattened) > 0 {
			log.Info("sdr's own replication settings taken out of postgresql.auto.conf outside sdr's block (ALTER SYSTEM rewrote the file "+
				"without the block's markers)", zap.Strings("settings", settingNames(flattened)))
		}
		return updated
	})
	if err != nil {
		return err
	}
	hbaPath, err := e.drHbaFile(ctx, n)
	if err != nil {
		return err
	}
	if _, hbaChanged, err := editDRFile(ctx, e, a, hbaPath, func(old string) string {
		return cluster.ReplaceBlock(old, e.Config.Name, nil)
	}); err != nil {
		return err
	} else if hbaChanged {
		log.Info("sdr's pg_hba.conf block removed", zap.String("file", hbaPath))
	}
	running, err := e.pgRunning(ctx, n, lay.DataDir)
	if err != nil {
		return err
	}
	if !running {
		log.Info("not running: left down; it starts as a read-only standby without upstream", zap.Bool("settings_changed", autoChanged))
		return nil
	}
	if err := e.withAdmin(ctx, n, func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, `SELECT pg_reload_conf()`)
		return err
	}); err != nil {
		return fmt.Errorf("while reloading %s: %w", n.Name, err)
	}
	st, err := s.waitDetached(ctx, n, auto)
	if err != nil {
		return err
	}
	if st == detachRestart {
		log.Info("a replication setting it lost needs a restart: restarting (fast shutdown)")
		if err := e.stopNode(ctx, rc, n); err != nil {
			return err
		}
		if err := e.startNode(ctx, rc, n); err != nil {
			return err
		}
		if st, err = s.waitDetached(ctx, n, auto); err != nil {
			return err
		}
		if st != detachDone {
			return fmt.Errorf("%s still waits for a restart to apply its replication settings after sdr restarted it", n.Name)
		}
	}
	log.Info("reloaded: no upstream, no WAL receiver")
	return nil
}

// drHbaFile is the pg_hba.conf n's server reads, where start wrote sdr's
// block: postgres -C's hba_file (confOf), outside the data directory where
// the node has config_dir (Debian: /etc/postgresql/15/main/pg_hba.conf).
func (e *Env) drHbaFile(ctx context.Context, n *cluster.Node) (string, error) {
	conf, err := e.confOf(ctx, n)
	if err != nil {
		return "", err
	}
	return conf.HbaFile, nil
}

// waitDetached polls a reloaded DR node until it has let go of its
// upstream, or needs a restart for it.
func (s *stopRun) waitDetached(ctx context.Context, n *cluster.Node, autoConf string) (detachState, error) {
	var st detachState
	err := poll(ctx, detachWaitFor, pollFast, n.Name+" to let go of its upstream", func(ctx context.Context) (bool, error) {
		o, err := s.e.observeDetach(ctx, n)
		if err != nil {
			return false, err
		}
		o.AutoConfSets = confSets(autoConf, "primary_conninfo")
		st, err = decideDetach(o)
		switch {
		case err != nil:
			return false, err
		case st == detachWait && o.Receiver:
			return false, fmt.Errorf("%s: a WAL receiver still runs", n.Name)
		case st == detachWait:
			return false, fmt.Errorf("%s: primary_conninfo still set (the reload has not taken effect)", n.Name)
		}
		return true, nil
	})
	return st, err
}

const detachSQL = `SELECT current_setting('primary_conninfo') <> '',
	coalesce((SELECT sourcefile FROM pg_settings WHERE name = 'primary_conninfo'), ''),
	coalesce((SELECT array_agg(name::text ORDER BY name) FROM pg_settings WHERE pending_restart AND name = ANY($1)), '{}'),
	EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE pid IS NOT NULL),
	coalesce((SELECT array_agg(line_number::text || ': ' || error) FROM pg_hba_file_rules WHERE error IS NOT NULL), '{}')`

// observeDetach reads what decideDetach needs from a running DR node.
func (e *Env) observeDetach(ctx context.Context, n *cluster.Node) (detachObs, error) {
	o := detachObs{Node: n.Name}
	err := e.withAdmin(ctx, n, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, detachSQL, detachSettings).Scan(&o.ConninfoSet, &o.ConninfoFile, &o.PendingRestart, &o.Receiver, &o.HBAErrors)
	})
	if err != nil {
		return o, fmt.Errorf("while asking %s whether it still has an upstream: %w", n.Name, err)
	}
	return o, nil
}

// editDRFile rewrites file p on a DR node through edit, writing only when
// the content changes. A missing file (a data directory a killed rebuild
// left half swapped) is left missing. It returns the content as it is
// afterwards and whether it wrote.
func editDRFile(ctx context.Context, e *Env, a cluster.Access, p string, edit func(old string) string) (string, bool, error) {
	old, exists, err := readOptional(ctx, e, a, p)
	if err != nil || !exists {
		return "", false, err
	}
	updated := edit(old)
	if updated == old {
		return updated, false, nil
	}
	cctx, cancel := e.cmdCtx(ctx)
	defer cancel()
	if err := a.WriteFile(cctx, p, []byte(updated), 0o600); err != nil {
		return "", false, fmt.Errorf("while writing %s on %s: %w", p, a.Node().Name, err)
	}
	return updated, true, nil
}

// readOptional reads file p on a node; a missing file is no error.
func readOptional(ctx context.Context, e *Env, a cluster.Access, p string) (string, bool, error) {
	cctx, cancel := e.cmdCtx(ctx)
	defer cancel()
	raw, err := a.ReadFile(cctx, p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("while reading %s on %s: %w", p, a.Node().Name, err)
	}
	return string(raw), true, nil
}

// lockWork takes the node-side lock on a DR node's directories and ends
// what an earlier run left running there (a pg_basebackup of a killed
// start, a delete), when sdr's work directory exists; stop creates none
// for it (the DR side's run lock makes the main standby's: HoldSide).
// The returned func releases the lock; the bool tells whether the work
// directory exists.
func (s *stopRun) lockWork(ctx context.Context, rc *workflow.RunContext, log *zap.Logger, a cluster.Access, n *cluster.Node, lay nodeLayout) (func(), bool, error) {
	e := s.e
	exists, err := e.fileExists(ctx, n, lay.Work)
	if err != nil {
		return nil, false, fmt.Errorf("while looking for sdr's work directory %s on %s: %w", lay.Work, n.Name, err)
	}
	if !exists {
		return func() {}, false, nil
	}
	lock, err := e.lockNode(ctx, rc, a, lay)
	if err != nil {
		return nil, false, err
	}
	if err := e.endLeftovers(ctx, log, a, lay, nil); err != nil {
		_ = lock.Release()
		return nil, false, err
	}
	return func() { _ = lock.Release() }, true, nil
}

// drFilesLeft lists sdr's files that stop removes from a DR node's work
// directory (besides the directories new/ and saved/), for logs and checks:
// new.complete.tmp is what a copy's command killed while it recorded the
// copy complete leaves.
func drFilesLeft(lay nodeLayout) []string {
	return []string{lay.Pgpass(), lay.StandbyConf(), lay.NewComplete(), lay.NewComplete() + ".tmp"}
}
