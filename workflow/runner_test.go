package workflow

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

var stepNames = []string{"1_one", "2_two", "3_three", "4_four", "5_five"}

// effects counts the side effects of each step, as a real step's changes
// to a cluster would be counted.
type effects struct {
	mu sync.Mutex
	n  map[string]int
}

func (e *effects) add(step string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n == nil {
		e.n = map[string]int{}
	}
	e.n[step]++
	return e.n[step]
}

func (e *effects) get(step string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.n[step]
}

// stepFn is a step's behaviour on its call-th call (1-based), after its side effect.
type stepFn func(ctx context.Context, rc *RunContext, call int) error

// fiveSteps builds a five-step primary workflow whose steps count their
// side effect, then do what behave says (nothing by default).
func fiveSteps(fx *effects, behave map[string]stepFn) Workflow {
	wf := Workflow{Action: "test", Role: RolePrimary}
	for i, name := range stepNames {
		name := name
		wf.Steps = append(wf.Steps, Step{Num: i + 1, Name: name, Short: "step " + name, Roles: []Role{RolePrimary, RoleStandby},
			Run: func(ctx context.Context, rc *RunContext) error {
				call := fx.add(name)
				if f := behave[name]; f != nil {
					return f(ctx, rc, call)
				}
				return nil
			}})
	}
	return wf
}

// failFirst fails the first call with err.
func failFirst(err error) stepFn {
	return func(_ context.Context, _ *RunContext, call int) error {
		if call == 1 {
			return err
		}
		return nil
	}
}

func newRunner(st Store) *Runner {
	n := 0
	clock := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	return &Runner{
		Store:    st,
		Now:      func() time.Time { clock = clock.Add(time.Second); return clock },
		NewRunID: func() string { n++; return fmt.Sprintf("run-%d", n) },
		// No failpoints from the environment in unit tests.
		Failpoint: func(string, FailpointName) error { return nil },
	}
}

var inputsA = map[string]string{"pair": "p1", "host": "a"}

func stepStatuses(t *testing.T, rec *Record) map[string]StepStatus {
	t.Helper()
	out := map[string]StepStatus{}
	for _, s := range rec.Steps {
		out[s.Name] = s.Status
	}
	return out
}

func TestRunnerResumesAfterFailureAtEachStep(t *testing.T) {
	errBoom := errors.New("boom")
	for fail := 1; fail <= len(stepNames); fail++ {
		failed := stepNames[fail-1]
		t.Run("fail "+failed, func(t *testing.T) {
			st, fx := newFakeStore(), &effects{}
			wf := fiveSteps(fx, map[string]stepFn{failed: failFirst(errBoom)})
			r := newRunner(st)

			res, err := r.Run(context.Background(), wf, inputsA, Options{})
			var se *StepError
			if !errors.As(err, &se) || se.Step != failed {
				t.Fatalf("first run: err = %v, want *StepError for %s", err, failed)
			}
			if !errors.Is(err, ErrStepFailed) || !errors.Is(err, errBoom) {
				t.Errorf("first run: err %v does not wrap ErrStepFailed and the cause", err)
			}
			if want := stepNames[:fail]; !reflect.DeepEqual(res.Ran, want) {
				t.Errorf("first run ran %v, want %v", res.Ran, want)
			}
			rec := st.record(wf.Key())
			for i, name := range stepNames {
				sr := rec.Step(name)
				switch {
				case i+1 < fail && (sr.Status != StatusDone || sr.Attempts != 1):
					t.Errorf("after failure: %s = %s/%d attempts, want done/1", name, sr.Status, sr.Attempts)
				case i+1 == fail && (sr.Status != StatusFailed || sr.Attempts != 1 || sr.Error == nil):
					t.Errorf("after failure: %s = %s/%d attempts, error %v; want failed/1 with an error", name, sr.Status, sr.Attempts, sr.Error)
				case i+1 > fail && (sr.Status != StatusPending || sr.Attempts != 0):
					t.Errorf("after failure: %s = %s/%d attempts, want pending/0", name, sr.Status, sr.Attempts)
				}
			}
			if rec.Complete {
				t.Error("record complete after a failed run")
			}

			res, err = r.Run(context.Background(), wf, inputsA, Options{})
			if err != nil {
				t.Fatalf("rerun: %v", err)
			}
			if want := stepNames[fail-1:]; !reflect.DeepEqual(res.Ran, want) {
				t.Errorf("rerun ran %v, want %v (resume at the failed step)", res.Ran, want)
			}
			rec = st.record(wf.Key())
			for i, name := range stepNames {
				want := 1
				if i+1 == fail {
					want = 2
				}
				if got := fx.get(name); got != want {
					t.Errorf("%s side effects = %d, want %d", name, got, want)
				}
				sr := rec.Step(name)
				if sr.Status != StatusDone || sr.Attempts != want || sr.Error != nil {
					t.Errorf("%s recorded %s/%d attempts/error %v, want done/%d/none", name, sr.Status, sr.Attempts, sr.Error, want)
				}
			}
			if !rec.Complete || rec.Finished == nil || rec.Runs != 2 || rec.RunID != "run-2" {
				t.Errorf("record complete=%v finished=%v runs=%d run=%s, want complete, 2 runs, run-2", rec.Complete, rec.Finished, rec.Runs, rec.RunID)
			}
		})
	}
}

