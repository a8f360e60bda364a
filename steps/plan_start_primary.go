package steps

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

// Plans of the primary side's start steps (workflow.Step.Plan). Each one
// probes as its step's Run does and calls the same decision; it changes
// nothing (the Env of a plan reaches nodes read-only).

// valPlanWalKeepRaised is saved, in a plan only (the plan's scratch
// record, never the state file), when 4_retain_wal's plan would raise
// wal_keep_size: 9_finish's plan then decides on the value the raise
// leaves, not on the value of now.
const valPlanWalKeepRaised = "plan.wal_keep_size.raised"

// planPrepareReplicationPrimary: what 3_prepare_replication would do to
// replication.user (decideRole, through checkRole).
func (e *Env) planPrepareReplicationPrimary(ctx context.Context, rc *workflow.RunContext) (workflow.PlanEntry, error) {
	p, _, err := e.findPrimary(ctx)
	if err != nil {
		return workflow.PlanEntry{}, err
	}
	var a roleAction
	err = e.withAdmin(ctx, p, func(ctx context.Context, c *pgx.Conn) error {
		var err error
		a, err = e.checkRole(ctx, c, p.Name)
		return err
	})
	if err != nil {
		return workflow.PlanEntry{}, err
	}
	return roleEntry(e.Config.Replication.User, e.Config.Name, p.Name, a), nil
}

// roleEntry describes a roleAction on node.
func roleEntry(user, pair, node string, a roleAction) workflow.PlanEntry {
	it := workflow.PlanItem{Kind: "role", Node: node, Name: user}
	switch {
	case a.Create:
		it.Action = "create"
		it.What = fmt.Sprintf("CREATE ROLE %s WITH %s, the password as a SCRAM verifier, and COMMENT %q", pgIdent(user), roleAttrs, roleComment(pair))
		it.Why = "replication.user does not exist on the primary"
	case a.none():
		it.Action = "keep"
		it.What = fmt.Sprintf("role %s is LOGIN REPLICATION with the configured password: left as it is", user)
		return workflow.PlanEntry{Summary: "the replication role is already right", Items: []workflow.PlanItem{it}, NoChange: true}
	default:
		var what []string
		if a.SetAttrs {
			what = append(what, "ALTER ROLE "+pgIdent(user)+" WITH "+roleAttrs)
		}
		if a.SetPassword {
			what = append(what, "set its password to the configured one (as a SCRAM verifier)")
		}
		it.Action = "set"
		it.What = strings.Join(what, "; ")
		it.Why = "sdr created this role for this pair; it gets LOGIN REPLICATION and nothing more"
	}
	return workflow.PlanEntry{Summary: it.What, Items: []workflow.PlanItem{it}}
}

// planRetainWAL: what 4_retain_wal would do with the slot and
// wal_keep_size (decideSlot, decideWalKeepRaise). The change record it
// would save goes to the plan's scratch record, where 9_finish's plan
// reads it.
func (e *Env) planRetainWAL(ctx context.Context, rc *workflow.RunContext) (workflow.PlanEntry, error) {
	p, _, err := e.findPrimary(ctx)
	if err != nil {
		return workflow.PlanEntry{}, err
	}
	slot := e.slotName()
	var entry workflow.PlanEntry
	err = e.withAdmin(ctx, p, func(ctx context.Context, c *pgx.Conn) error {
		o, err := querySlot(ctx, c, p.Name, slot)
		if err != nil {
			return err
		}
		act := decideSlot(o)
		if act == slotRefuseKind || act == slotRefuseLostActive {
			return slotRefusal(act, p.Name, slot, o)
		}
		wk, err := queryWalKeep(ctx, c)
		if err != nil {
			return fmt.Errorf("while reading wal_keep_size on %s: %w", p.Name, err)
		}
		prev, err := savedWalKeepChange(ctx, rc)
		if err != nil {
			return err
		}
		d := decideWalKeepRaise(wk, prev, raisedWalKeepSizeMB)
		if err := keepWalKeepRecord(ctx, rc, prev, d); err != nil {
			return err
		}
		if d.Raise {
			if _, err := rc.SaveOnce(ctx, valPlanWalKeepRaised, strconv.Itoa(d.Record.ToMB)); err != nil {
				return err
			}
		}
		entry = retainEntry(p.Name, slot, o, act, wk, d)
		return nil
	})
	return entry, err
}

