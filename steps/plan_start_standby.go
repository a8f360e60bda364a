package steps

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

// Plans of the standby side's start steps (workflow.Step.Plan). Each one
// probes as its step's Run does and calls the same decisions; it changes
// nothing.

// planStopped is saved, in a plan only (its scratch record), for each
// node 5_stop_cluster's plan would stop: 7_build_standby's plan then
// decides as the step will, on a stopped node.
func planStopped(node string) string { return "plan.stopped." + node }

// planPrepareReplicationStandby: the stale slots 3_prepare_replication
// would drop and the password file it would install on each standby node.
func (e *Env) planPrepareReplicationStandby(ctx context.Context, rc *workflow.RunContext) (workflow.PlanEntry, error) {
	content := e.pgpassContent()
	nodes := e.standbyNodes()
	items := make([][]workflow.PlanItem, len(nodes))
	err := forEach(ctx, nodes, func(ctx context.Context, n *cluster.Node) error {
		var out []workflow.PlanItem
		running, err := e.pgRunning(ctx, n, n.DataDir)
		if err != nil {
			return err
		}
		if running {
			var stale []string
			if err := e.withAdmin(ctx, n, func(ctx context.Context, c *pgx.Conn) error {
				stale, err = staleSlots(ctx, c, n.Name, pairSlotNames(e.Config))
				return err
			}); err != nil {
				return err
			}
			for _, s := range stale {
				out = append(out, workflow.PlanItem{Kind: "slot", Action: "drop", Node: n.Name, Name: s,
					What: "drop this pair's slot " + s + ", which no process holds", Why: "it would keep WAL on this node for nobody"})
			}
		}
		lay, err := e.layoutOf(ctx, n)
		if err != nil {
			return err
		}
		a, err := e.access(ctx, n)
		if err != nil {
			return err
		}
		cctx, cancel := e.cmdCtx(ctx)
		old, err := a.ReadFile(cctx, lay.Pgpass())
		cancel()
		it := workflow.PlanItem{Kind: "file", Node: n.Name, Name: lay.Pgpass(),
			Why: fmt.Sprintf("libpq's password file for replication.user: one line per host a standby node streams from (%d), mode 0600; its content is never shown",
				strings.Count(content, "\n"))}
		switch {
		case errors.Is(err, fs.ErrNotExist):
			it.Action, it.What = "create", "install the replication password file (0600), in sdr's work directory "+lay.Work
		case err != nil:
			return fmt.Errorf("while reading %s on %s: %w", lay.Pgpass(), n.Name, err)
		case string(old) == content:
			it.Action, it.What = "keep", "the replication password file is already right (its mode is set to 0600 again)"
		default:
			it.Action, it.What = "replace", "replace the replication password file (0600): its lines differ from the config's hosts or password"
		}
		items[indexOf(nodes, n)] = append(out, it)
		return nil
	})
	if err != nil {
		return workflow.PlanEntry{}, err
	}
	return entryOf(items, "the password file and this pair's stale slots on every standby node"), nil
}

// entryOf joins per-node items into an entry; it is NoChange when every
// item keeps what is there.
func entryOf(items [][]workflow.PlanItem, summary string) workflow.PlanEntry {
	entry := workflow.PlanEntry{Summary: summary, NoChange: true}
	for _, l := range items {
		for _, it := range l {
			entry.Items = append(entry.Items, it)
			if it.Action != "keep" && it.Action != "none" {
				entry.NoChange = false
			}
		}
	}
	return entry
}

// planStopStandbyCluster: which standby nodes 5_stop_cluster would stop,
// and the classifier's verdict on each data directory (observeToStop,
// the step's own probe and decision).
func (e *Env) planStopStandbyCluster(ctx context.Context, rc *workflow.RunContext) (workflow.PlanEntry, error) {
	found, _, err := e.observeToStop(ctx, rc)
	if err != nil {
		return workflow.PlanEntry{}, err
	}
	nodes := e.standbyNodes()
	main, cascades := e.mainStandby()
	var items [][]workflow.PlanItem
	for _, n := range append(cascades, main) {
		f := found[indexOf(nodes, n)]
		it := workflow.PlanItem{Kind: "node", Node: n.Name, Name: n.DataDir, Why: fmt.Sprintf("%s (%s)", f.Verdict.Reason, f.Verdict.Kind)}
		if f.Running {
			it.Action, it.What = "stop", "stop PostgreSQL with a fast shutdown (pg_ctl stop -m fast); its data directory may be replaced"
			if f.Verdict.Adopt {
				it.What = "write sdr's marker (" + markerName + ") into it, then " + it.What
			}
			if _, err := rc.SaveOnce(ctx, planStopped(n.Name), "1"); err != nil {
				return workflow.PlanEntry{}, err
			}
		} else {
			it.Action, it.What = "keep", "not running: nothing to stop"
		}
		items = append(items, []workflow.PlanItem{it})
	}
	return entryOf(items, "stop every DR node at once (the cascades and the main standby "+main.Name+")"), nil
}

