package steps

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

// Plans of the stop steps (workflow.Step.Plan): each probes as its step
// does and calls the same decisions; it changes nothing.

// planCloseAccess: sdr's pg_hba.conf block that 3_close_access would
// remove from each primary-cluster node, line by line.
func (s *stopRun) planCloseAccess(ctx context.Context, _ *workflow.RunContext) (workflow.PlanEntry, error) {
	e := s.e
	nodes := e.primaryNodes()
	items := make([][]workflow.PlanItem, len(nodes))
	err := forEach(ctx, nodes, func(ctx context.Context, n *cluster.Node) error {
		a, err := e.access(ctx, n)
		if err != nil {
			return err
		}
		return e.withAdmin(ctx, n, func(ctx context.Context, c *pgx.Conn) error {
			file, old, err := hbaFileOf(ctx, a, c)
			if err != nil {
				return err
			}
			items[indexOf(nodes, n)] = []workflow.PlanItem{blockRemoval(n.Name, file, old, e.hbaMarker(), "then pg_reload_conf()")}
			return nil
		})
	})
	if err != nil {
		return workflow.PlanEntry{}, err
	}
	entry := entryOf(items, "remove sdr's pg_hba.conf block from every primary-cluster node, keeping every other line, and reload")
	entry.Notes = append(entry.Notes, "each node reloads even when its block is already gone (an earlier attempt may have written the file and died before the reload)")
	return entry, nil
}

// blockRemoval says what removing marker's block from file would take out.
func blockRemoval(node, file, content, marker, then string) workflow.PlanItem {
	it := workflow.PlanItem{Kind: "hba", Node: node, Name: file}
	lines, ok := cluster.BlockLines(content, marker)
	if !ok {
		it.Action, it.What = "keep", "no sdr block in "+file+" (already removed)"
		return it
	}
	it.Action, it.Lines = "remove", cluster.BlockText(marker, lines)
	it.Where = fmt.Sprintf("%s, line %d", file, blockLine(hbaLinesOf(content), marker))
	it.What = "remove sdr's block (these lines); every other line stays; " + then
	return it
}

// planDropPrimarySlots: this pair's slots that 4_drop_slots would drop on
// each primary-cluster node, ending the walsender that holds one first
// (decideSlotRelease).
func (s *stopRun) planDropPrimarySlots(ctx context.Context, _ *workflow.RunContext) (workflow.PlanEntry, error) {
	names := pairSlotNames(s.e.Config)
	nodes := s.e.primaryNodes()
	items := make([][]workflow.PlanItem, len(nodes))
	err := forEach(ctx, nodes, func(ctx context.Context, n *cluster.Node) error {
		var err error
		items[indexOf(nodes, n)], err = s.e.planDropSlots(ctx, n, names)
		return err
	})
	if err != nil {
		return workflow.PlanEntry{}, err
	}
	return entryOf(items, "drop this pair's slots on every primary-cluster node (the stream to the DR side ends)"), nil
}

// planDropSlots lists what dropSlots would do with the slots among names on n.
func (e *Env) planDropSlots(ctx context.Context, n *cluster.Node, names []string) ([]workflow.PlanItem, error) {
	var out []workflow.PlanItem
	err := e.withAdmin(ctx, n, func(ctx context.Context, c *pgx.Conn) error {
		present, err := pairSlots(ctx, c, n.Name, names)
		if err != nil {
			return err
		}
		for _, sl := range present {
			out = append(out, slotDropItem(n.Name, sl))
		}
		return nil
	})
	if err == nil && len(out) == 0 {
		out = append(out, workflow.PlanItem{Kind: "slot", Action: "keep", Node: n.Name, What: "none of this pair's slots here (already dropped)"})
	}
	return out, err
}

// slotDropItem says how a slot that stop drops goes.
func slotDropItem(node string, sl slotRow) workflow.PlanItem {
	it := workflow.PlanItem{Kind: "slot", Action: "drop", Node: node, Name: sl.Name, What: "drop slot " + sl.Name}
	switch decideSlotRelease(sl) {
	case slotTerminate:
		it.What = fmt.Sprintf("end process %d, which holds slot %s (pg_terminate_backend: the walsender streaming through it), then drop the slot", sl.PID, sl.Name)
	case slotWaitFree:
		it.What = "drop slot " + sl.Name + " once the process holding it lets go"
	case slotGone:
		it.Action, it.What = "keep", "slot "+sl.Name+" is gone"
	}
	return it
}