func TestRunnerFailpoints(t *testing.T) {
	type want struct {
		effects, attempts int
		statusAfterFail   StepStatus
		resumeAtNext      bool
	}
	points := map[FailpointName]want{
		FailBefore:          {effects: 1, attempts: 2, statusAfterFail: StatusFailed},
		FailAfterEffects:    {effects: 2, attempts: 2, statusAfterFail: StatusFailed},
		FailAfterCheckpoint: {effects: 1, attempts: 1, statusAfterFail: StatusDone, resumeAtNext: true},
	}
	for i, name := range stepNames {
		for point, w := range points {
			t.Run(name+":"+string(point), func(t *testing.T) {
				st, fx := newFakeStore(), &effects{}
				wf := fiveSteps(fx, nil)
				r := newRunner(st)
				hits := 0
				r.Failpoint = func(step string, p FailpointName) error {
					if step == name && p == point {
						hits++
						if hits == 1 {
							return fmt.Errorf("failpoint %s:%s", step, p)
						}
					}
					return nil
				}
				if _, err := r.Run(context.Background(), wf, inputsA, Options{}); err == nil {
					t.Fatal("first run succeeded despite the failpoint")
				}
				if got := st.record(wf.Key()).Step(name).Status; got != w.statusAfterFail {
					t.Errorf("%s after the failpoint = %s, want %s", name, got, w.statusAfterFail)
				}
				res, err := r.Run(context.Background(), wf, inputsA, Options{})
				if err != nil {
					t.Fatalf("rerun: %v", err)
				}
				from := i
				if w.resumeAtNext {
					from = i + 1
				}
				if want := stepNames[from:]; len(want) > 0 && !reflect.DeepEqual(res.Ran, want) || len(want) == 0 && len(res.Ran) != 0 {
					t.Errorf("rerun ran %v, want %v", res.Ran, want)
				}
				rec := st.record(wf.Key())
				for _, other := range stepNames {
					wantFx, wantAttempts := 1, 1
					if other == name {
						wantFx, wantAttempts = w.effects, w.attempts
					}
					if got := fx.get(other); got != wantFx {
						t.Errorf("%s side effects = %d, want %d", other, got, wantFx)
					}
					if sr := rec.Step(other); sr.Status != StatusDone || sr.Attempts != wantAttempts {
						t.Errorf("%s = %s/%d attempts, want done/%d", other, sr.Status, sr.Attempts, wantAttempts)
					}
				}
				if !rec.Complete {
					t.Error("not complete after the rerun")
				}
			})
		}
	}
}

func TestRunnerRecordsPanic(t *testing.T) {
	for _, name := range []string{"1_one", "3_three", "5_five"} {
		t.Run(name, func(t *testing.T) {
			st, fx := newFakeStore(), &effects{}
			wf := fiveSteps(fx, map[string]stepFn{name: func(_ context.Context, _ *RunContext, call int) error {
				if call == 1 {
					panic("step exploded")
				}
				return nil
			}})
			r := newRunner(st)
			_, err := r.Run(context.Background(), wf, inputsA, Options{})
			var pe *PanicError
			if !errors.As(err, &pe) || pe.Value != "step exploded" || pe.Stack == "" {
				t.Fatalf("err = %v, want a *PanicError with value and stack", err)
			}
			if !errors.Is(err, ErrPanic) || !errors.Is(err, ErrStepFailed) {
				t.Errorf("err %v does not wrap ErrPanic and ErrStepFailed", err)
			}
			sr := st.record(wf.Key()).Step(name)
			if sr.Status != StatusFailed || sr.Error == nil || sr.Error.Type != "panic" {
				t.Fatalf("%s recorded %s, error %+v; want failed with type panic", name, sr.Status, sr.Error)
			}
			if _, err := r.Run(context.Background(), wf, inputsA, Options{}); err != nil {
				t.Fatalf("rerun: %v", err)
			}
			if got := fx.get(name); got != 2 {
				t.Errorf("%s ran %d times, want 2", name, got)
			}
			if !st.record(wf.Key()).Complete {
				t.Error("not complete after the rerun")
			}
		})
	}
}

func TestRunnerSecondRunOfFinishedWorkflowDoesNothing(t *testing.T) {
	st, fx := newFakeStore(), &effects{}
	wf := fiveSteps(fx, nil)
	wf.Steps[4].OnDone = StateRecovery
	r := newRunner(st)
	if _, err := r.Run(context.Background(), wf, inputsA, Options{}); err != nil {
		t.Fatal(err)
	}
	before := st.record(wf.Key())
	for run := 2; run <= 3; run++ {
		res, err := r.Run(context.Background(), wf, inputsA, Options{})
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		if !res.AlreadyComplete || len(res.Ran) != 0 || len(res.Skipped) != 0 {
			t.Errorf("run %d: %+v, want AlreadyComplete and nothing ran", run, res)
		}
		if res.State != StateRecovery {
			t.Errorf("run %d: state %q, want %q", run, res.State, StateRecovery)
		}
	}
	for _, name := range stepNames {
		if got := fx.get(name); got != 1 {
			t.Errorf("%s side effects = %d, want 1", name, got)
		}
	}
	if after := st.record(wf.Key()); !reflect.DeepEqual(after.Steps, before.Steps) || after.Runs != before.Runs {
		t.Errorf("a run of a finished workflow changed its record:\nbefore %+v\nafter  %+v", before, after)
	}
}