// planSetGUC: the standby settings 6_set_guc would prepare for each node,
// with each setting's value in the configuration its server reads now.
func (e *Env) planSetGUC(ctx context.Context, rc *workflow.RunContext) (workflow.PlanEntry, error) {
	p, err := e.remotePrimary(ctx)
	if err != nil {
		return workflow.PlanEntry{}, err
	}
	ups := e.upstreams(p.Node)
	nodes := e.standbyNodes()
	items := make([][]workflow.PlanItem, len(nodes))
	err = forEach(ctx, nodes, func(ctx context.Context, n *cluster.Node) error {
		out, err := e.planSetGUCNode(ctx, n, ups[n.Name])
		items[indexOf(nodes, n)] = out
		return err
	})
	if err != nil {
		return workflow.PlanEntry{}, err
	}
	entry := entryOf(items, "prepare each standby node's settings (the old values are those of its configuration now)")
	// The step writes only the prepared files; the settings change with the rebuild.
	entry.NoChange = true
	for _, l := range items {
		entry.NoChange = entry.NoChange && l[0].Action == "keep"
	}
	entry.Notes = append(entry.Notes, "old values are read now from the postgresql.conf each node's server reads (in config_dir where it is set) "+
		"and the postgresql.auto.conf of its data directory, without following include directives; after the rebuild every other setting "+
		"comes from the primary's copy, or for a node with config_dir from config_dir's files and the copy's postgresql.auto.conf")
	return entry, nil
}

// planSetGUCNode: planSetGUC's items for n, which streams from up: the
// prepared file, and each setting with its value now.
func (e *Env) planSetGUCNode(ctx context.Context, n *cluster.Node, up upstream) ([]workflow.PlanItem, error) {
	lay, err := e.layoutOf(ctx, n)
	if err != nil {
		return nil, err
	}
	a, err := e.access(ctx, n)
	if err != nil {
		return nil, err
	}
	lines := standbySettings(e.Config, n, up, lay.Pgpass())
	content := strings.Join(lines, "\n") + "\n"
	prepared, have, err := readOptional(ctx, e, a, lay.StandbyConf())
	if err != nil {
		return nil, err
	}
	nc, err := e.confOf(ctx, n)
	if err != nil {
		return nil, err
	}
	// The postgresql.conf the node's server reads (config_dir's where
	// it is set); step 2 has checked that its data directory is data_dir.
	conf, _, err := readOptional(ctx, e, a, nc.ConfigFile)
	if err != nil {
		return nil, err
	}
	auto, _, err := readOptional(ctx, e, a, path.Join(lay.DataDir, "postgresql.auto.conf"))
	if err != nil {
		return nil, err
	}
	f := workflow.PlanItem{Kind: "file", Action: "create", Node: n.Name, Name: lay.StandbyConf(), Lines: lines,
		Where: lay.StandbyConf() + "; 7_build_standby puts these lines into sdr's block of the new copy's postgresql.auto.conf",
		What:  fmt.Sprintf("prepare the standby settings: stream from %s (%s:%d) through slot %s as %s", up.Node, up.Host, up.Port, orNone(up.Slot), cluster.AppName(e.Config.Name, n.Name))}
	switch {
	case have && prepared == content:
		f.Action = "keep"
	case have:
		f.Action = "replace"
	}
	out := []workflow.PlanItem{f}
	for _, s := range settingChanges(n.Name, path.Join(lay.DataDir, "postgresql.auto.conf")+" (sdr's block, in the new copy)", lines, conf, auto) {
		if s.Action == "keep" {
			s.Action = "none" // the same value, written into the new copy
		}
		out = append(out, s)
	}
	return out, nil
}

// builtNode is what 7_build_standby's plan found for one node.
type builtNode struct {
	node    *cluster.Node
	up      upstream
	b       *nodeBuild
	action  buildAction
	swapOps []renameOp
}

