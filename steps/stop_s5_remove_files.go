package steps

import (
	"context"
	"fmt"
	"strings"

	"go.uber.org/zap"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

// removeFiles removes from each DR node's work directory, after ending
// whatever an earlier run left running there, sdr's replication password
// file, the standby settings it prepared, and what an unfinished start
// left that no later start can use (a later start copies every node
// anew): the half-built or unused copy new/ and new.complete, and the
// saved copies of the node's own pg_hba.conf and pg_ident.conf, which are
// in its data directory now (a later start saving them again must not
// find stale ones). Deletes go through the trash. The data directory the
// node had before an unfinished rebuild (old/) stays, and so does a
// diverged data directory kept aside, which sdr never deletes.
func (s *stopRun) removeFiles(ctx context.Context, rc *workflow.RunContext) error {
	e := s.e
	return forEach(ctx, e.standbyNodes(), func(ctx context.Context, n *cluster.Node) error {
		log := rc.Log.With(zap.String("node", n.Name))
		a, err := e.access(ctx, n)
		if err != nil {
			return err
		}
		lay, err := e.layoutOf(ctx, n)
		if err != nil {
			return err
		}
		release, work, err := s.lockWork(ctx, rc, log, a, n, lay)
		if err != nil {
			return err
		}
		defer release()
		if !work {
			log.Info("no sdr work directory: nothing to remove", zap.String("dir", lay.Work))
			return nil
		}
		lctx, cancel := e.longCtx(ctx)
		defer cancel()
		for _, dir := range []string{lay.New(), lay.Saved(), lay.Saved() + ".tmp"} {
			if err := cluster.RemoveTree(lctx, a, dir, lay.Trash()); err != nil {
				return fmt.Errorf("while removing %s on %s: %w", dir, n.Name, err)
			}
		}
		files := drFilesLeft(lay)
		quoted := make([]string, len(files))
		for i, f := range files {
			quoted[i] = q(f)
		}
		if _, err := e.run(ctx, n, "rm -f "+strings.Join(quoted, " "), cluster.RunOpts{}); err != nil {
			return err
		}
		log.Info("replication password file, prepared settings and an unfinished start's leftovers removed (or already gone)",
			zap.Strings("files", files))
		return nil
	})
}
