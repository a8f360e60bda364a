package steps

import (
	"testing"

	"github.com/pgsdr/sdr/workflow"
)

// TestSideWaits: in every DR-side workflow, the lock is waited for by the
// end of the last check before the first step that changes something, and
// before each such step; checks before that do not wait.
func TestSideWaits(t *testing.T) {
	e := &Env{}
	sb := []workflow.Role{workflow.RoleStandby}
	name := map[sideWait]string{sideWaitNone: "none", sideWaitAfter: "after", sideWaitBefore: "before"}
	tests := []struct {
		name string
		wf   workflow.Workflow
		want map[string]sideWait // steps not named: before
	}{
		{"start, standby", Start(workflow.RoleStandby, e), map[string]sideWait{"1_prepare": sideWaitNone, "2_check_cluster": sideWaitAfter, "4_retain_wal": sideWaitNone}},
		{"stop, standby", Stop(workflow.RoleStandby, e, StopOptions{}), map[string]sideWait{"1_prepare": sideWaitNone, "2_check_cluster": sideWaitAfter, "6_drop_role": sideWaitNone}},
		{"failover", Failover(e), map[string]sideWait{"1_prepare": sideWaitNone, "2_check_cluster": sideWaitAfter}},
		{"switchover, promote half", Switchover(workflow.RoleStandby, e, SwitchoverOptions{}), map[string]sideWait{"1_prepare": sideWaitNone, "2_check_cluster": sideWaitAfter}},
		{"a workflow of checks only", workflow.Workflow{Action: "t", Role: workflow.RoleStandby, Steps: []workflow.Step{
			{Num: 1, Name: "1_a", Roles: sb, CheckOnly: true}, {Num: 2, Name: "2_b", Roles: sb, CheckOnly: true}}},
			map[string]sideWait{"1_a": sideWaitNone, "2_b": sideWaitAfter}},
		{"a check after a change", workflow.Workflow{Action: "t", Role: workflow.RoleStandby, Steps: []workflow.Step{
			{Num: 1, Name: "1_a", Roles: sb, CheckOnly: true}, {Num: 2, Name: "2_b", Roles: sb}, {Num: 3, Name: "3_c", Roles: sb, CheckOnly: true}}},
			map[string]sideWait{"1_a": sideWaitAfter, "3_c": sideWaitAfter}},
		{"a step of the other role between two checks", workflow.Workflow{Action: "t", Role: workflow.RoleStandby, Steps: []workflow.Step{
			{Num: 1, Name: "1_a", Roles: sb, CheckOnly: true}, {Num: 2, Name: "2_p", Roles: []workflow.Role{workflow.RolePrimary}},
			{Num: 3, Name: "3_c", Roles: sb, CheckOnly: true}, {Num: 4, Name: "4_d", Roles: sb}}},
			map[string]sideWait{"1_a": sideWaitNone, "2_p": sideWaitNone, "3_c": sideWaitAfter}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := sideWaits(tc.wf)
			for i, s := range tc.wf.Steps {
				want, ok := tc.want[s.Name]
				if !ok {
					want = sideWaitBefore
				}
				if got[i] != want {
					t.Errorf("%s: waits %s, want %s", s.Name, name[got[i]], name[want])
				}
			}
		})
	}
}
