package steps

import (
	"context"
	"fmt"
	"path"
	"sort"

	"go.uber.org/zap"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

// finishStandby removes, now that the new copies stream, what the rebuild
// kept until then: each node's old data directory, the old copies of its
// tablespaces and the saved copies of its own files. Deletes go through
// the trash, so a delete cut short is finished by the next run. A diverged
// data directory kept aside is never deleted.
func (e *Env) finishStandby(ctx context.Context, rc *workflow.RunContext) error {
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
		lock, err := e.lockNode(ctx, rc, a, lay)
		if err != nil {
			return err
		}
		defer lock.Release()
		cctx, cancel := e.cmdCtx(ctx)
		pr, err := cluster.ProbeDataDir(cctx, a, n.BinDir, lay.DataDir, nil, nil)
		cancel()
		if err != nil {
			return fmt.Errorf("while probing %s on %s: %w", lay.DataDir, n.Name, err)
		}
		tss := tablespacesOf(pr)
		if err := e.endLeftovers(ctx, log, a, lay, tss); err != nil {
			return err
		}
		lctx, lcancel := e.longCtx(ctx)
		defer lcancel()
		remove := []struct{ dir, trash string }{{lay.Old(), lay.Trash()}, {lay.Saved(), lay.Trash()}, {lay.Saved() + ".tmp", lay.Trash()},
			{lay.New(), lay.Trash()}, {lay.RewindSockDir(), lay.Trash()}}
		for _, t := range tss {
			remove = append(remove, struct{ dir, trash string }{t.Live + ".sdr/old", t.Live + ".sdr/trash"})
		}
		for _, r := range remove {
			if err := cluster.RemoveTree(lctx, a, r.dir, r.trash); err != nil {
				return fmt.Errorf("while removing %s on %s: %w", r.dir, n.Name, err)
			}
		}
		if _, err := e.run(ctx, n, "rm -f "+q(lay.NewComplete())+" "+q(lay.LegacyBuilt()), cluster.RunOpts{}); err != nil {
			return err
		}
		log.Info("old data directory, old tablespace copies and saved files removed", zap.String("dir", lay.Work))
		return nil
	})
}

// tablespacesOf lists the tablespace locations a data directory links to
// (pg_tblspc/<oid>), in OID order.
func tablespacesOf(pr cluster.DataDirProbe) []tsMap {
	var out []tsMap
	for oid, target := range pr.Tablespaces {
		if path.IsAbs(target) {
			out = append(out, tsMap{OID: oid, Live: path.Clean(target)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].OID < out[j].OID })
	return out
}
