package steps

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/pgsdr/sdr/workflow"
)

func TestStart(t *testing.T) {
	tests := []struct {
		role    workflow.Role
		names   []string
		skipped []string // steps kept for the other role only, recorded as skipped
	}{
		{
			role: workflow.RolePrimary,
			names: []string{"1_prepare", "2_check_cluster", "3_prepare_replication", "4_retain_wal", "5_open_access",
				"6_set_guc", "7_build_standby", "8_wait_standby", "9_finish"},
			skipped: []string{"6_set_guc", "7_build_standby"},
		},
		{
			role: workflow.RoleStandby,
			names: []string{"1_prepare", "2_check_cluster", "3_prepare_replication", "4_retain_wal", "5_stop_cluster",
				"6_set_guc", "7_build_standby", "8_start_cluster", "9_finish"},
			skipped: []string{"4_retain_wal"},
		},
	}
	for _, tt := range tests {
		t.Run(string(tt.role), func(t *testing.T) {
			wf := Start(tt.role, &Env{})
			if wf.Action != "start" || wf.Role != tt.role {
				t.Errorf("workflow is %s for %s, want start for %s", wf.Action, wf.Role, tt.role)
			}
			if err := wf.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if len(wf.Steps) != len(tt.names) {
				t.Fatalf("%d steps, want %d: %v", len(wf.Steps), len(tt.names), stepNames(wf))
			}
			for i, s := range wf.Steps {
				if s.Num != i+1 {
					t.Errorf("step %d is numbered %d", i+1, s.Num)
				}
				if !strings.HasPrefix(s.Name, fmt.Sprintf("%d_", s.Num)) {
					t.Errorf("step %d is named %q, want %d_<name>", s.Num, s.Name, s.Num)
				}
				if s.Name != tt.names[i] {
					t.Errorf("step %d is %s, want %s", s.Num, s.Name, tt.names[i])
				}
				if s.Short == "" {
					t.Errorf("step %s has no description", s.Name)
				}
				if s.Run == nil {
					t.Errorf("step %s has no Run", s.Name)
				}
				wantApplies := !slices.Contains(tt.skipped, s.Name)
				if got := s.AppliesTo(tt.role); got != wantApplies {
					t.Errorf("step %s AppliesTo(%s) = %v, want %v", s.Name, tt.role, got, wantApplies)
				}
			}
		})
	}
}

func TestStartStates(t *testing.T) {
	type states struct{ start, done, fail workflow.State }
	tests := []struct {
		role workflow.Role
		want map[string]states // steps not listed change no state
	}{
		{
			role: workflow.RolePrimary,
			want: map[string]states{
				"7_build_standby": {start: workflow.StateRestore, fail: workflow.StateRestoreFail},
				"8_wait_standby":  {start: workflow.StateFullBackup, done: workflow.StateArchive, fail: workflow.StateBackupFail},
			},
		},
		{
			role: workflow.RoleStandby,
			want: map[string]states{
				"7_build_standby": {start: workflow.StateRestore, fail: workflow.StateRestoreFail},
				"8_start_cluster": {done: workflow.StateRecovery, fail: workflow.StateRecoveryFail},
			},
		},
	}
	for _, tt := range tests {
		t.Run(string(tt.role), func(t *testing.T) {
			for _, s := range Start(tt.role, &Env{}).Steps {
				got := states{s.OnStart, s.OnDone, s.OnFail}
				if got != tt.want[s.Name] {
					t.Errorf("step %s states (start, done, fail) = %v, want %v", s.Name, got, tt.want[s.Name])
				}
			}
		})
	}
}

func TestStartHelp(t *testing.T) {
	help := StartHelp()
	for _, role := range []workflow.Role{workflow.RolePrimary, workflow.RoleStandby} {
		if !strings.Contains(help, "role "+string(role)) {
			t.Errorf("help does not mention role %s:\n%s", role, help)
		}
		for _, s := range Start(role, &Env{}).Steps {
			if !strings.Contains(help, s.Name) {
				t.Errorf("help does not mention %s:\n%s", s.Name, help)
			}
		}
	}
	for _, s := range startSteps(&Env{}) {
		if !strings.Contains(help, s.Short) {
			t.Errorf("help does not describe %s (%q):\n%s", s.Name, s.Short, help)
		}
	}
}

func stepNames(wf workflow.Workflow) []string {
	var out []string
	for _, s := range wf.Steps {
		out = append(out, s.Name)
	}
	return out
}