// planBuildStandby: for each standby node, what 7_build_standby would do
// (planNodeBuild on the step's own probe), the classifier's verdict on
// the directory it replaces, where that directory goes (planSwap), the
// exact pg_hba.conf block and settings of the new copy, the bytes to copy
// and an estimate of the time.
func (e *Env) planBuildStandby(ctx context.Context, rc *workflow.RunContext) (workflow.PlanEntry, error) {
	p, err := e.remotePrimary(ctx)
	if err != nil {
		return workflow.PlanEntry{}, err
	}
	view := e.primaryView(ctx, rc.Log, p)
	ups := e.upstreams(p.Node)
	main, cascades := e.mainStandby()
	ready, err := e.primaryReady(ctx, p)
	if err != nil {
		return workflow.PlanEntry{}, err
	}
	mb, err := e.planBuildNode(ctx, rc, main, ups[main.Name], p, view, "")
	if err != nil {
		return workflow.PlanEntry{}, err
	}
	wantFrom := "(the main standby's new copy)"
	if mb.action == actDone || mb.action == actStart {
		if wantFrom, err = e.currentCopy(ctx, main); err != nil {
			return workflow.PlanEntry{}, err
		}
	}
	built := make([]builtNode, len(cascades))
	err = forEach(ctx, cascades, func(ctx context.Context, n *cluster.Node) error {
		var err error
		built[indexOf(cascades, n)], err = e.planBuildNode(ctx, rc, n, ups[n.Name], p, view, wantFrom)
		return err
	})
	if err != nil {
		return workflow.PlanEntry{}, err
	}
	from := append(append([]cluster.Node{}, e.Config.Standby.Nodes...), e.Config.Primary.Nodes...)
	hba := cluster.BlockText(e.Config.Name, hbaLines(e.Config, from))
	entry := workflow.PlanEntry{Summary: fmt.Sprintf("rebuild %s from the primary %s, then %d cascade(s) from %s in parallel", main.Name, p.Node.Name, len(cascades), main.Name)}
	var mainSecs, cascadeSecs float64
	for i, bn := range append([]builtNode{mb}, built...) {
		items, secs, err := e.buildItems(ctx, rc, bn, ready.DataBytes, hba)
		if err != nil {
			return workflow.PlanEntry{}, err
		}
		entry.Items = append(entry.Items, items...)
		if i == 0 {
			mainSecs = secs
		} else {
			cascadeSecs = max(cascadeSecs, secs)
		}
	}
	for _, n := range cascades {
		slot := cluster.SlotName(e.Config.Name, n.Name)
		entry.Items = append(entry.Items, workflow.PlanItem{Kind: "slot", Action: "create", Node: main.Name, Name: slot,
			What: fmt.Sprintf("create slot %s on %s for cascade %s, if it has none", slot, main.Name, n.Name),
			Why:  "the main standby keeps the WAL the cascade needs from its copy on"})
	}
	entry.NoChange = mb.action == actDone
	for _, bn := range built {
		entry.NoChange = entry.NoChange && bn.action == actDone
	}
	if fan, why := useFanOut(e.Config.Copy.FanOut, len(cascades), len(p.Tablespaces)); fan {
		entry.Summary = fmt.Sprintf("rebuild %s and its %d cascade(s) from one copy of the primary %s (copy.fan_out), %s first", main.Name, len(cascades), p.Node.Name, main.Name)
		entry.Notes = append(entry.Notes, "copy.fan_out: one pg_basebackup on "+main.Name+" is unpacked on every node at once; a cascade whose copy "+
			"cannot stream from "+main.Name+" afterwards is copied from it instead (a former primary that is rewound is not copied: then the cascades are copied from it)")
	} else if why != "" {
		entry.Notes = append(entry.Notes, "copy.fan_out is on, but the fan-out copy is not used: "+why)
	}
	if mainSecs+cascadeSecs > 0 {
		entry.Notes = append(entry.Notes, fmt.Sprintf("copying takes about %s in all: %s's copy, then the cascades' copies side by side",
			durationText(mainSecs+cascadeSecs), main.Name))
	}
	entry.Notes = append(entry.Notes, fmt.Sprintf("bytes to copy are the primary's databases as 2_check_cluster measures them (%s, every tablespace "+
		"replication.user can measure); pg_basebackup also streams the WAL written while it copies", sizeText(ready.DataBytes)))
	if len(ready.Unmeasured) > 0 {
		entry.Notes = append(entry.Notes, "left out of the bytes (replication.user cannot read their size): tablespaces "+strings.Join(ready.Unmeasured, ", "))
	}
	return entry, nil
}