// retainEntry describes 4_retain_wal's decisions.
func retainEntry(node, slot string, o slotObs, act slotAction, wk walKeepObs, d walKeepRaise) workflow.PlanEntry {
	s := workflow.PlanItem{Kind: "slot", Node: node, Name: slot}
	switch act {
	case slotCreate:
		s.Action, s.What = "create", fmt.Sprintf("create the permanent physical slot %s (pg_create_physical_replication_slot, reserving WAL now)", slot)
		s.Why = "the main standby's copy and its stream go through it, so the primary keeps the WAL they need"
	case slotRecreate:
		s.Action, s.What = "recreate", fmt.Sprintf("drop slot %s and create it again: it has lost WAL (wal_status lost), so no copy can stream through it", slot)
		s.Why = "the standby side then needs a new copy"
	default:
		s.Action, s.What = "keep", fmt.Sprintf("slot %s exists (physical, wal_status %s): kept", slot, orNone(o.WalStatus))
	}
	w := workflow.PlanItem{Kind: "setting", Node: node, Name: "wal_keep_size", Old: wk.String(), Why: d.Why}
	if d.Raise {
		w.Action, w.New = "set", fmt.Sprintf("%d MB", d.Record.ToMB)
		w.Where = "ALTER SYSTEM (postgresql.auto.conf on " + node + "), then pg_reload_conf()"
		w.What = fmt.Sprintf("raise wal_keep_size from %s to %d MB while the copy is made, recording the change (9_finish puts it back)", wk, d.Record.ToMB)
	} else {
		w.Action, w.What = "keep", "wal_keep_size stays "+wk.String()
	}
	e := workflow.PlanEntry{Summary: s.What + "; " + w.What, Items: []workflow.PlanItem{s, w}, NoChange: act == slotKeep && !d.Raise}
	return e
}

// planOpenAccess: where 5_open_access would put sdr's pg_hba.conf block
// on each primary-cluster node, with its exact lines (placeHBABlock).
func (e *Env) planOpenAccess(ctx context.Context, rc *workflow.RunContext) (workflow.PlanEntry, error) {
	lines := hbaLines(e.Config, e.Config.Standby.Nodes)
	var hosts []string
	for _, n := range e.Config.Standby.Nodes {
		hosts = append(hosts, n.Host)
	}
	conns := hbaConns(e.Config.Replication.User, e.Config.Postgres.Database, hosts)
	nodes := e.primaryNodes()
	items := make([]workflow.PlanItem, len(nodes))
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
			place, err := placeHBABlock(file+" on "+n.Name, old, e.hbaMarker(), conns, features(versionOf(c)).hbaSyntax())
			if err != nil {
				return err
			}
			changed := cluster.InsertBlockBefore(old, e.hbaMarker(), lines, place.Before) != old
			items[indexOf(nodes, n)] = hbaInsertItem(n.Name, file, old, e.hbaMarker(), lines, place, changed)
			return nil
		})
	})
	if err != nil {
		return workflow.PlanEntry{}, err
	}
	entry := workflow.PlanEntry{Items: items, NoChange: true}
	for _, it := range items {
		if it.Action != "keep" {
			entry.NoChange = false
		}
	}
	entry.Summary = fmt.Sprintf("sdr's pg_hba.conf block (%d lines) on %d primary-cluster node(s), then reload", len(lines), len(nodes))
	if entry.NoChange {
		entry.Summary = "sdr's pg_hba.conf block is already in place on every primary-cluster node (reloaded all the same)"
	}
	return entry, nil
}

