package workflow

import (
	"context"
	"errors"
	"reflect"
	"testing"
)

// twoActions builds two workflows of one role that share a side, like
// start and stop: "make" (five steps) and "undo" (three steps). The first
// step of each only checks. checkErr makes undo's check step fail.
func twoActions(fx *effects, checkErr error) (mk, undo Workflow) {
	mk = fiveSteps(fx, nil)
	mk.Action = "make"
	mk.Steps[0].CheckOnly = true
	undo = Workflow{Action: "undo", Role: RolePrimary}
	for i, name := range []string{"1_look", "2_undo", "3_finish"} {
		name := name
		s := Step{Num: i + 1, Name: name, Roles: []Role{RolePrimary}, Run: func(context.Context, *RunContext) error {
			fx.add("undo " + name)
			return nil
		}}
		if i == 0 {
			s.CheckOnly = true
			s.Run = func(context.Context, *RunContext) error {
				fx.add("undo " + name)
				return checkErr
			}
		} else {
			s.OnStart, s.OnFail = StateStop, StateStopFail
		}
		if i == 2 {
			s.OnDone = StateNormal
		}
		undo.Steps = append(undo.Steps, s)
	}
	return mk, undo
}

var inputsB = map[string]string{"pair": "p1", "host": "b"}

func TestSupersededRecordStartsAtStepOne(t *testing.T) {
	errLook := &Permanent{Err: errors.New("refused by a check")}
	tests := []struct {
		name     string
		undoErr  error             // undo's check step fails with it
		inputs   map[string]string // of the second run of make
		wantErr  error             // of the second run of make
		wantRan  []string          // by the second run of make
		wantDone bool              // the second run of make reports already complete
		wantBy   string
	}{
		{name: "after a finished undo, make runs every step again", inputs: inputsA, wantRan: stepNames, wantBy: "undo/primary"},
		{name: "after a finished undo, make takes new inputs", inputs: inputsB, wantRan: stepNames, wantBy: "undo/primary"},
		{name: "an undo refused by a check step supersedes nothing", undoErr: errLook, inputs: inputsA, wantDone: true},
		{name: "an undo refused by a check step leaves the input check", undoErr: errLook, inputs: inputsB, wantErr: ErrInputsChanged},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, fx := newFakeStore(), &effects{}
			mk, undo := twoActions(fx, tc.undoErr)
			r := newRunner(st)
			if _, err := r.Run(context.Background(), mk, inputsA, Options{}); err != nil {
				t.Fatalf("make: %v", err)
			}
			_, err := r.Run(context.Background(), undo, inputsA, Options{})
			if (err != nil) != (tc.undoErr != nil) {
				t.Fatalf("undo: %v", err)
			}
			res, err := r.Run(context.Background(), mk, tc.inputs, Options{})
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("second make: err %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr != nil {
				return
			}
			if res.AlreadyComplete != tc.wantDone || res.SupersededBy != tc.wantBy {
				t.Errorf("second make: already complete %v superseded by %q, want %v %q", res.AlreadyComplete, res.SupersededBy, tc.wantDone, tc.wantBy)
			}
			if !reflect.DeepEqual(res.Ran, tc.wantRan) {
				t.Errorf("second make ran %v, want %v", res.Ran, tc.wantRan)
			}
			wantEffects := 1
			if len(tc.wantRan) > 0 {
				wantEffects = 2
			}
			if got := fx.get("3_three"); got != wantEffects {
				t.Errorf("3_three ran %d times, want %d", got, wantEffects)
			}
			rec := st.record(mk.Key())
			if !rec.Complete || rec.Step("3_three").Attempts != 1 && len(tc.wantRan) > 0 {
				t.Errorf("make record after the second run: complete %v, 3_three %+v", rec.Complete, rec.Step("3_three"))
			}
			if !reflect.DeepEqual(rec.Inputs, tc.inputs) {
				t.Errorf("recorded inputs %v, want %v", rec.Inputs, tc.inputs)
			}
			if side := st.side(RolePrimary); len(tc.wantRan) > 0 && side.ChangedBy != mk.Key() {
				t.Errorf("side changed by %q, want %q", side.ChangedBy, mk.Key())
			}
		})
	}
}