// planBuildNode probes n as 7_build_standby does and decides where its
// rebuild would start (planNodeBuild). A node that 5_stop_cluster's plan
// stops counts as stopped, as it will be when the step runs.
func (e *Env) planBuildNode(ctx context.Context, rc *workflow.RunContext, n *cluster.Node, up upstream, p remoteFacts, view PrimaryView, wantFrom string) (builtNode, error) {
	a, err := e.access(ctx, n)
	if err != nil {
		return builtNode{}, err
	}
	lay, err := e.layoutOf(ctx, n)
	if err != nil {
		return builtNode{}, err
	}
	main, _ := e.mainStandby()
	b := &nodeBuild{e: e, rc: rc, log: rc.Log.With(zap.String("node", n.Name)), a: a, n: n, lay: lay, up: up, p: p, view: view,
		wantFrom: wantFrom, tss: tablespaceMaps(p.Tablespaces, n.Name, main.Name, n == main)}
	if err := b.observe(ctx); err != nil {
		return builtNode{}, err
	}
	if _, stopped, err := rc.Value(ctx, planStopped(n.Name)); err != nil {
		return builtNode{}, err
	} else if stopped {
		b.obs.Running, b.obs.InRecovery = false, false
	}
	action, err := planNodeBuild(b.obs)
	if err != nil {
		return builtNode{}, err
	}
	bn := builtNode{node: n, up: up, b: b, action: action}
	if action == actCopy || action == actConfigure || action == actSwap {
		copyID := b.obs.CopyID
		if copyID == "" || action == actCopy {
			copyID = "RUN/" + n.Name
		}
		// The tablespaces are swapped first, as 7_build_standby does (a
		// copy still to be made will be in <location>.sdr/new).
		for _, t := range b.tss {
			keep := ""
			if b.verdict.KeepAside && b.probe.Dir.Exists {
				keep = keptTablespace(t.Live, copyID)
			}
			bn.swapOps = append(bn.swapOps, tablespaceSwap(t.Live, path.Join(t.Live+".sdr/trash", "tablespace-"+t.OID), keep,
				b.probe.Extra[t.Live].Exists, action == actCopy || b.probe.Extra[t.Live+".sdr/new"].Exists, b.probe.Extra[t.Live+".sdr/old"].Exists)...)
		}
		dataOps, err := planSwap(n.Name, swapObs{Verdict: b.verdict, DataDir: lay.DataDir, DataExist: b.probe.Dir.Exists,
			OldExists: b.probe.Extra[lay.Old()].Exists, Keep: lay.Kept(copyID), Old: lay.Old(), New: lay.New(), Trash: lay.TrashName("data", copyID)})
		if err != nil {
			return builtNode{}, err
		}
		bn.swapOps = append(bn.swapOps, dataOps...)
	}
	return bn, nil
}

