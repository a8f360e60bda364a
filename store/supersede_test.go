package store

import (
	"context"
	"reflect"
	"testing"

	"github.com/pgsdr/sdr/workflow"
)

// undoWorkflow is a three-step workflow like stop: a check step, a step
// that changes something (state stop), a last step that sets normal.
func undoWorkflow(fx effects) workflow.Workflow {
	wf := workflow.Workflow{Action: "undo", Role: workflow.RolePrimary}
	for i, n := range []string{"1_look", "2_undo", "3_finish"} {
		n := n
		s := workflow.Step{Num: i + 1, Name: n, Roles: []workflow.Role{workflow.RolePrimary},
			Run: func(ctx context.Context, rc *workflow.RunContext) error {
				fx["undo "+n]++
				// Consume what the other workflow saved.
				return rc.ForgetOf(ctx, "test/primary", "first-run-of-2_two")
			}}
		switch i {
		case 0:
			s.CheckOnly, s.Run = true, func(context.Context, *workflow.RunContext) error { fx["undo "+n]++; return nil }
		case 1:
			s.OnStart, s.OnFail = workflow.StateStop, workflow.StateStopFail
		case 2:
			s.OnStart, s.OnDone, s.OnFail = workflow.StateStop, workflow.StateNormal, workflow.StateStopFail
		}
		wf.Steps = append(wf.Steps, s)
	}
	return wf
}

func TestOnBoltAStartRunsFromStepOneAfterAStop(t *testing.T) {
	db, fx := openTemp(t, "p"), effects{}
	ctx, r := context.Background(), runner(db)
	start, undo := testWorkflow(fx, "", false), undoWorkflow(fx)
	inputs := map[string]string{"x": "1"}
	if _, err := r.Run(ctx, start, inputs, workflow.Options{}); err != nil {
		t.Fatal(err)
	}
	if res, err := r.Run(ctx, start, inputs, workflow.Options{}); err != nil || !res.AlreadyComplete {
		t.Fatalf("second start: %+v %v, want already complete", res, err)
	}
	if _, err := r.Run(ctx, undo, inputs, workflow.Options{}); err != nil {
		t.Fatal(err)
	}
	side, err := db.LoadSide(ctx, workflow.RolePrimary)
	if err != nil {
		t.Fatal(err)
	}
	if side.State != workflow.StateNormal || side.ChangedBy != "undo/primary" {
		t.Fatalf("side after undo %+v, want normal, changed by undo/primary", side)
	}
	rec, err := db.Load(ctx, start.Key())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rec.Values["first-run-of-2_two"]; ok {
		t.Error("undo did not consume the start's saved value")
	}
	if rec.SupersededBy(side) != "undo/primary" {
		t.Errorf("start record superseded by %q", rec.SupersededBy(side))
	}
	// A changed input would be refused on a current record; after the
	// undo, the start takes it and runs every step again.
	res, err := r.Run(ctx, start, map[string]string{"x": "2"}, workflow.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.AlreadyComplete || !reflect.DeepEqual(res.Ran, names) || res.SupersededBy != "undo/primary" {
		t.Errorf("start after undo: %+v, want every step run", res)
	}
	for _, n := range names {
		if fx[n] != 2 {
			t.Errorf("%s ran %d times, want 2", n, fx[n])
		}
	}
	// And a new undo runs again instead of reporting complete.
	res, err = r.Run(ctx, undo, inputs, workflow.Options{})
	if err != nil || res.AlreadyComplete || fx["undo 2_undo"] != 2 {
		t.Errorf("second undo: %+v %v, undo ran %d times", res, err, fx["undo 2_undo"])
	}
	snap, err := db.Snapshot(0)
	if err != nil {
		t.Fatal(err)
	}
	var states []workflow.State
	for _, h := range snap.History {
		states = append(states, h.To)
	}
	want := []workflow.State{workflow.StateNormal, workflow.StateRestore, workflow.StateRecovery, workflow.StateStop, workflow.StateNormal,
		workflow.StateRestore, workflow.StateRecovery, workflow.StateStop, workflow.StateNormal}
	if !reflect.DeepEqual(states, want) {
		t.Errorf("history %v, want %v", states, want)
	}
}