func TestUndoRecordIsSupersededByALaterMake(t *testing.T) {
	st, fx := newFakeStore(), &effects{}
	mk, undo := twoActions(fx, nil)
	r := newRunner(st)
	for i, run := range []struct {
		wf       Workflow
		complete bool // reported already complete
	}{{mk, false}, {undo, false}, {undo, true}, {mk, false}, {undo, false}} {
		res, err := r.Run(context.Background(), run.wf, inputsA, Options{})
		if err != nil {
			t.Fatalf("run %d (%s): %v", i, run.wf.Key(), err)
		}
		if res.AlreadyComplete != run.complete {
			t.Errorf("run %d (%s): already complete %v, want %v", i, run.wf.Key(), res.AlreadyComplete, run.complete)
		}
	}
	if got := fx.get("undo 2_undo"); got != 2 {
		t.Errorf("undo's change ran %d times, want 2 (once per make)", got)
	}
	if got := st.side(RolePrimary).State; got != StateNormal {
		t.Errorf("state %s after undo, want normal", got)
	}
}

func TestChangedByIsWrittenWithTheFirstChangingStep(t *testing.T) {
	st, fx := newFakeStore(), &effects{}
	mk, undo := twoActions(fx, nil)
	r := newRunner(st)
	if _, err := r.Run(context.Background(), mk, inputsA, Options{}); err != nil {
		t.Fatal(err)
	}
	if u := st.transition("1_one", StatusStarted, 0); u == nil || u.sideAfter.ChangedBy != "" {
		t.Errorf("the check step's start marked the side: %+v", u)
	}
	if u := st.transition("2_two", StatusStarted, 0); u == nil || u.sideBefore.ChangedBy != "" || u.sideAfter.ChangedBy != mk.Key() {
		t.Errorf("the first changing step's start did not mark the side in its own transaction: %+v", u)
	}
	if _, err := r.Run(context.Background(), undo, inputsA, Options{}); err != nil {
		t.Fatal(err)
	}
	u := st.transition("2_undo", StatusStarted, 0)
	if u == nil || u.sideAfter.ChangedBy != undo.Key() || u.sideAfter.State != StateStop {
		t.Fatalf("undo's first changing step: %+v", u)
	}
	if by := st.record(mk.Key()).SupersededBy(u.sideAfter); by != undo.Key() {
		t.Errorf("make's record superseded by %q, want %q", by, undo.Key())
	}
}