// buildItems describes one node's rebuild, with the estimated time of its copy.
func (e *Env) buildItems(ctx context.Context, rc *workflow.RunContext, bn builtNode, bytes int64, hba []string) ([]workflow.PlanItem, float64, error) {
	n, b := bn.node, bn.b
	dir := workflow.PlanItem{Kind: "data_dir", Node: n.Name, Name: b.lay.DataDir, Why: fmt.Sprintf("%s (%s)", b.verdict.Reason, b.verdict.Kind)}
	switch bn.action {
	case actDone:
		dir.Action, dir.What = "keep", "this run's copy already runs as a standby: nothing to do"
		return []workflow.PlanItem{dir}, 0, nil
	case actStart:
		dir.Action, dir.What = "keep", "this run's copy is in place: it is started"
		return []workflow.PlanItem{dir}, 0, nil
	}
	dir.Action = "rebuild"
	var moves []string
	for _, op := range bn.swapOps {
		moves = append(moves, op.From+" -> "+op.To)
	}
	dir.What = "replace it by the new copy, by renames: " + strings.Join(moves, ", ")
	if b.verdict.KeepAside {
		dir.Action = "keep_aside"
		dir.What += " (the directory it replaces is kept there, never deleted"
		if len(b.tss) > 0 {
			dir.What += "; so are its tablespaces, and its pg_tblspc links are pointed at them"
		}
		dir.What += ")"
	}
	items := []workflow.PlanItem{dir}
	conf, err := e.confOf(ctx, n)
	if err != nil {
		return nil, 0, err
	}
	var secs float64
	if bn.action == actCopy {
		var last *workflow.Transfer
		if t, ok, err := rc.LastTransfer(ctx, n.Name); err != nil {
			return nil, 0, err
		} else if ok {
			last = &t
		}
		var basis string
		secs, basis = copyEstimate(bytes, last, n.Name, e.CopyRate)
		// Only the copy from the primary takes copy.compress and
		// copy.max_rate; the rate limit bounds the estimate.
		var wanText string
		if bn.up.Node == bn.b.p.Node.Name {
			wan := e.Config.Copy
			if args := features(pgVersion(bn.b.p.VersionNum)).wanArgs(wan); len(args) > 0 {
				wanText = " " + strings.Join(args, " ")
			}
			if kb := wan.MaxRateKB(); kb > 0 && bytes > 0 {
				if capped := float64(bytes) / (float64(kb) * 1024); capped > secs {
					secs, basis = capped, fmt.Sprintf("copy.max_rate %s (%s/s), below the rate the estimate had (%s)", wan.MaxRate, sizeText(int64(kb)*1024), basis)
				}
			}
		}
		slot := bn.up.Slot
		var own []string
		for _, f := range ownFiles(conf, n, b.lay) {
			own = append(own, f.Rel)
		}
		why := "the node's pg_hba.conf and pg_ident.conf are outside its data directory: the rebuild leaves them in place"
		if len(own) > 0 {
			why = "the node's own " + strings.Join(own, " and ") + " are saved first (" + b.lay.Saved() + ") and put back into the copy"
		}
		items = append(items, workflow.PlanItem{Kind: "copy", Action: "create", Node: n.Name, Name: b.lay.New(), Bytes: bytes, Seconds: secs, Basis: basis,
			What: fmt.Sprintf("pg_basebackup -X stream -c fast%s from %s (%s:%d) through slot %s into %s: about %s, %s",
				wanText, bn.up.Node, bn.up.Host, bn.up.Port, orNone(slot), b.lay.New(), sizeText(bytes), durationText(secs)),
			Why: why})
	} else {
		items = append(items, workflow.PlanItem{Kind: "copy", Action: "keep", Node: n.Name, Name: b.lay.New(),
			What: "the copy this run made is complete (" + b.obs.NewComplete + "): it is not made again; the rebuild resumes at " + string(bn.action)})
	}
	where := "the node's pg_hba.conf, outside its data directory"
	if _, ok := inData(conf.HbaFile, n, b.lay); ok {
		where = "pg_hba.conf of the new copy (the node's own file, put back)"
	}
	items = append(items, workflow.PlanItem{Kind: "hba", Action: "insert", Node: n.Name, Name: conf.HbaFile, Lines: hba,
		Where: where + ", as sdr's block: in place of one that is there, else at the end",
		What:  "replication from every node of both clusters, so that any node can stream from this one later"})
	items = append(items, workflow.PlanItem{Kind: "file", Action: "create", Node: n.Name, Name: path.Join(b.lay.DataDir, "standby.signal"),
		What: "standby.signal and sdr's copy marker " + markerName + " in the new copy, before it is swapped in: whatever starts it starts a standby"})
	return items, secs, nil
}

// planStartStandbyCluster: 8_start_cluster starts and waits; it says
// what each node must stream from.
func (e *Env) planStartStandbyCluster(_ context.Context, _ *workflow.RunContext) (workflow.PlanEntry, error) {
	main, cascades := e.mainStandby()
	items := []workflow.PlanItem{{Kind: "node", Action: "wait", Node: main.Name,
		What: fmt.Sprintf("start it, then wait up to %s until it streams from the primary through slot %s", e.runWait(), e.slotName())}}
	for _, n := range cascades {
		items = append(items, workflow.PlanItem{Kind: "node", Action: "wait", Node: n.Name,
			What: fmt.Sprintf("start it, then wait up to %s until it streams from %s through slot %s", e.runWait(), main.Name, cluster.SlotName(e.Config.Name, n.Name))})
	}
	return workflow.PlanEntry{Summary: "start every standby node, the main standby first, and check that each streams from its upstream", Items: items}, nil
}

// planFinishStandby: what 9_finish would remove on each standby node.
func (e *Env) planFinishStandby(ctx context.Context, _ *workflow.RunContext) (workflow.PlanEntry, error) {
	nodes := e.standbyNodes()
	items := make([][]workflow.PlanItem, len(nodes))
	err := forEach(ctx, nodes, func(ctx context.Context, n *cluster.Node) error {
		lay, err := e.layoutOf(ctx, n)
		if err != nil {
			return err
		}
		items[indexOf(nodes, n)] = []workflow.PlanItem{{Kind: "data_dir", Action: "remove", Node: n.Name, Name: lay.Old(),
			What: fmt.Sprintf("remove %s (the data directory it had before the rebuild, kept there from the swap until the new copy streams), "+
				"%s, and the old copies of its tablespaces, through sdr's trash", lay.Old(), lay.Saved())}}
		return nil
	})
	if err != nil {
		return workflow.PlanEntry{}, err
	}
	entry := entryOf(items, "remove the old data directories and the saved files")
	entry.Notes = append(entry.Notes, "a diverged data directory kept aside (<data_dir>.sdr/diverged-*) is never deleted")
	return entry, nil
}
