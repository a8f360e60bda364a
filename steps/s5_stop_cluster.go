package steps

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

// stopStandbyCluster stops every standby node cleanly: the cascades
// first, then the main standby. A node that is in fact the primary is
// refused before anything is stopped.
func (e *Env) stopStandbyCluster(ctx context.Context, rc *workflow.RunContext) error {
	p, err := e.remotePrimary(ctx)
	if err != nil {
		return err
	}
	for _, n := range e.standbyNodes() {
		o, err := e.observeStandbyNode(ctx, n)
		if err != nil {
			return err
		}
		if err := checkStandbyNodeSafe(o, p.SystemID); err != nil {
			return err
		}
	}
	main, cascades := e.mainStandby()
	if err := forEach(ctx, cascades, func(ctx context.Context, n *cluster.Node) error { return e.stopNode(ctx, rc, n) }); err != nil {
		return err
	}
	return e.stopNode(ctx, rc, main)
}

func (e *Env) stopNode(ctx context.Context, rc *workflow.RunContext, n *cluster.Node) error {
	running, err := e.pgRunning(ctx, n, n.DataDir)
	if err != nil {
		return err
	}
	if !running {
		rc.Log.Info("already stopped", zap.String("node", n.Name))
		return nil
	}
	secs := int(e.Config.Timeouts.Command.Seconds())
	cmd := fmt.Sprintf("%s stop -D %s -m fast -w -t %d", bin(n, "pg_ctl"), q(n.DataDir), secs)
	if _, err := e.run(ctx, n, cmd, cluster.RunOpts{}); err != nil {
		return fmt.Errorf("while stopping %s: %w", n.Name, err)
	}
	rc.Log.Info("stopped", zap.String("node", n.Name))
	return nil
}