func TestRunnerRefusesChangedInputs(t *testing.T) {
	tests := []struct {
		name        string
		failAt      string // "" for a run that completed
		now         map[string]string
		wantChanges []Change
	}{
		{"value changed after a complete run", "", map[string]string{"pair": "p1", "host": "b"},
			[]Change{{Name: "host", Was: "a", Now: "b"}}},
		{"key added after a failed run", "3_three", map[string]string{"pair": "p1", "host": "a", "port": "5433"},
			[]Change{{Name: "port", Now: "5433"}}},
		{"key removed and one changed", "1_one", map[string]string{"pair": "p2"},
			[]Change{{Name: "host", Was: "a"}, {Name: "pair", Was: "p1", Now: "p2"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, fx := newFakeStore(), &effects{}
			saved := []string{}
			behave := map[string]stepFn{"2_two": func(ctx context.Context, rc *RunContext, call int) error {
				v, err := rc.SaveOnce(ctx, "original", fmt.Sprintf("call-%d", call))
				saved = append(saved, v)
				return err
			}}
			if tc.failAt != "" {
				behave[tc.failAt] = failFirst(errors.New("boom"))
			}
			wf := fiveSteps(fx, behave)
			r := newRunner(st)
			_, _ = r.Run(context.Background(), wf, inputsA, Options{})
			recBefore := st.record(wf.Key())
			ranBefore := map[string]int{}
			for _, n := range stepNames {
				ranBefore[n] = fx.get(n)
			}

			_, err := r.Run(context.Background(), wf, tc.now, Options{})
			var ic *InputsChangedError
			if !errors.As(err, &ic) {
				t.Fatalf("err = %v, want *InputsChangedError", err)
			}
			if !errors.Is(err, ErrInputsChanged) {
				t.Error("err does not wrap ErrInputsChanged")
			}
			if ic.Workflow != wf.Key() || !reflect.DeepEqual(ic.Changes, tc.wantChanges) {
				t.Errorf("refused %s with changes %+v, want %s with %+v", ic.Workflow, ic.Changes, wf.Key(), tc.wantChanges)
			}
			for _, n := range stepNames {
				if fx.get(n) != ranBefore[n] {
					t.Errorf("refused run still ran %s", n)
				}
			}
			if rec := st.record(wf.Key()); !reflect.DeepEqual(rec, recBefore) {
				t.Errorf("refused run changed the record:\nbefore %+v\nafter  %+v", recBefore, rec)
			}

			res, err := r.Run(context.Background(), wf, tc.now, Options{Restart: true})
			if err != nil {
				t.Fatalf("restart: %v", err)
			}
			if !reflect.DeepEqual(res.Ran, stepNames) {
				t.Errorf("restart ran %v, want all steps from 1", res.Ran)
			}
			rec := st.record(wf.Key())
			if !rec.Complete || !reflect.DeepEqual(rec.Inputs, tc.now) || rec.Fingerprint != Fingerprint(tc.now) {
				t.Errorf("after restart: complete=%v inputs=%v, want complete with the new inputs", rec.Complete, rec.Inputs)
			}
			if got := rec.Values["original"]; got != "call-1" {
				t.Errorf("saved value after restart = %q, want the first run's %q", got, "call-1")
			}
			if last := saved[len(saved)-1]; last != "call-1" {
				t.Errorf("SaveOnce in the restarted run returned %q, want %q", last, "call-1")
			}
			if !rec.Created.Equal(recBefore.Created) {
				t.Errorf("restart changed Created from %s to %s", recBefore.Created, rec.Created)
			}
		})
	}
}

func TestRunnerRestartWithSameInputsRunsFromStepOne(t *testing.T) {
	st, fx := newFakeStore(), &effects{}
	wf := fiveSteps(fx, nil)
	r := newRunner(st)
	for _, opts := range []Options{{}, {Restart: true}} {
		if res, err := r.Run(context.Background(), wf, inputsA, opts); err != nil || !reflect.DeepEqual(res.Ran, stepNames) {
			t.Fatalf("run %+v: ran %v, err %v; want all steps", opts, res.Ran, err)
		}
	}
	for _, n := range stepNames {
		if got := fx.get(n); got != 2 {
			t.Errorf("%s ran %d times, want 2", n, got)
		}
	}
	if rec := st.record(wf.Key()); rec.Runs != 2 || rec.Step("1_one").Attempts != 1 {
		t.Errorf("runs %d, step 1 attempts %d; want 2 runs and fresh attempts", rec.Runs, rec.Step("1_one").Attempts)
	}
}

func TestRunnerSkipsStepsForOtherRoles(t *testing.T) {
	tests := []struct {
		name        string
		role        Role
		standbyOnly []string
		wantRan     []string
	}{
		{"primary skips standby steps", RolePrimary, []string{"2_two", "4_four"}, []string{"1_one", "3_three", "5_five"}},
		{"standby runs them", RoleStandby, []string{"2_two", "4_four"}, stepNames},
		{"last step skipped", RolePrimary, []string{"5_five"}, stepNames[:4]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, fx := newFakeStore(), &effects{}
			wf := fiveSteps(fx, nil)
			wf.Role = tc.role
			skip := map[string]bool{}
			for i := range wf.Steps {
				for _, n := range tc.standbyOnly {
					if wf.Steps[i].Name == n {
						wf.Steps[i].Roles = []Role{RoleStandby}
						skip[n] = tc.role != RoleStandby
					}
				}
			}
			res, err := newRunner(st).Run(context.Background(), wf, inputsA, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(res.Ran, tc.wantRan) {
				t.Errorf("ran %v, want %v", res.Ran, tc.wantRan)
			}
			var wantSkipped []string
			rec := st.record(wf.Key())
			for _, n := range stepNames {
				sr := rec.Step(n)
				if skip[n] {
					wantSkipped = append(wantSkipped, n)
					if sr.Status != StatusSkipped || sr.Attempts != 0 || sr.Ended == nil || fx.get(n) != 0 {
						t.Errorf("%s = %s/%d attempts, ran %d times; want skipped, never run", n, sr.Status, sr.Attempts, fx.get(n))
					}
				} else if sr.Status != StatusDone {
					t.Errorf("%s = %s, want done", n, sr.Status)
				}
			}
			if !reflect.DeepEqual(res.Skipped, wantSkipped) {
				t.Errorf("Result.Skipped = %v, want %v", res.Skipped, wantSkipped)
			}
			if !rec.Complete {
				t.Error("not complete")
			}
		})
	}
}

func TestRunnerWritesStatesWithTheStepRecord(t *testing.T) {
	st, fx := newFakeStore(), &effects{}
	wf := fiveSteps(fx, map[string]stepFn{"3_three": failFirst(errors.New("boom"))})
	wf.Steps[1].OnStart, wf.Steps[1].OnDone = StateFullBackup, StateArchive
	wf.Steps[2].OnStart, wf.Steps[2].OnDone, wf.Steps[2].OnFail = StateRestore, StateRecovery, StateRestoreFail
	r := newRunner(st)

	res, err := r.Run(context.Background(), wf, inputsA, Options{})
	if err == nil {
		t.Fatal("first run succeeded")
	}
	if res.State != StateRestoreFail {
		t.Errorf("state after failure = %q, want %q", res.State, StateRestoreFail)
	}
	res, err = r.Run(context.Background(), wf, inputsA, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.State != StateRecovery {
		t.Errorf("final state = %q, want %q", res.State, StateRecovery)
	}

	tests := []struct {
		name   string
		step   string
		status StepStatus
		nth    int
		want   State
		runID  string
	}{
		{"2 started", "2_two", StatusStarted, 0, StateFullBackup, "run-1"},
		{"2 done", "2_two", StatusDone, 0, StateArchive, "run-1"},
		{"3 started", "3_three", StatusStarted, 0, StateRestore, "run-1"},
		{"3 failed", "3_three", StatusFailed, 0, StateRestoreFail, "run-1"},
		{"3 started again", "3_three", StatusStarted, 1, StateRestore, "run-2"},
		{"3 done", "3_three", StatusDone, 0, StateRecovery, "run-2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := st.transition(tc.step, tc.status, tc.nth)
			if u == nil {
				t.Fatalf("no Update set %s to %s", tc.step, tc.status)
			}
			if u.sideAfter.State != tc.want || u.sideAfter.Step != tc.step || u.sideAfter.RunID != tc.runID {
				t.Errorf("the Update that set %s %s left side %+v; want state %s by %s in %s in the same Update",
					tc.step, tc.status, u.sideAfter, tc.want, tc.step, tc.runID)
			}
			if u.sideBefore.State == tc.want {
				t.Errorf("state %s was already set before the step's Update", tc.want)
			}
		})
	}
	// Steps without states leave the side alone.
	if u := st.transition("4_four", StatusDone, 0); u == nil || u.sideAfter != u.sideBefore {
		t.Errorf("4_four (no states) changed the side: %+v", u)
	}
	if side := st.side(RolePrimary); side.State != StateRecovery || side.Step != "3_three" {
		t.Errorf("final side %+v, want recovery set by 3_three", side)
	}
}

func TestRunnerSetsNormalStateOnFirstRun(t *testing.T) {
	st := newFakeStore()
	wf := fiveSteps(&effects{}, nil)
	if _, err := newRunner(st).Run(context.Background(), wf, inputsA, Options{}); err != nil {
		t.Fatal(err)
	}
	if first := st.updates[0]; first.sideBefore.State != "" || first.sideAfter.State != StateNormal || first.sideAfter.RunID != "run-1" {
		t.Errorf("first Update side %+v -> %+v, want a fresh side set to normal by run-1", first.sideBefore, first.sideAfter)
	}
}

func TestSaveOnceIsWriteOnce(t *testing.T) {
	tests := []struct {
		name  string
		saves []string // values saved in order, by the same step
		want  string
	}{
		{"first value kept", []string{"a", "b"}, "a"},
		{"same value again", []string{"a", "a"}, "a"},
		{"single", []string{"x"}, "x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := newFakeStore()
			var got []string
			var read string
			wf := fiveSteps(&effects{}, map[string]stepFn{
				"2_two": func(ctx context.Context, rc *RunContext, _ int) error {
					for _, v := range tc.saves {
						out, err := rc.SaveOnce(ctx, "k", v)
						if err != nil {
							return err
						}
						got = append(got, out)
					}
					return nil
				},
				"4_four": func(ctx context.Context, rc *RunContext, _ int) error {
					v, ok, err := rc.Value(ctx, "k")
					if err != nil || !ok {
						return fmt.Errorf("value k: ok=%v err=%v", ok, err)
					}
					read = v
					if _, ok, _ := rc.Value(ctx, "missing"); ok {
						return errors.New("missing value found")
					}
					return nil
				},
			})
			if _, err := newRunner(st).Run(context.Background(), wf, inputsA, Options{}); err != nil {
				t.Fatal(err)
			}
			for i, v := range got {
				if v != tc.want {
					t.Errorf("SaveOnce #%d returned %q, want %q", i+1, v, tc.want)
				}
			}
			if read != tc.want || st.record(wf.Key()).Values["k"] != tc.want {
				t.Errorf("later step read %q, record holds %q; want %q", read, st.record(wf.Key()).Values["k"], tc.want)
			}
		})
	}
}

