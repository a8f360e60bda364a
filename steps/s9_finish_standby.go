package steps

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

// finishStandby removes the saved copies of the nodes' own files and the
// old data directories, now that the new copies stream.
func (e *Env) finishStandby(ctx context.Context, rc *workflow.RunContext) error {
	return forEach(ctx, e.standbyNodes(), func(ctx context.Context, n *cluster.Node) error {
		old := oldDir(n)
		if running, err := e.pgRunning(ctx, n, old); err != nil {
			return err
		} else if running {
			return permanent(fmt.Errorf("PostgreSQL runs in the old data directory %s on %s; sdr does not remove it", old, n.Name))
		}
		cmd := fmt.Sprintf("rm -rf %s %s %s %s %s.tmp", q(old), q(savedDir(n)), q(newDir(n)), q(newComplete(n)), q(savedDir(n)))
		if _, err := e.run(ctx, n, cmd, cluster.RunOpts{}); err != nil {
			return fmt.Errorf("while cleaning up on %s: %w", n.Name, err)
		}
		rc.Log.Info("old data directory and saved files removed", zap.String("node", n.Name), zap.String("dir", workDir(n)))
		return nil
	})
}
