package steps

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

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

// TestSideLockedWrappers: the last check runs on the caller's goroutine (a
// panic reaches the runner's recover), a refusal ends a check that waits
// and is returned instead of its error, and a changing step does not run
// once the lock is refused.
func TestSideLockedWrappers(t *testing.T) {
	sb := []workflow.Role{workflow.RoleStandby}
	build := func(e *Env, check, change func(context.Context, *workflow.RunContext) error) workflow.Workflow {
		return e.sideLocked(workflow.Workflow{Action: "t", Role: workflow.RoleStandby, Steps: []workflow.Step{
			{Num: 1, Name: "1_check", Roles: sb, CheckOnly: true, Run: check},
			{Num: 2, Name: "2_change", Roles: sb, Run: change}}})
	}
	pending := func(err error, after time.Duration) *Env {
		e := &Env{}
		done := make(chan struct{})
		e.side.done = done
		time.AfterFunc(after, func() {
			e.side.mu.Lock()
			e.side.err = err
			e.side.mu.Unlock()
			close(done)
		})
		return e
	}
	refusal := fmt.Errorf("%w (cluster dc2): held by sdr start/standby", ErrSideLocked)

	t.Run("a panic in the check reaches the caller", func(t *testing.T) {
		wf := build(pending(nil, 20*time.Millisecond), func(context.Context, *workflow.RunContext) error { panic("boom") }, nil)
		got := func() (v any) {
			defer func() { v = recover() }()
			_ = wf.Steps[0].Run(context.Background(), &workflow.RunContext{})
			return nil
		}()
		if got != "boom" {
			t.Fatalf("recovered %v, want the check's panic", got)
		}
	})
	t.Run("a refusal ends a waiting check", func(t *testing.T) {
		wf := build(pending(refusal, 20*time.Millisecond), func(ctx context.Context, _ *workflow.RunContext) error {
			select {
			case <-ctx.Done():
				return errors.New("check cut short")
			case <-time.After(10 * time.Second):
				return errors.New("check not cut short")
			}
		}, nil)
		start := time.Now()
		err := wf.Steps[0].Run(context.Background(), &workflow.RunContext{})
		if !errors.Is(err, ErrSideLocked) || time.Since(start) > 5*time.Second {
			t.Fatalf("got %v after %s, want the refusal at once", err, time.Since(start))
		}
	})
	t.Run("the check's own error when the lock is taken", func(t *testing.T) {
		bad := errors.New("dc2-b lacks tar")
		wf := build(pending(nil, 20*time.Millisecond), func(context.Context, *workflow.RunContext) error { return bad }, nil)
		if err := wf.Steps[0].Run(context.Background(), &workflow.RunContext{}); err != bad {
			t.Fatalf("got %v, want %v", err, bad)
		}
	})
	t.Run("a changing step does not run after a refusal", func(t *testing.T) {
		ran := false
		wf := build(pending(refusal, 0), nil, func(context.Context, *workflow.RunContext) error { ran = true; return nil })
		time.Sleep(10 * time.Millisecond)
		if err := wf.Steps[1].Run(context.Background(), &workflow.RunContext{}); !errors.Is(err, ErrSideLocked) || ran {
			t.Fatalf("got %v, ran %v; want the refusal and the step not run", err, ran)
		}
	})
}
