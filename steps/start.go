package steps

import (
	"fmt"
	"strings"

	"github.com/pgsdr/sdr/workflow"
)

var (
	both        = []workflow.Role{workflow.RolePrimary, workflow.RoleStandby}
	primaryOnly = []workflow.Role{workflow.RolePrimary}
	standbyOnly = []workflow.Role{workflow.RoleStandby}
)

// startSteps is the start workflow as data. Where the two roles do
// different things under one number, there are two entries with the same
// number and name and a Roles list each; Start picks the entry for its role.
func startSteps(e *Env) []workflow.Step {
	return []workflow.Step{
		{Num: 1, Name: "1_prepare", Short: "validate the config and record this run's inputs", Roles: both, CheckOnly: true, Run: e.prepare},
		{Num: 2, Name: "2_check_cluster", Short: "check the primary cluster: SSH, PostgreSQL up, one primary, WAL settings, version", Roles: primaryOnly, CheckOnly: true, Run: e.checkPrimaryCluster},
		{Num: 2, Name: "2_check_cluster", Short: "check the standby nodes (binaries, configuration, service manager, data directories) and reach the remote primary with the replication user", Roles: standbyOnly, CheckOnly: true, Run: e.checkStandbyCluster},
		{Num: 3, Name: "3_prepare_replication", Short: "create or refresh the replication role (LOGIN REPLICATION only)", Roles: primaryOnly, Run: e.prepareReplicationPrimary, Plan: e.planPrepareReplicationPrimary},
		{Num: 3, Name: "3_prepare_replication", Short: "drop this pair's stale slots and install the replication password file on the standby nodes", Roles: standbyOnly, Run: e.prepareReplicationStandby, Plan: e.planPrepareReplicationStandby},
		{Num: 4, Name: "4_retain_wal", Short: "create the main standby's replication slot; raise wal_keep_size if lower, recording the change", Roles: primaryOnly, Run: e.retainWAL, Plan: e.planRetainWAL},
		{Num: 5, Name: "5_open_access", Short: "add sdr's pg_hba.conf block for the standby nodes on every primary-cluster node", Roles: primaryOnly, Run: e.openAccess, Plan: e.planOpenAccess},
		{Num: 5, Name: "5_stop_cluster", Short: "stop every standby node cleanly through its service manager", Roles: standbyOnly, Run: e.stopStandbyCluster, Plan: e.planStopStandbyCluster},
		{Num: 6, Name: "6_set_guc", Short: "prepare each standby node's settings (primary_conninfo, slot, timeline)", Roles: standbyOnly, Run: e.setGUC, Plan: e.planSetGUC},
		{Num: 7, Name: "7_build_standby", Short: "rebuild the main standby from the primary, then the cascade standbys from it, or with copy.fan_out every node from one copy of the primary (each copy proven to start with the node's configuration before it is swapped in)", Roles: standbyOnly,
			OnStart: workflow.StateRestore, OnFail: workflow.StateRestoreFail, Run: e.buildStandby, Plan: e.planBuildStandby},
		{Num: 8, Name: "8_wait_standby", Short: "wait until the main standby streams its new copy from the primary through sdr's slot", Roles: primaryOnly,
			OnStart: workflow.StateFullBackup, OnDone: workflow.StateArchive, OnFail: workflow.StateBackupFail, Run: e.waitStandby, Plan: e.planWaitStandby},
		{Num: 8, Name: "8_start_cluster", Short: "start every standby node through its service manager and check that each streams from its upstream", Roles: standbyOnly,
			OnDone: workflow.StateRecovery, OnFail: workflow.StateRecoveryFail, Run: e.startStandbyCluster, Plan: e.planStartStandbyCluster},
		{Num: 9, Name: "9_finish", Short: "put wal_keep_size back if sdr raised it and nobody changed it since (the slot keeps WAL now)", Roles: primaryOnly, Run: e.finishPrimary, Plan: e.planFinishPrimary},
		{Num: 9, Name: "9_finish", Short: "remove the saved copies and the old data directories", Roles: standbyOnly, Run: e.finishStandby, Plan: e.planFinishStandby},
	}
}

// Start returns the start workflow of role.
func Start(role workflow.Role, e *Env) workflow.Workflow {
	return e.sideLocked(forRole("start", role, startSteps(e)))
}

// forRole picks role's workflow out of an action's step list. Where the
// two roles do different things under one number, the list has an entry
// per role; a number with nothing to do for role keeps the other role's
// entry, which the runner records as skipped.
func forRole(action string, role workflow.Role, all []workflow.Step) workflow.Workflow {
	wf := workflow.Workflow{Action: action, Role: role}
	for i, s := range all {
		if s.AppliesTo(role) {
			wf.Steps = append(wf.Steps, s)
			continue
		}
		// Keep one entry per number: a step for the other role only is
		// kept (and recorded as skipped) when no entry of this role has its number.
		dup := false
		for j, o := range all {
			if j != i && o.Num == s.Num && o.AppliesTo(role) {
				dup = true
			}
		}
		if !dup && (len(wf.Steps) == 0 || wf.Steps[len(wf.Steps)-1].Num != s.Num) {
			wf.Steps = append(wf.Steps, s)
		}
	}
	return wf
}

// StartHelp lists the steps of both roles, for --help.
func StartHelp() string {
	return stepsHelp(func(role workflow.Role) workflow.Workflow { return Start(role, &Env{}) })
}

func stepsHelp(wf func(workflow.Role) workflow.Workflow) string {
	var b strings.Builder
	for _, role := range both {
		fmt.Fprintf(&b, "  role %s:\n", role)
		for _, s := range wf(role).Steps {
			what := s.Short
			if !s.AppliesTo(role) {
				what = "(skipped for this role)"
			}
			fmt.Fprintf(&b, "    %-24s %s\n", s.Name, what)
		}
	}
	return b.String()
}