func TestForget(t *testing.T) {
	tests := []struct {
		name string
		save bool // step 2 saves k before forgetting it
		// step 3 saves k again after the forget: the write-once rule then
		// applies to the new value.
		resave string
		want   string // value of k seen by step 4, "" for none
	}{
		{name: "saved then forgotten", save: true},
		{name: "forgetting a missing value", save: false},
		{name: "saved, forgotten, saved anew", save: true, resave: "new", want: "new"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := newFakeStore()
			var read string
			var found bool
			wf := fiveSteps(&effects{}, map[string]stepFn{
				"2_two": func(ctx context.Context, rc *RunContext, _ int) error {
					if tc.save {
						if _, err := rc.SaveOnce(ctx, "k", "old"); err != nil {
							return err
						}
					}
					return rc.Forget(ctx, "k")
				},
				"3_three": func(ctx context.Context, rc *RunContext, _ int) error {
					if tc.resave == "" {
						return nil
					}
					_, err := rc.SaveOnce(ctx, "k", tc.resave)
					return err
				},
				"4_four": func(ctx context.Context, rc *RunContext, _ int) error {
					var err error
					read, found, err = rc.Value(ctx, "k")
					return err
				},
			})
			if _, err := newRunner(st).Run(context.Background(), wf, inputsA, Options{}); err != nil {
				t.Fatal(err)
			}
			if found != (tc.want != "") || read != tc.want {
				t.Errorf("step 4 read %q (found %v), want %q", read, found, tc.want)
			}
			if v, ok := st.record(wf.Key()).Values["k"]; ok != (tc.want != "") || v != tc.want {
				t.Errorf("record holds %q (present %v), want %q", v, ok, tc.want)
			}
		})
	}
}

