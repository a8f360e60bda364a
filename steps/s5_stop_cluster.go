package steps

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

// stopStandbyCluster stops every standby node cleanly, all at once (they
// are all replaced; a cascade that outlives its upstream for a moment only
// retries its connection). Each node's data directory is classified again
// right before it is stopped; one that sdr must not replace is never
// stopped (2_check_cluster refuses it first, with the reason).
func (e *Env) stopStandbyCluster(ctx context.Context, rc *workflow.RunContext) error {
	found, err := e.observeToStop(ctx, rc)
	if err != nil {
		return err
	}
	nodes := e.standbyNodes()
	return forEach(ctx, nodes, func(ctx context.Context, n *cluster.Node) error {
		if !found[indexOf(nodes, n)].Running {
			rc.Log.Info("already stopped", zap.String("node", n.Name))
			return nil
		}
		return e.stopNode(ctx, rc, n)
	})
}

// toStop is what 5_stop_cluster found of one standby node.
type toStop struct {
	Running bool
	Verdict Verdict
}

// observeToStop classifies each standby node's data directory (in the
// order of e.standbyNodes) and refuses, before anything is stopped, one
// that sdr must not replace.
func (e *Env) observeToStop(ctx context.Context, rc *workflow.RunContext) ([]toStop, error) {
	p, err := e.remotePrimary(ctx)
	if err != nil {
		return nil, err
	}
	view := e.primaryView(ctx, rc.Log, p)
	nodes := e.standbyNodes()
	found := make([]toStop, len(nodes))
	err = forEach(ctx, nodes, func(ctx context.Context, n *cluster.Node) error {
		lay, err := e.layoutOf(ctx, n)
		if err != nil {
			return err
		}
		o, _, err := e.observeDir(ctx, n, lay, nil, nil)
		if err != nil {
			return err
		}
		v := ClassifyDataDir(o, view, e.named(n.Name))
		if !v.Replace {
			return permanent(fmt.Errorf("nothing was stopped: %s", v.Reason))
		}
		found[indexOf(nodes, n)] = toStop{Running: o.Running, Verdict: v}
		return nil
	})
	return found, err
}
