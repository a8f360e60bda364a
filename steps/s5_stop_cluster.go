package steps

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

// stopStandbyCluster stops every standby node cleanly: the cascades
// first, then the main standby. Each node's data directory is classified
// again right before it is stopped; one that sdr must not replace is
// never stopped (2_check_cluster refuses it first, with the reason).
func (e *Env) stopStandbyCluster(ctx context.Context, rc *workflow.RunContext) error {
	p, err := e.remotePrimary(ctx)
	if err != nil {
		return err
	}
	view := e.primaryView(ctx, rc.Log, p)
	nodes := e.standbyNodes()
	running := make([]bool, len(nodes))
	err = forEach(ctx, nodes, func(ctx context.Context, n *cluster.Node) error {
		lay, err := e.layoutOf(ctx, n)
		if err != nil {
			return err
		}
		o, _, err := e.observeDir(ctx, n, lay, nil, nil)
		if err != nil {
			return err
		}
		if v := ClassifyDataDir(o, view, e.named(n.Name)); !v.Replace {
			return permanent(fmt.Errorf("nothing was stopped: %s", v.Reason))
		}
		running[indexOf(nodes, n)] = o.Running
		return nil
	})
	if err != nil {
		return err
	}
	main, cascades := e.mainStandby()
	stop := func(ctx context.Context, n *cluster.Node) error {
		if !running[indexOf(nodes, n)] {
			rc.Log.Info("already stopped", zap.String("node", n.Name))
			return nil
		}
		return e.stopNode(ctx, rc, n)
	}
	if err := forEach(ctx, cascades, stop); err != nil {
		return err
	}
	return stop(ctx, main)
}