func TestRunnerInterrupted(t *testing.T) {
	tests := []struct {
		name       string
		step       string
		behave     func(cancel context.CancelFunc) stepFn
		wantStatus StepStatus // of step after the interrupted run
		wantType   string     // recorded error type, "" for none
		wantRan    int        // side effects of step in the interrupted run
	}{
		{"step returns ctx.Err", "3_three", func(cancel context.CancelFunc) stepFn {
			return func(ctx context.Context, _ *RunContext, call int) error {
				if call == 1 {
					cancel()
					<-ctx.Done()
					return ctx.Err()
				}
				return nil
			}
		}, StatusFailed, "interrupted", 1},
		{"step returns its own error after cancel", "3_three", func(cancel context.CancelFunc) stepFn {
			return func(ctx context.Context, _ *RunContext, call int) error {
				if call == 1 {
					cancel()
					return errors.New("ssh: connection closed")
				}
				return nil
			}
		}, StatusFailed, "interrupted", 1},
		{"cancelled between steps", "2_two", func(cancel context.CancelFunc) stepFn {
			return func(_ context.Context, _ *RunContext, call int) error {
				if call == 1 {
					cancel() // the step itself succeeds; 3_three must not start
				}
				return nil
			}
		}, StatusDone, "", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, fx := newFakeStore(), &effects{}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			wf := fiveSteps(fx, map[string]stepFn{tc.step: tc.behave(cancel)})
			r := newRunner(st)
			_, err := r.Run(ctx, wf, inputsA, Options{})
			if !errors.Is(err, ErrInterrupted) || !errors.Is(err, ErrStepFailed) {
				t.Fatalf("err = %v, want an interrupted step error", err)
			}
			sr := st.record(wf.Key()).Step(tc.step)
			if sr.Status != tc.wantStatus {
				t.Errorf("%s = %s, want %s", tc.step, sr.Status, tc.wantStatus)
			}
			if tc.wantType != "" && (sr.Error == nil || sr.Error.Type != tc.wantType) {
				t.Errorf("%s error %+v, want type %q", tc.step, sr.Error, tc.wantType)
			}
			if fx.get(tc.step) != tc.wantRan {
				t.Errorf("%s ran %d times, want %d", tc.step, fx.get(tc.step), tc.wantRan)
			}
			for _, n := range []string{"4_four", "5_five"} {
				if fx.get(n) != 0 {
					t.Errorf("%s ran after the interrupt", n)
				}
			}
			if _, err := r.Run(context.Background(), wf, inputsA, Options{}); err != nil {
				t.Fatalf("rerun: %v", err)
			}
			for _, n := range stepNames {
				want := 1
				if n == tc.step && tc.wantStatus == StatusFailed {
					want = 2
				}
				if got := fx.get(n); got != want {
					t.Errorf("%s side effects = %d, want %d", n, got, want)
				}
			}
		})
	}
}