// hbaInsertItem says where sdr's block goes in a node's pg_hba.conf.
func hbaInsertItem(node, file, content, marker string, lines []string, place hbaPlacement, changed bool) workflow.PlanItem {
	it := workflow.PlanItem{Kind: "hba", Node: node, Name: file, Lines: cluster.BlockText(marker, lines)}
	all := hbaLinesOf(content)
	switch {
	case place.Exists && !changed:
		it.Action, it.Where = "keep", fmt.Sprintf("%s, where it is already", file)
		it.What = "sdr's block is already there with these lines; the file is not written"
	case place.Exists:
		it.Action, it.Where = "replace", fmt.Sprintf("%s, in place of sdr's block (# BEGIN sdr %s, line %d)", file, marker, blockLine(all, marker))
		it.What = "sdr's block is rewritten with these lines; every other line stays"
	case place.Before > 0 && place.Before <= len(all):
		it.Action = "insert"
		it.Where = fmt.Sprintf("%s, before line %d (%s)", file, place.Before, strings.TrimSpace(all[place.Before-1]))
		it.What = "a new block, placed before the first line that could match these connections and would not let them in " +
			"the same way (PostgreSQL uses the first matching line); every other line stays"
	default:
		it.Action, it.Where = "insert", fmt.Sprintf("%s, at the end (after line %d)", file, len(strings.Split(strings.TrimRight(content, "\n"), "\n")))
		it.What = "a new block at the end: no earlier line shadows it; every other line stays"
	}
	if it.Action != "keep" {
		it.Why = "replication (and the check database) for replication.user from each standby node's address, with scram-sha-256; pg_reload_conf() follows"
	}
	return it
}

// blockLine is the 1-based line of the first BEGIN of marker's block (0 when none).
func blockLine(lines []string, marker string) int {
	if spans := hbaBlockSpans(lines, marker); len(spans) > 0 {
		return spans[0][0] + 1
	}
	return 0
}

// planWaitStandby: 8_wait_standby waits; it says for what, and how the
// slot's walsender looks now (decideStreamReady on the step's own probe).
func (e *Env) planWaitStandby(ctx context.Context, rc *workflow.RunContext) (workflow.PlanEntry, error) {
	p, _, err := e.findPrimary(ctx)
	if err != nil {
		return workflow.PlanEntry{}, err
	}
	app, slot := cluster.AppName(e.Config.Name, e.Config.Standby.Main), e.slotName()
	it := workflow.PlanItem{Kind: "process", Action: "wait", Node: e.Config.Standby.Main, Name: app,
		What: fmt.Sprintf("wait up to %s until the main standby's walsender (application_name %s) streams through slot %s, started after this run's "+
			"2_check_cluster (the stream of the copy the standby side makes now)", e.runWait(), app, slot)}
	entry := workflow.PlanEntry{Summary: it.What, Items: []workflow.PlanItem{it}}
	var o walsenderObs
	if err := e.withAdmin(ctx, p, func(ctx context.Context, c *pgx.Conn) error {
		var err error
		o, err = queryWalsender(ctx, c, slot)
		return err
	}); err != nil {
		return workflow.PlanEntry{}, fmt.Errorf("while looking at slot %s on %s: %w", slot, p.Name, err)
	}
	if !o.SlotExists {
		entry.Notes = append(entry.Notes, "slot "+slot+" does not exist yet: 4_retain_wal creates it; the standby side's start makes the copy "+
			"that streams through it (run it too, at the same time or after this one)")
		return entry, nil
	}
	var since time.Time
	if v, ok, err := rc.Value(ctx, valWaitSince); err != nil {
		return workflow.PlanEntry{}, err
	} else if ok {
		if since, err = time.Parse(time.RFC3339Nano, v); err != nil {
			return workflow.PlanEntry{}, permanent(fmt.Errorf("saved %s %q is not a time: %w; rerun with --restart", valWaitSince, v, err))
		}
	}
	switch err := decideStreamReady(o, app, slot, since); {
	case err == nil:
		entry.Notes = append(entry.Notes, "the main standby streams through the slot already, on a walsender started after this run's pass began: the step ends at once")
	case workflow.IsPermanent(err):
		return workflow.PlanEntry{}, err
	default:
		entry.Notes = append(entry.Notes, "now: "+err.Error()+"; the step waits for the standby side's copy to stream")
	}
	return entry, nil
}

