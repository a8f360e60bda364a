package steps

import (
	"context"
	"fmt"
	"path"

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
	found, sysID, err := e.observeToStop(ctx, rc)
	if err != nil {
		return err
	}
	nodes := e.standbyNodes()
	return forEach(ctx, nodes, func(ctx context.Context, n *cluster.Node) error {
		f := found[indexOf(nodes, n)]
		if !f.Running {
			rc.Log.Info("already stopped", zap.String("node", n.Name))
			return nil
		}
		if f.Verdict.Adopt {
			if err := e.adopt(ctx, rc, n, sysID); err != nil {
				return err
			}
		}
		// The look just above found it running.
		return e.stopNodeFrom(ctx, rc, n, true)
	})
}

// adopt writes sdr's marker into the data directory of a running standby
// that sdr did not build but that streams through sdr's own slot for this
// node (built by hand, say): the verdict that it may be replaced rests on
// that stream, which ends when it is stopped, and the marker keeps it for
// 7_build_standby and for any later run. The copy id says it was adopted.
func (e *Env) adopt(ctx context.Context, rc *workflow.RunContext, n *cluster.Node, sysID string) error {
	lay, err := e.layoutOf(ctx, n)
	if err != nil {
		return err
	}
	a, err := e.access(ctx, n)
	if err != nil {
		return err
	}
	m := CopyMarker{Pair: e.Config.Name, Node: n.Name, SystemID: sysID, CopyID: "adopted-" + rc.RunID}
	cctx, cancel := e.cmdCtx(ctx)
	defer cancel()
	if err := a.WriteFile(cctx, path.Join(lay.DataDir, markerName), []byte(m.String()), 0o600); err != nil {
		return fmt.Errorf("while writing sdr's marker into %s on %s (it streams through sdr's slot but sdr did not build it): %w", lay.DataDir, n.Name, err)
	}
	rc.Log.Info("a standby that sdr did not build streams through sdr's slot for this node: marked as sdr's before it is stopped",
		zap.String("node", n.Name), zap.String("marker", path.Join(lay.DataDir, markerName)))
	return nil
}

// toStop is what 5_stop_cluster found of one standby node.
type toStop struct {
	Running bool
	Verdict Verdict
}

// observeToStop classifies each standby node's data directory (in the
// order of e.standbyNodes) and refuses, before anything is stopped, one
// that sdr must not replace.
func (e *Env) observeToStop(ctx context.Context, rc *workflow.RunContext) ([]toStop, string, error) {
	p, err := e.remotePrimary(ctx)
	if err != nil {
		return nil, "", err
	}
	view := e.primaryViewLater(ctx, rc.Log, p)
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
		v := ClassifyDataDir(o, view(), e.named(n.Name))
		if !v.Replace {
			return permanent(fmt.Errorf("nothing was stopped: %s", v.Reason))
		}
		found[indexOf(nodes, n)] = toStop{Running: o.Running, Verdict: v}
		return nil
	})
	return found, p.SystemID, err
}