// planRestoreSettings: what 5_restore_settings would do with
// wal_keep_size, by the record of the start before it.
func (s *stopRun) planRestoreSettings(ctx context.Context, rc *workflow.RunContext) (workflow.PlanEntry, error) {
	return s.e.planRestoreWalKeep(ctx, rc, startValues{rc: rc, key: startKey(workflow.RolePrimary)})
}

// planDropRole: what 6_drop_role would do with replication.user (decideDropRole).
func (s *stopRun) planDropRole(ctx context.Context, _ *workflow.RunContext) (workflow.PlanEntry, error) {
	e := s.e
	p, _, err := e.findPrimary(ctx)
	if err != nil {
		return workflow.PlanEntry{}, err
	}
	user := e.Config.Replication.User
	var d roleDrop
	err = e.withAdmin(ctx, p, func(ctx context.Context, c *pgx.Conn) error {
		o, err := e.observeRole(ctx, c, p.Name)
		if err != nil {
			return err
		}
		sessions := 0
		if s.opts.DropRole && o.Exists {
			if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE usename = $1`, user).Scan(&sessions); err != nil {
				return fmt.Errorf("while counting the sessions of %s on %s: %w", user, p.Name, err)
			}
		}
		d, err = decideDropRole(user, e.Config.Name, o, s.opts.DropRole, sessions)
		return err
	})
	if err != nil {
		return workflow.PlanEntry{}, err
	}
	it := workflow.PlanItem{Kind: "role", Action: "keep", Node: p.Name, Name: user, What: d.Why}
	if d.Drop {
		it.Action, it.What, it.Why = "drop", "DROP ROLE "+pgIdent(user), d.Why
	}
	return workflow.PlanEntry{Summary: it.What, Items: []workflow.PlanItem{it}, NoChange: !d.Drop}, nil
}

// planDetach: what 3_detach would take off each DR node: the replication
// settings of sdr's postgresql.auto.conf block (detachAutoConf), sdr's
// pg_hba.conf block, and a reload of a running node.
func (s *stopRun) planDetach(ctx context.Context, _ *workflow.RunContext) (workflow.PlanEntry, error) {
	e := s.e
	nodes := e.standbyNodes()
	items := make([][]workflow.PlanItem, len(nodes))
	err := forEach(ctx, nodes, func(ctx context.Context, n *cluster.Node) error {
		a, err := e.access(ctx, n)
		if err != nil {
			return err
		}
		lay, err := e.layoutOf(ctx, n)
		if err != nil {
			return err
		}
		autoPath := path.Join(lay.DataDir, "postgresql.auto.conf")
		auto, _, err := readOptional(ctx, e, a, autoPath)
		if err != nil {
			return err
		}
		hbaPath, err := e.drHbaFile(ctx, n)
		if err != nil {
			return err
		}
		hba, _, err := readOptional(ctx, e, a, hbaPath)
		if err != nil {
			return err
		}
		running, err := e.pgRunning(ctx, n, lay.DataDir)
		if err != nil {
			return err
		}
		items[indexOf(nodes, n)] = detachItems(n.Name, autoPath, auto, hbaPath, hba, e.Config.Name, ownNames(e.Config), running)
		return nil
	})
	if err != nil {
		return workflow.PlanEntry{}, err
	}
	entry := entryOf(items, "take every DR node off its upstream; each stays a read-only standby (standby.signal stays)")
	entry.Notes = append(entry.Notes, "a running node that a lost setting needs a restart for is restarted (fast shutdown); PostgreSQL says so only after the reload")
	return entry, nil
}

// detachItems describes 3_detach on one DR node.
func detachItems(node, autoPath, auto, hbaPath, hba, marker string, own sdrOwn, running bool) []workflow.PlanItem {
	var out []workflow.PlanItem
	block, _ := cluster.BlockLines(auto, marker)
	was := confAssignments(strings.Join(block, "\n"))
	_, gone, flattened := detachAutoConf(auto, marker, own)
	for _, name := range gone {
		out = append(out, workflow.PlanItem{Kind: "setting", Action: "remove", Node: node, Name: name, Old: hideSecrets(was[name]), New: notSet,
			Where: autoPath + " (sdr's block)", What: name + " leaves sdr's block"})
	}
	for _, l := range flattened {
		name, v, _ := confSetting(l)
		out = append(out, workflow.PlanItem{Kind: "setting", Action: "remove", Node: node, Name: name, Old: hideSecrets(v), New: notSet,
			Where: autoPath + " (outside sdr's block: a line of sdr's that ALTER SYSTEM rewrote without the block's markers)",
			What:  name + " (sdr's own value, outside the block) leaves the file"})
	}
	if len(gone) == 0 && len(flattened) == 0 {
		out = append(out, workflow.PlanItem{Kind: "setting", Action: "keep", Node: node, Name: autoPath,
			What: "no replication setting in sdr's block of " + autoPath})
	}
	out = append(out, blockRemoval(node, hbaPath, hba, marker, "the node's own lines stay"))
	r := workflow.PlanItem{Kind: "node", Node: node, Action: "reload", What: "reload; it keeps running as a standby without upstream (no WAL receiver)"}
	if !running {
		r.Action, r.What = "keep", "not running: its files are edited and it stays down; it starts as a read-only standby without upstream"
	}
	return append(out, r)
}

// planDropStandbySlots: the cascades' slots 4_drop_slots would drop on
// the DR nodes; a stopped node that still holds one is refused
// (stoppedSlotsProblem), as the step refuses it.
func (s *stopRun) planDropStandbySlots(ctx context.Context, _ *workflow.RunContext) (workflow.PlanEntry, error) {
	e := s.e
	names := cascadeSlotNames(e.Config)
	if len(names) == 0 {
		return workflow.PlanEntry{Summary: "no cascade standbys: no slots on the DR side", NoChange: true}, nil
	}
	nodes := e.standbyNodes()
	items := make([][]workflow.PlanItem, len(nodes))
	err := forEach(ctx, nodes, func(ctx context.Context, n *cluster.Node) error {
		lay, err := e.layoutOf(ctx, n)
		if err != nil {
			return err
		}
		running, err := e.pgRunning(ctx, n, lay.DataDir)
		if err != nil {
			return err
		}
		if running {
			items[indexOf(nodes, n)], err = e.planDropSlots(ctx, n, names)
			return err
		}
		var onDisk []string
		for _, name := range names {
			ok, err := e.fileExists(ctx, n, path.Join(lay.DataDir, "pg_replslot", name))
			if err != nil {
				return err
			}
			if ok {
				onDisk = append(onDisk, name)
			}
		}
		if err := stoppedSlotsProblem(n.Name, onDisk); err != nil {
			return err
		}
		items[indexOf(nodes, n)] = []workflow.PlanItem{{Kind: "slot", Action: "keep", Node: n.Name, What: "not running and holds none of this pair's slots"}}
		return nil
	})
	if err != nil {
		return workflow.PlanEntry{}, err
	}
	entry := entryOf(items, "drop the cascades' slots on the DR nodes")
	entry.Notes = append(entry.Notes, "decided on who holds the slots now: after 3_detach no cascade streams, so a slot is usually free when the step runs")
	return entry, nil
}

// planRemoveFiles: what 5_remove_files would remove from each DR node's
// work directory.
func (s *stopRun) planRemoveFiles(ctx context.Context, _ *workflow.RunContext) (workflow.PlanEntry, error) {
	e := s.e
	nodes := e.standbyNodes()
	items := make([][]workflow.PlanItem, len(nodes))
	err := forEach(ctx, nodes, func(ctx context.Context, n *cluster.Node) error {
		lay, err := e.layoutOf(ctx, n)
		if err != nil {
			return err
		}
		work, err := e.fileExists(ctx, n, lay.Work)
		if err != nil {
			return err
		}
		if !work {
			items[indexOf(nodes, n)] = []workflow.PlanItem{{Kind: "file", Action: "keep", Node: n.Name, Name: lay.Work,
				What: "no sdr work directory: nothing to remove"}}
			return nil
		}
		var out []workflow.PlanItem
		for _, f := range append([]string{lay.New(), lay.Saved(), lay.Saved() + ".tmp"}, drFilesLeft(lay)...) {
			ok, err := e.fileExists(ctx, n, f)
			if err != nil {
				return err
			}
			if ok {
				out = append(out, workflow.PlanItem{Kind: "file", Action: "remove", Node: n.Name, Name: f, What: "remove " + f})
			}
		}
		if len(out) == 0 {
			out = append(out, workflow.PlanItem{Kind: "file", Action: "keep", Node: n.Name, Name: lay.Work, What: "none of sdr's files is left in " + lay.Work})
		}
		items[indexOf(nodes, n)] = out
		return nil
	})
	if err != nil {
		return workflow.PlanEntry{}, err
	}
	entry := entryOf(items, "remove the replication password file, the prepared settings and an unfinished start's leftovers from every DR node")
	entry.Notes = append(entry.Notes, "the data directory a node had before an unfinished rebuild (<data_dir>.sdr/old) and a diverged one kept aside stay")
	return entry, nil
}
