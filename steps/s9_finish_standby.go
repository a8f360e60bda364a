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
// tablespaces and the saved copies of its own files. They are renamed into
// the trash in one remote action and deleted there in the background (the
// protection is in place; the run does not wait for the disk). A delete cut
// short is finished by the next removal through that trash. A diverged data
// directory kept aside is never deleted.
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
		// Once what an earlier run left running is ended, the old trees go
		// into the trash, in the same remote action; the node deletes them
		// (and what the trashes held already) in the background, so the
		// disk space comes back shortly after this step and the run does
		// not wait for it.
		remove := []cluster.Retire{{Dir: lay.Old(), Trash: lay.Trash()}, {Dir: lay.Saved(), Trash: lay.Trash()}, {Dir: lay.Saved() + ".tmp", Trash: lay.Trash()},
			{Dir: lay.New(), Trash: lay.Trash()}, {Dir: lay.RewindSockDir(), Trash: lay.Trash()},
			{Dir: lay.NewComplete(), Trash: lay.Trash()}, {Dir: lay.NewComplete() + ".tmp", Trash: lay.Trash()}, {Dir: lay.LegacyBuilt(), Trash: lay.Trash()}}
		for _, t := range tss {
			remove = append(remove, cluster.Retire{Dir: t.Live + ".sdr/old", Trash: t.Live + ".sdr/trash"})
		}
		cctx, cancel = e.cmdCtx(ctx) // renames only: the deletes run on the node afterwards
		defer cancel()
		if err := e.killLeftoversThen(cctx, log, a, lay, cluster.Then{Retire: remove}); err != nil {
			return err
		}
		log.Info("old data directory, old tablespace copies and saved files moved to the trash; the node deletes them in the background", zap.String("trash", lay.Trash()))
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
