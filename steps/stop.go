package steps

import (
	"context"

	"github.com/pgsdr/sdr/workflow"
)

// The stop workflow takes one side's half of the DR pair apart, in
// numbered steps on the same engine as start, with its own record
// (stop/primary, stop/standby) in the side's state file.
//
//   - Primary side: sdr's pg_hba.conf block goes from every primary-cluster
//     node, the stream to the DR side ends and this pair's slots are
//     dropped, wal_keep_size is put back if an unfinished start left sdr's
//     raise in effect, and, only with --drop-role, the replication role is
//     dropped when sdr created it for this pair.
//   - DR side: nothing is asked of the primary side's PostgreSQL (its
//     nodes' data directories are compared over SSH where reachable, to
//     refuse a DR entry that is in truth a primary-cluster node). Each DR node
//     loses its upstream (primary_conninfo, primary_slot_name and the other
//     replication settings leave sdr's block in postgresql.auto.conf;
//     standby.signal stays), sdr's pg_hba.conf block goes, running nodes
//     reload, the cascades' slots on the main standby are dropped, and the
//     password file and prepared settings go. Each node is left an
//     independent read-only standby (in recovery, not streaming). sdr
//     stop never promotes: that is failover's job.
//
// Each step tolerates what is already gone, and checks the live nodes
// before it acts. The state is stop while steps 3-7 run, stop_fail when
// one fails, and normal once 7_finish has checked that nothing of the pair
// is left. The first step that changes something marks the side as
// changed by stop (workflow.Side.ChangedBy), which supersedes the start
// record: a later start runs from step 1.

// StopOptions are the operator's choices for a stop.
type StopOptions struct {
	// DropRole drops replication.user on the primary when sdr created it
	// for this pair (stop --drop-role). By default the role stays: other
	// things may log in with it.
	DropRole bool
}

// stopRun is one stop: the environment and the operator's choices.
type stopRun struct {
	e    *Env
	opts StopOptions
}

// startKey is the record of the start that stop undoes on role's side.
func startKey(role workflow.Role) string { return "start/" + string(role) }

func stopSteps(s *stopRun) []workflow.Step {
	changes := func(st workflow.Step) workflow.Step {
		st.OnStart, st.OnFail = workflow.StateStop, workflow.StateStopFail
		return st
	}
	finish := func(st workflow.Step) workflow.Step {
		st = changes(st)
		st.OnDone = workflow.StateNormal
		return st
	}
	return []workflow.Step{
		{Num: 1, Name: "1_prepare", Short: "validate the config and record this run's inputs", Roles: both, CheckOnly: true, Run: s.e.prepare},
		{Num: 2, Name: "2_check_cluster", Short: "check the primary cluster: SSH, PostgreSQL up, one primary, no slot of sdr's that its own standby uses; with --drop-role, that sdr created the role", Roles: primaryOnly, CheckOnly: true, Run: s.checkPrimary},
		{Num: 2, Name: "2_check_cluster", Short: "check the DR nodes over SSH: none is a primary-cluster node's data directory or runs as a primary", Roles: standbyOnly, CheckOnly: true, Run: s.checkStandby},
		changes(workflow.Step{Num: 3, Name: "3_close_access", Short: "remove sdr's pg_hba.conf block from every primary-cluster node; reload and check the file", Roles: primaryOnly, Run: s.closeAccess, Plan: s.planCloseAccess}),
		changes(workflow.Step{Num: 3, Name: "3_detach", Short: "take the replication settings and sdr's pg_hba.conf block off every DR node; reload: each stays a standby without upstream", Roles: standbyOnly, Run: s.detach, Plan: s.planDetach}),
		changes(workflow.Step{Num: 4, Name: "4_drop_slots", Short: "end the stream to the DR side and drop this pair's slots on the primary-cluster nodes", Roles: primaryOnly, Run: s.dropPrimarySlots, Plan: s.planDropPrimarySlots}),
		changes(workflow.Step{Num: 4, Name: "4_drop_slots", Short: "drop the cascades' slots on the DR nodes", Roles: standbyOnly, Run: s.dropStandbySlots, Plan: s.planDropStandbySlots}),
		changes(workflow.Step{Num: 5, Name: "5_restore_settings", Short: "put wal_keep_size back if an unfinished start left sdr's raise in effect", Roles: primaryOnly, Run: s.restoreSettings, Plan: s.planRestoreSettings}),
		changes(workflow.Step{Num: 5, Name: "5_remove_files", Short: "remove the replication password file and the prepared settings from every DR node", Roles: standbyOnly, Run: s.removeFiles, Plan: s.planRemoveFiles}),
		changes(workflow.Step{Num: 6, Name: "6_drop_role", Short: "with --drop-role, drop replication.user if sdr created it for this pair; otherwise leave it", Roles: primaryOnly, Run: s.dropRole, Plan: s.planDropRole}),
		finish(workflow.Step{Num: 7, Name: "7_finish", Short: "check that no slot, pg_hba.conf block or setting of the pair is left", Roles: primaryOnly, Run: s.finishPrimary}),
		finish(workflow.Step{Num: 7, Name: "7_finish", Short: "check that every DR node is left without upstream, slots, password file or sdr settings", Roles: standbyOnly, Run: s.finishStandby}),
	}
}

// Stop returns the stop workflow of role.
func Stop(role workflow.Role, e *Env, opts StopOptions) workflow.Workflow {
	return e.sideLocked(forRole("stop", role, stopSteps(&stopRun{e: e, opts: opts})))
}

// StopHelp lists the stop steps of both roles, for --help.
func StopHelp() string {
	return stepsHelp(func(role workflow.Role) workflow.Workflow { return Stop(role, &Env{}, StopOptions{}) })
}

// startValues are the values start/<role> saved, read and consumed by a
// stop step through the start record.
type startValues struct {
	rc  *workflow.RunContext
	key string
}

func (v startValues) Value(ctx context.Context, name string) (string, bool, error) {
	return v.rc.ValueOf(ctx, v.key, name)
}

func (v startValues) Forget(ctx context.Context, name string) error {
	return v.rc.ForgetOf(ctx, v.key, name)
}
