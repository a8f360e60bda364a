package steps

import (
	"context"
	"strings"

	"go.uber.org/zap"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

// upstreams returns where each standby node streams from: the main
// standby from the primary through sdr's slot, the cascades from the
// main standby.
func (e *Env) upstreams(p *cluster.Node) map[string]upstream {
	main, cascades := e.mainStandby()
	out := map[string]upstream{main.Name: {Node: p.Name, Host: p.ReplHost(), Port: p.PGPort, Slot: e.slotName()}}
	for _, c := range cascades {
		// The main standby keeps the WAL a cascade needs in a slot of its own.
		out[c.Name] = upstream{Node: main.Name, Host: main.ReplHost(), Port: main.PGPort, Slot: cluster.SlotName(e.Config.Name, c.Name)}
	}
	return out
}

// setGUC writes each standby node's settings into sdr's work directory
// beside its data directory; 7_build_standby puts them into the new copy.
func (e *Env) setGUC(ctx context.Context, rc *workflow.RunContext) error {
	p, err := e.remotePrimary(ctx)
	if err != nil {
		return err
	}
	ups := e.upstreams(p.Node)
	return forEach(ctx, e.standbyNodes(), func(ctx context.Context, n *cluster.Node) error {
		lay, err := e.layoutOf(ctx, n)
		if err != nil {
			return err
		}
		lines := standbySettings(e.Config, n, ups[n.Name], lay.Pgpass())
		if _, err := e.ensureFile(ctx, n, lay.StandbyConf(), strings.Join(lines, "\n")+"\n"); err != nil {
			return err
		}
		rc.Log.Info("standby settings prepared", zap.String("node", n.Name), zap.String("upstream", ups[n.Name].Node),
			zap.String("application_name", cluster.AppName(e.Config.Name, n.Name)))
		return nil
	})
}
