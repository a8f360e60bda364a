package steps

import (
	"context"
	"strings"

	"go.uber.org/zap"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

// removeFiles removes sdr's replication password file and the standby
// settings it prepared from each DR node's work directory, after ending
// whatever an earlier run left running there. The rest of the work
// directory stays: a diverged data directory kept aside is never deleted,
// and what an unfinished start left (old/, new/, saved/) is for the next
// start to finish or throw away (docs/runbook.md).
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
		release, err := s.lockWork(ctx, rc, log, a, n, lay)
		if err != nil {
			return err
		}
		defer release()
		files := drFilesLeft(lay)
		quoted := make([]string, len(files))
		for i, f := range files {
			quoted[i] = q(f)
		}
		if _, err := e.run(ctx, n, "rm -f "+strings.Join(quoted, " "), cluster.RunOpts{}); err != nil {
			return err
		}
		log.Info("replication password file and prepared settings removed (or already gone)", zap.Strings("files", files))
		return nil
	})
}