func TestStartedStepOfASupersededRecordIsNotReplayed(t *testing.T) {
	st, fx := newFakeStore(), &effects{}
	mk, undo := twoActions(fx, nil)
	mk.Steps[2].OnFail = StateRestoreFail
	r := newRunner(st)
	r.Failpoint = func(step string, p FailpointName) error {
		if step == "3_three" && p == FailBefore {
			return errors.New("failpoint")
		}
		return nil
	}
	if _, err := r.Run(context.Background(), mk, inputsA, Options{}); err == nil {
		t.Fatal("make did not fail at 3_three")
	}
	// Make the step look killed: started, with no outcome.
	if err := st.Update(context.Background(), mk.Key(), RolePrimary, func(rec **Record, _ *Side) error {
		(*rec).Step("3_three").Status = StatusStarted
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	r.Failpoint = func(string, FailpointName) error { return nil }
	if _, err := r.Run(context.Background(), undo, inputsA, Options{}); err != nil {
		t.Fatal(err)
	}
	res, err := r.Run(context.Background(), mk, inputsA, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Interrupted) != 0 {
		t.Errorf("a step of the superseded record was reported interrupted: %+v", res.Interrupted)
	}
	for _, u := range st.updates {
		if u.sideAfter.State == StateRestoreFail && u.sideBefore.State != StateRestoreFail && u.key == mk.Key() && u.sideBefore.ChangedBy == undo.Key() {
			t.Errorf("the superseded record's started step set its failure state after undo")
		}
	}
	if got := st.side(RolePrimary).State; got != StateNormal {
		t.Errorf("state %s, want normal (undo's end; make changes none)", got)
	}
}

func TestValueOfAndForgetOf(t *testing.T) {
	st, fx := newFakeStore(), &effects{}
	mk, undo := twoActions(fx, nil)
	mk.Steps[1].Run = func(ctx context.Context, rc *RunContext) error {
		_, err := rc.SaveOnce(ctx, "changed", "from=1;to=2")
		return err
	}
	var seen []string
	undo.Steps[1].Run = func(ctx context.Context, rc *RunContext) error {
		v, ok, err := rc.ValueOf(ctx, mk.Key(), "changed")
		if err != nil {
			return err
		}
		if ok {
			seen = append(seen, v)
		}
		if _, ok, _ := rc.ValueOf(ctx, "nothing/primary", "changed"); ok {
			t.Error("a value of a workflow without a record")
		}
		if err := rc.ForgetOf(ctx, "nothing/primary", "changed"); err != nil {
			return err
		}
		return rc.ForgetOf(ctx, mk.Key(), "changed")
	}
	r := newRunner(st)
	if _, err := r.Run(context.Background(), mk, inputsA, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Run(context.Background(), undo, inputsA, Options{}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(seen, []string{"from=1;to=2"}) {
		t.Errorf("undo read %v", seen)
	}
	if _, ok := st.record(mk.Key()).Values["changed"]; ok {
		t.Error("the value is still in make's record")
	}
	if st.record("nothing/primary") != nil {
		t.Error("ForgetOf created a record")
	}
}

// TestRecordOfARunAfterTheChangeIsNotSuperseded: a workflow whose run
// began after another workflow changed the side is not superseded by that
// change (a failover refused by its check after a switchover): its record
// says so in status, and its next run resumes it. A later change by the
// other workflow supersedes it again. A side written before Changes
// existed keeps the older rule.
func TestRecordOfARunAfterTheChangeIsNotSuperseded(t *testing.T) {
	st, fx := newFakeStore(), &effects{}
	errLook := &Permanent{Err: errors.New("refused by a check")}
	mk, undo := twoActions(fx, errLook)
	r := newRunner(st)
	if _, err := r.Run(context.Background(), mk, inputsA, Options{}); err != nil {
		t.Fatalf("make: %v", err)
	}
	if _, err := r.Run(context.Background(), undo, inputsA, Options{}); err == nil {
		t.Fatal("undo's check step did not refuse")
	}
	side := st.side(RolePrimary)
	if side.ChangedBy != mk.Key() || side.Changes == 0 {
		t.Fatalf("side after make and a refused undo: %+v", side)
	}
	if by := st.record(undo.Key()).SupersededBy(side); by != "" {
		t.Errorf("undo's record, whose run came after make's change, superseded by %q", by)
	}
	res, err := r.Run(context.Background(), undo, inputsA, Options{})
	if err == nil || res.SupersededBy != "" {
		t.Errorf("undo's rerun: superseded by %q (err %v), want its own record resumed", res.SupersededBy, err)
	}
	if got := st.record(undo.Key()).Runs; got != 2 {
		t.Errorf("undo's record counts %d runs, want 2", got)
	}

	// make changes the side again: undo's record is history now.
	if _, err := r.Run(context.Background(), mk, inputsA, Options{Restart: true}); err != nil {
		t.Fatalf("make again: %v", err)
	}
	if by := st.record(undo.Key()).SupersededBy(st.side(RolePrimary)); by != mk.Key() {
		t.Errorf("undo's record after make changed the side again: superseded by %q, want %q", by, mk.Key())
	}

	// A side from before Changes: any other workflow that changed it supersedes.
	old := Side{Role: RolePrimary, ChangedBy: mk.Key()}
	if by := (&Record{Workflow: undo.Key(), SideChanges: 0}).SupersededBy(old); by != mk.Key() {
		t.Errorf("a record under a side without a change count: superseded by %q, want %q", by, mk.Key())
	}
}