func TestRunnerRecordsTimeoutOfAStep(t *testing.T) {
	st := newFakeStore()
	wf := fiveSteps(&effects{}, map[string]stepFn{"2_two": failFirst(fmt.Errorf("while waiting for streaming: %w", context.DeadlineExceeded))})
	_, err := newRunner(st).Run(context.Background(), wf, inputsA, Options{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if rec := st.record(wf.Key()).Step("2_two").Error; rec == nil || rec.Type != "timeout" || len(rec.Chain) == 0 {
		t.Errorf("recorded %+v, want type timeout with its chain", rec)
	}
}

func TestRunnerRejectsInvalidWorkflowBeforeTouchingTheStore(t *testing.T) {
	st := newFakeStore()
	wf := Workflow{Action: "bad", Role: RolePrimary, Steps: []Step{{Num: 1, Name: "one"}}}
	if _, err := newRunner(st).Run(context.Background(), wf, inputsA, Options{}); err == nil {
		t.Fatal("invalid workflow ran")
	}
	if st.updateCount() != 0 || st.loads != 0 {
		t.Errorf("store touched: %d updates, %d loads", st.updateCount(), st.loads)
	}
}

func TestValidate(t *testing.T) {
	step := func(num int, name string) Step { return Step{Num: num, Name: name} }
	tests := []struct {
		name    string
		steps   []Step
		wantErr bool
		is      error
	}{
		{"valid", []Step{step(1, "1_a"), step(2, "2_b"), step(9, "9_c")}, false, nil},
		{"gaps allowed", []Step{step(1, "1_a"), step(5, "5_b")}, false, nil},
		{"no steps", nil, true, ErrNoSteps},
		{"zero number", []Step{step(0, "0_a")}, true, nil},
		{"same number twice", []Step{step(1, "1_a"), step(1, "1_b")}, true, nil},
		{"numbers decrease", []Step{step(2, "2_a"), step(1, "1_b")}, true, nil},
		{"name without number", []Step{step(1, "prepare")}, true, nil},
		{"name with other number", []Step{step(1, "2_prepare")}, true, nil},
		{"name only prefix", []Step{step(1, "1_")}, true, nil},
		{"prefix of a longer number", []Step{step(1, "10_x")}, true, nil},
		{"check-only step that sets a state", []Step{{Num: 1, Name: "1_a", CheckOnly: true, OnFail: StateBackupFail}}, true, nil},
		{"check-only step", []Step{{Num: 1, Name: "1_a", CheckOnly: true}}, false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Workflow{Action: "a", Role: RolePrimary, Steps: tc.steps}.Validate()
			if (err != nil) != tc.wantErr {
				t.Fatalf("Validate() = %v, want error %v", err, tc.wantErr)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("Validate() = %v, want %v", err, tc.is)
			}
		})
	}
}

func TestDiffInputs(t *testing.T) {
	tests := []struct {
		name     string
		was, now map[string]string
		want     []Change
	}{
		{"equal", map[string]string{"a": "1"}, map[string]string{"a": "1"}, nil},
		{"both empty", nil, nil, nil},
		{"changed", map[string]string{"a": "1"}, map[string]string{"a": "2"}, []Change{{Name: "a", Was: "1", Now: "2"}}},
		{"added", map[string]string{}, map[string]string{"b": "x"}, []Change{{Name: "b", Now: "x"}}},
		{"removed", map[string]string{"b": "x"}, nil, []Change{{Name: "b", Was: "x"}}},
		{"sorted by name", map[string]string{"z": "1", "c": "1", "m": "1"}, map[string]string{"a": "1", "m": "2"},
			[]Change{{Name: "a", Now: "1"}, {Name: "c", Was: "1"}, {Name: "m", Was: "1", Now: "2"}, {Name: "z", Was: "1"}}},
		{"empty value added", map[string]string{}, map[string]string{"a": ""}, []Change{{Name: "a"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := DiffInputs(tc.was, tc.now); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("DiffInputs = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestFingerprint(t *testing.T) {
	a := Fingerprint(map[string]string{"a": "1", "b": "2"})
	tests := []struct {
		name   string
		inputs map[string]string
		same   bool
	}{
		{"same map", map[string]string{"b": "2", "a": "1"}, true},
		{"value changed", map[string]string{"a": "1", "b": "3"}, false},
		{"key added", map[string]string{"a": "1", "b": "2", "c": ""}, false},
		{"no ambiguity across keys", map[string]string{"a": "1\"=\"b", "": "2"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Fingerprint(tc.inputs) == a; got != tc.same {
				t.Errorf("same fingerprint = %v, want %v", got, tc.same)
			}
		})
	}
}

func TestNewErrorRecord(t *testing.T) {
	base := errors.New("disk full")
	tests := []struct {
		name      string
		err       error
		wantType  string
		permanent bool
		chain     int
	}{
		{"nil", nil, "", false, 0},
		{"plain", base, "*errors.errorString", false, 0},
		{"wrapped", fmt.Errorf("while writing: %w", base), "*fmt.wrapError", false, 1},
		{"permanent", &Permanent{Err: fmt.Errorf("refused: %w", base)}, "*workflow.Permanent", true, 2},
		{"panic", &PanicError{Value: "x"}, "panic", false, 1},
		{"interrupted", fmt.Errorf("%w: %w", ErrInterrupted, base), "interrupted", false, 0},
		{"cancelled", context.Canceled, "interrupted", false, 0},
		{"timeout", fmt.Errorf("wait: %w", context.DeadlineExceeded), "timeout", false, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := NewErrorRecord(tc.err)
			if tc.err == nil {
				if rec != nil {
					t.Fatalf("NewErrorRecord(nil) = %+v", rec)
				}
				return
			}
			if rec.Type != tc.wantType || rec.Permanent != tc.permanent || len(rec.Chain) != tc.chain || rec.Message == "" {
				t.Errorf("got %+v, want type %q permanent %v chain of %d", rec, tc.wantType, tc.permanent, tc.chain)
			}
		})
	}
}

func TestParseRole(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Role
		wantErr bool
	}{
		{"primary", RolePrimary, false},
		{"standby", RoleStandby, false},
		{"Primary", "", true},
		{"", "", true},
	} {
		t.Run("role "+tc.in, func(t *testing.T) {
			got, err := ParseRole(tc.in)
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Errorf("ParseRole(%q) = %q, %v", tc.in, got, err)
			}
		})
	}
}

// TestPhasesSurviveRerunsNotRestart: phases recorded by a step are seen by
// its rerun, and forgotten by --restart.
func TestPhasesSurviveRerunsNotRestart(t *testing.T) {
	st := newFakeStore()
	var seen []string
	var fired []string
	wf := fiveSteps(&effects{}, map[string]stepFn{
		"3_three": func(ctx context.Context, rc *RunContext, call int) error {
			got, err := rc.Phase(ctx, "node-a")
			if err != nil {
				return err
			}
			seen = append(seen, got)
			if err := rc.Failpoint("copied@node-a"); err != nil {
				fired = append(fired, err.Error())
			}
			if call == 1 {
				if err := rc.SetPhase(ctx, "node-a", "copied"); err != nil {
					return err
				}
				return errors.New("cut short after copying")
			}
			return rc.SetPhase(ctx, "node-a", "started")
		},
	})
	r := newRunner(st)
	r.Failpoint = func(step string, p FailpointName) error {
		if step == "3_three" && p == "copied@node-a" {
			return errors.New("fired")
		}
		return nil
	}
	if _, err := r.Run(context.Background(), wf, nil, Options{}); err == nil {
		t.Fatal("first run: want the step to fail")
	}
	if _, err := r.Run(context.Background(), wf, nil, Options{}); err != nil {
		t.Fatalf("second run: %v", err)
	}
	rec, _ := st.Load(context.Background(), wf.Key())
	if got := rec.Step("3_three").Phases["node-a"]; got != "started" {
		t.Errorf("recorded phase = %q, want started", got)
	}
	if _, err := r.Run(context.Background(), wf, nil, Options{Restart: true}); err != nil {
		t.Fatalf("restart run: %v", err)
	}
	if want := []string{"", "copied", ""}; !reflect.DeepEqual(seen, want) {
		t.Errorf("phases seen by the step's runs = %q, want %q", seen, want)
	}
	if len(fired) != 3 {
		t.Errorf("step failpoint fired %d times, want 3 (%v)", len(fired), fired)
	}
}

// TestSetPhasesAtOnce: several parts recorded in one transaction are all
// seen by the rerun, and an empty phase removes a part.
func TestSetPhasesAtOnce(t *testing.T) {
	st := newFakeStore()
	wf := fiveSteps(&effects{}, map[string]stepFn{
		"3_three": func(ctx context.Context, rc *RunContext, call int) error {
			if call == 1 {
				if err := rc.SetPhases(ctx, map[string]string{"a": "copied", "b": "copied", "b/fanout": "x", "c": "saved"}); err != nil {
					return err
				}
				if err := rc.SetPhases(ctx, map[string]string{"c": "", "b/fanout": "y"}); err != nil {
					return err
				}
				return errors.New("cut short")
			}
			return nil
		},
	})
	r := newRunner(st)
	if _, err := r.Run(context.Background(), wf, nil, Options{}); err == nil {
		t.Fatal("first run: want the step to fail")
	}
	rec, _ := st.Load(context.Background(), wf.Key())
	want := map[string]string{"a": "copied", "b": "copied", "b/fanout": "y"}
	if got := rec.Step("3_three").Phases; !reflect.DeepEqual(got, want) {
		t.Errorf("phases = %v, want %v", got, want)
	}
}

// killedRun runs wf with a runner whose run dies (as SIGKILL would end it)
// after step's side effect, before its done record: its goroutine exits with no
// further write, the way a killed process leaves its state file.
func killedRun(t *testing.T, st Store, wf Workflow, step string) {
	t.Helper()
	r := newRunner(st)
	r.NewRunID = func() string { return "run-killed" }
	r.Failpoint = func(s string, p FailpointName) error {
		if s == step && p == FailAfterEffects {
			runtime.Goexit()
		}
		return nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = r.Run(context.Background(), wf, inputsA, Options{})
		t.Errorf("the killed run returned")
	}()
	<-done
}

func TestRunnerRecordsARunThatWasKilled(t *testing.T) {
	tests := []struct {
		name      string
		step      string // where the first run dies
		onFail    bool   // the step has a failure state
		opts      Options
		inputs    map[string]string
		killedIn  State // side state the killed run left
		wantErr   bool  // the rerun is refused (inputs changed): nothing recorded
		wantState State // side state written with the interruption
	}{
		{"killed in a step with a failure state", "3_three", true, Options{}, inputsA, StateRestore, false, StateRestoreFail},
		{"killed in a step without one", "4_four", true, Options{}, inputsA, StateRecovery, false, StateRecovery},
		{"killed, then --restart", "3_three", true, Options{Restart: true}, inputsA, StateRestore, false, StateRestoreFail},
		{"killed, then changed inputs without --restart", "3_three", true, Options{}, map[string]string{"pair": "p2"}, StateRestore, true, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, fx := newFakeStore(), &effects{}
			wf := fiveSteps(fx, nil)
			wf.Steps[2].OnStart, wf.Steps[2].OnDone = StateRestore, StateRecovery
			if tc.onFail {
				wf.Steps[2].OnFail = StateRestoreFail
			}
			killedRun(t, st, wf, tc.step)
			if sr := st.record(wf.Key()).Step(tc.step); sr.Status != StatusStarted {
				t.Fatalf("after the kill %s is %s, want started", tc.step, sr.Status)
			}
			if got := st.side(RolePrimary).State; got != tc.killedIn {
				t.Fatalf("after the kill the side is %s, want %s", got, tc.killedIn)
			}
			updatesBefore := st.updateCount()

			res, err := newRunner(st).Run(context.Background(), wf, tc.inputs, tc.opts)
			if tc.wantErr {
				if !errors.Is(err, ErrInputsChanged) {
					t.Fatalf("err = %v, want inputs changed", err)
				}
				if st.updateCount() != updatesBefore || st.record(wf.Key()).Step(tc.step).Status != StatusStarted {
					t.Errorf("a refused run recorded something")
				}
				return
			}
			if err != nil {
				t.Fatalf("rerun: %v", err)
			}
			if len(res.Interrupted) != 1 || res.Interrupted[0].Step != tc.step || res.Interrupted[0].RunID != "run-killed" || res.Interrupted[0].Started == nil {
				t.Errorf("Result.Interrupted = %+v, want %s of run-killed", res.Interrupted, tc.step)
			}
			// The first Update of the rerun records the interruption and
			// its state in one transaction, before any step runs again.
			u := st.updates[updatesBefore]
			sr := u.before.Step(tc.step)
			if sr.Status != StatusStarted {
				t.Fatalf("first Update of the rerun saw %s as %s", tc.step, sr.Status)
			}
			if u.sideAfter.State != tc.wantState {
				t.Errorf("side after the first Update of the rerun %+v, want %s", u.sideAfter, tc.wantState)
			}
			if tc.wantState != tc.killedIn && (u.sideAfter.Step != tc.step || u.sideAfter.RunID != "run-1") {
				t.Errorf("side %+v, want set by %s in run-1", u.sideAfter, tc.step)
			}
			if !tc.opts.Restart {
				after := u.after.Step(tc.step)
				if after.Status != StatusFailed || after.Error == nil || after.Error.Type != "interrupted" ||
					!strings.Contains(after.Error.Message, "run-killed") || after.Attempts != 1 || after.Ended != nil {
					t.Errorf("first Update of the rerun wrote %s as %+v (error %+v), want failed, interrupted, naming run-killed", tc.step, after, after.Error)
				}
				if u.after.RunID != "run-1" {
					t.Errorf("the interruption was not written with the start of run-1")
				}
			}
			if got := fx.get(tc.step); got != 2 {
				t.Errorf("%s ran %d times, want 2 (killed, then resumed)", tc.step, got)
			}
			if rec := st.record(wf.Key()); !rec.Complete {
				t.Errorf("rerun did not complete: %+v", rec.Steps)
			}
		})
	}
}

func TestBeforeAnyChange(t *testing.T) {
	p, s := []Role{RolePrimary}, []Role{RoleStandby}
	wf := Workflow{Action: "start", Role: RolePrimary, Steps: []Step{
		{Num: 1, Name: "1_prepare", Roles: p, CheckOnly: true},
		{Num: 2, Name: "2_check", Roles: p, CheckOnly: true},
		{Num: 3, Name: "3_standby_only", Roles: s}, // skipped for the primary: changes nothing here
		{Num: 4, Name: "4_check_again", Roles: p, CheckOnly: true},
		{Num: 5, Name: "5_change", Roles: p},
		{Num: 6, Name: "6_check_late", Roles: p, CheckOnly: true},
	}}
	tests := []struct {
		step string
		want bool
	}{
		{"1_prepare", true},
		{"2_check", true},
		{"3_standby_only", true},
		{"4_check_again", true},
		{"5_change", false},
		{"6_check_late", false}, // a step before it may have changed something
		{"7_unknown", false},
	}
	for _, tc := range tests {
		t.Run(tc.step, func(t *testing.T) {
			if got := wf.BeforeAnyChange(tc.step); got != tc.want {
				t.Errorf("BeforeAnyChange(%s) = %v, want %v", tc.step, got, tc.want)
			}
		})
	}
	standby := wf
	standby.Role = RoleStandby
	if standby.BeforeAnyChange("4_check_again") {
		t.Error("for the standby, 3_standby_only changes something before 4_check_again")
	}
}

// TestNewIfComplete: a finished record is over; the next run with
// NewIfComplete starts a new operation, with no steps done and no values.
func TestNewIfComplete(t *testing.T) {
	st := newFakeStore()
	fx := &effects{}
	wf := fiveSteps(fx, map[string]stepFn{
		"2_two": func(ctx context.Context, rc *RunContext, call int) error {
			if v, ok, _ := rc.Value(ctx, "token"); ok {
				return fmt.Errorf("a value of the earlier operation is seen: %s", v)
			}
			_, err := rc.SaveOnce(ctx, "token", fmt.Sprint(call))
			return err
		},
	})
	r := newRunner(st)
	if _, err := r.Run(context.Background(), wf, nil, Options{NewIfComplete: true}); err != nil {
		t.Fatal(err)
	}
	res, err := r.Run(context.Background(), wf, nil, Options{NewIfComplete: true})
	if err != nil || res.AlreadyComplete || fx.get("5_five") != 2 {
		t.Fatalf("second operation: %+v %v, step 5 ran %d times", res, err, fx.get("5_five"))
	}
	res, err = r.Run(context.Background(), wf, nil, Options{})
	if err != nil || !res.AlreadyComplete {
		t.Fatalf("without the option a finished record stays finished: %+v %v", res, err)
	}
}

// A refused run and its plan name a changed input where InputPath says
// the config sets it; the recorded names stay as they are.
func TestInputsChangedNamesTheConfigPath(t *testing.T) {
	st, fx := newFakeStore(), &effects{}
	wf := fiveSteps(fx, nil)
	r := newRunner(st)
	r.InputPath = func(name string) string {
		if name == "host" {
			return "clusters.dc2.nodes[x].host"
		}
		return name
	}
	if _, err := r.Run(context.Background(), wf, inputsA, Options{}); err != nil {
		t.Fatal(err)
	}
	now := map[string]string{"pair": "p2", "host": "b"}
	want := []Change{{Name: "host", Path: "clusters.dc2.nodes[x].host", Was: "a", Now: "b"}, {Name: "pair", Was: "p1", Now: "p2"}}
	_, err := r.Run(context.Background(), wf, now, Options{})
	var ic *InputsChangedError
	if !errors.As(err, &ic) || !reflect.DeepEqual(ic.Changes, want) {
		t.Fatalf("err = %v, want changes %+v", err, want)
	}
	if msg := err.Error(); !strings.Contains(msg, `clusters.dc2.nodes[x].host (was "a", now "b")`) || !strings.Contains(msg, `pair (was "p1", now "p2")`) {
		t.Errorf("message %q does not name the config path", msg)
	}
	p, err := r.Plan(context.Background(), wf, now, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p.InputsChanged, want) {
		t.Errorf("plan's changes %+v, want %+v", p.InputsChanged, want)
	}
}

// TestRunnerBeforeSteps: the hook runs once before a run that runs steps,
// never for a rerun of a finished run or a refused one, and its error
// refuses the run with nothing recorded.
func TestRunnerBeforeSteps(t *testing.T) {
	held := errors.New("the side is held by another run")
	tests := []struct {
		name      string
		prepare   func(r *Runner, wf Workflow) // runs before, without the hook
		inputs    map[string]string
		opts      Options
		hookErr   error
		wantCalls int
		wantRan   int
		wantFirst string
		wantErr   error
	}{
		{name: "first run", inputs: inputsA, wantCalls: 1, wantRan: 5, wantFirst: "1_one"},
		{name: "refused first run records nothing", inputs: inputsA, hookErr: held, wantCalls: 1, wantErr: held, wantFirst: "1_one"},
		{name: "resumed run", inputs: inputsA, wantCalls: 1, wantRan: 3, wantFirst: "3_three",
			prepare: func(r *Runner, wf Workflow) {
				wf.Steps[2].Run = func(context.Context, *RunContext) error { return errors.New("boom") }
				_, _ = r.Run(context.Background(), wf, inputsA, Options{})
			}},
		{name: "rerun of a finished run", inputs: inputsA, hookErr: held, wantCalls: 0,
			prepare: func(r *Runner, wf Workflow) { _, _ = r.Run(context.Background(), wf, inputsA, Options{}) }},
		{name: "changed inputs are refused before the hook", inputs: map[string]string{"pair": "p1", "host": "b"}, wantCalls: 0,
			prepare: func(r *Runner, wf Workflow) { _, _ = r.Run(context.Background(), wf, inputsA, Options{}) }},
		{name: "restart of a finished run", inputs: inputsA, opts: Options{Restart: true}, wantCalls: 1, wantRan: 5, wantFirst: "1_one",
			prepare: func(r *Runner, wf Workflow) { _, _ = r.Run(context.Background(), wf, inputsA, Options{}) }},
		{name: "new operation after a finished one", inputs: inputsA, opts: Options{NewIfComplete: true}, wantCalls: 1, wantRan: 5, wantFirst: "1_one",
			prepare: func(r *Runner, wf Workflow) { _, _ = r.Run(context.Background(), wf, inputsA, Options{}) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, fx := newFakeStore(), &effects{}
			r := newRunner(st)
			if tc.prepare != nil {
				tc.prepare(r, fiveSteps(&effects{}, nil))
			}
			before := st.record("test/primary")
			calls, first := 0, ""
			opts := tc.opts
			opts.BeforeSteps = func(_ context.Context, s Step) error { calls++; first = s.Name; return tc.hookErr }
			res, err := r.Run(context.Background(), fiveSteps(fx, nil), tc.inputs, opts)
			if calls != tc.wantCalls {
				t.Errorf("hook called %d times, want %d", calls, tc.wantCalls)
			}
			if first != tc.wantFirst {
				t.Errorf("hook given step %q, want %q", first, tc.wantFirst)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("err %v, want %v", err, tc.wantErr)
			}
			if len(res.Ran) != tc.wantRan {
				t.Errorf("ran %v, want %d steps", res.Ran, tc.wantRan)
			}
			if tc.wantErr != nil && !reflect.DeepEqual(st.record("test/primary"), before) {
				t.Errorf("a refused run changed the record:\nbefore %+v\nafter  %+v", before, st.record("test/primary"))
			}
		})
	}
}