// runWait says how long a run waits where a plan does not: its --timeout,
// by default timeouts.wait.
func (e *Env) runWait() string {
	return fmt.Sprintf("the run's --timeout (default timeouts.wait: %s)", e.Config.Timeouts.Wait.Duration)
}

// planFinishPrimary: what 9_finish would do with wal_keep_size
// (decideWalKeepRestore on the record 4_retain_wal keeps).
func (e *Env) planFinishPrimary(ctx context.Context, rc *workflow.RunContext) (workflow.PlanEntry, error) {
	return e.planRestoreWalKeep(ctx, rc, rc)
}

// planRestoreWalKeep plans restoreWalKeep from the record in vals: on
// the value 4_retain_wal's plan would leave when it would raise it (see
// valPlanWalKeepRaised), else on the live value.
func (e *Env) planRestoreWalKeep(ctx context.Context, rc *workflow.RunContext, vals savedValues) (workflow.PlanEntry, error) {
	rec, _, err := walKeepRecord(ctx, vals)
	if err != nil {
		return workflow.PlanEntry{}, err
	}
	if rec == nil {
		d := decideWalKeepRestore(walKeepObs{}, nil)
		return workflow.PlanEntry{Summary: "wal_keep_size left as it is: " + d.Why, NoChange: true}, nil
	}
	p, _, err := e.findPrimary(ctx)
	if err != nil {
		return workflow.PlanEntry{}, err
	}
	var o walKeepObs
	var notes []string
	if _, raised, err := rc.Value(ctx, valPlanWalKeepRaised); err != nil {
		return workflow.PlanEntry{}, err
	} else if raised {
		o = walKeepObs{MB: rec.ToMB, Source: "configuration file", SourceFile: "postgresql.auto.conf"}
		notes = append(notes, fmt.Sprintf("decided on the %d MB that 4_retain_wal sets; when the step runs it decides again on the live value, "+
			"and leaves wal_keep_size alone if someone changed it meanwhile", rec.ToMB))
	} else if err := e.withAdmin(ctx, p, func(ctx context.Context, c *pgx.Conn) error {
		var err error
		o, err = queryWalKeep(ctx, c)
		return err
	}); err != nil {
		return workflow.PlanEntry{}, fmt.Errorf("while reading wal_keep_size on %s: %w", p.Name, err)
	}
	d := decideWalKeepRestore(o, rec)
	it := workflow.PlanItem{Kind: "setting", Node: p.Name, Name: "wal_keep_size", Old: o.String(), Why: d.Why}
	if d.SQL == "" {
		it.Action, it.What = "keep", "wal_keep_size left as it is: "+d.Why
		return workflow.PlanEntry{Summary: it.What, Items: []workflow.PlanItem{it}, Notes: notes, NoChange: true}, nil
	}
	it.Action, it.Where = "set", d.SQL+" on "+p.Name+", then pg_reload_conf()"
	if rec.FromAuto {
		it.New = fmt.Sprintf("%d MB", rec.FromMB)
	} else {
		it.Action = "reset"
		it.New = fmt.Sprintf("the value of postgresql.conf or the default (%d MB before sdr's raise)", rec.FromMB)
	}
	it.What = "put wal_keep_size back: " + d.Why
	return workflow.PlanEntry{Summary: it.What, Items: []workflow.PlanItem{it}, Notes: notes}, nil
}
