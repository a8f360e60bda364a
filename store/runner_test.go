package store

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"testing"

	"github.com/pgsdr/sdr/workflow"
)

// These run the runner's key cases against the real bbolt store.

var names = []string{"1_one", "2_two", "3_three", "4_four", "5_five"}

type effects map[string]int

// testWorkflow is a five-step workflow; step fail fails (or panics) on its
// first call; step 3 sets restore when it starts and recovery when done.
func testWorkflow(fx effects, fail string, panics bool) workflow.Workflow {
	wf := workflow.Workflow{Action: "test", Role: workflow.RolePrimary}
	for i, n := range names {
		n := n
		s := workflow.Step{Num: i + 1, Name: n, Short: n, Roles: []workflow.Role{workflow.RolePrimary},
			Run: func(ctx context.Context, rc *workflow.RunContext) error {
				fx[n]++
				if _, err := rc.SaveOnce(ctx, "first-run-of-"+n, rc.RunID); err != nil {
					return err
				}
				if n == fail && fx[n] == 1 {
					if panics {
						panic("boom in " + n)
					}
					return errors.New("boom in " + n)
				}
				return nil
			}}
		if i == 2 {
			s.OnStart, s.OnDone, s.OnFail = workflow.StateRestore, workflow.StateRecovery, workflow.StateRestoreFail
		}
		wf.Steps = append(wf.Steps, s)
	}
	return wf
}

func runner(db *DB) *workflow.Runner {
	n := 0
	return &workflow.Runner{Store: db, NewRunID: func() string { n++; return fmt.Sprintf("run-%d", n) },
		Failpoint: func(string, workflow.FailpointName) error { return nil }}
}

func TestRunnerOnBoltResumesAfterFailureAtEachStep(t *testing.T) {
	for i, fail := range names {
		for _, panics := range []bool{false, true} {
			name := "error in " + fail
			if panics {
				name = "panic in " + fail
			}
			t.Run(name, func(t *testing.T) {
				db, fx := openTemp(t, "p"), effects{}
				wf, r, ctx := testWorkflow(fx, fail, panics), runner(db), context.Background()
				inputs := map[string]string{"x": "1"}
				_, err := r.Run(ctx, wf, inputs, workflow.Options{})
				var se *workflow.StepError
				if !errors.As(err, &se) || se.Step != fail {
					t.Fatalf("first run: %v", err)
				}
				rec, err := db.Load(ctx, wf.Key())
				if err != nil {
					t.Fatal(err)
				}
				wantType := "*errors.errorString"
				if panics {
					wantType = "panic"
				}
				if sr := rec.Step(fail); sr.Status != workflow.StatusFailed || sr.Error == nil || sr.Error.Type != wantType {
					t.Errorf("%s recorded %s with %+v, want failed, type %s", fail, sr.Status, sr.Error, wantType)
				}
				res, err := r.Run(ctx, wf, inputs, workflow.Options{})
				if err != nil {
					t.Fatalf("rerun: %v", err)
				}
				if !reflect.DeepEqual(res.Ran, names[i:]) {
					t.Errorf("rerun ran %v, want %v", res.Ran, names[i:])
				}
				rec, _ = db.Load(ctx, wf.Key())
				for _, n := range names {
					want := 1
					if n == fail {
						want = 2
					}
					if fx[n] != want || rec.Step(n).Attempts != want || rec.Step(n).Status != workflow.StatusDone {
						t.Errorf("%s: %d side effects, recorded %s/%d attempts; want %d, done", n, fx[n], rec.Step(n).Status, rec.Step(n).Attempts, want)
					}
					wantRun := "run-1"
					if indexOf(n) > i {
						wantRun = "run-2" // first run stopped before it
					}
					if got := rec.Values["first-run-of-"+n]; got != wantRun {
						t.Errorf("value saved by %s = %q, want %q (write-once)", n, got, wantRun)
					}
				}
				if !rec.Complete {
					t.Error("not complete")
				}
				res, err = r.Run(ctx, wf, inputs, workflow.Options{})
				if err != nil || !res.AlreadyComplete || len(res.Ran) != 0 {
					t.Errorf("third run: %+v, %v; want AlreadyComplete", res, err)
				}
			})
		}
	}
}

func indexOf(n string) int {
	for i, x := range names {
		if x == n {
			return i
		}
	}
	return -1
}

func TestRunnerOnBoltInputsChangedAndRestart(t *testing.T) {
	db, fx := openTemp(t, "p"), effects{}
	wf, r, ctx := testWorkflow(fx, "", false), runner(db), context.Background()
	if _, err := r.Run(ctx, wf, map[string]string{"host": "a"}, workflow.Options{}); err != nil {
		t.Fatal(err)
	}
	_, err := r.Run(ctx, wf, map[string]string{"host": "b"}, workflow.Options{})
	var ic *workflow.InputsChangedError
	if !errors.As(err, &ic) || !reflect.DeepEqual(ic.Changes, []workflow.Change{{Name: "host", Was: "a", Now: "b"}}) {
		t.Fatalf("err = %v, want *InputsChangedError naming host", err)
	}
	res, err := r.Run(ctx, wf, map[string]string{"host": "b"}, workflow.Options{Restart: true})
	if err != nil || !reflect.DeepEqual(res.Ran, names) {
		t.Fatalf("restart: ran %v, %v", res.Ran, err)
	}
	rec, _ := db.Load(ctx, wf.Key())
	if rec.Values["first-run-of-1_one"] != "run-1" {
		t.Errorf("restart lost saved values: %v", rec.Values)
	}
}

func TestHistoryRecordsEveryTransition(t *testing.T) {
	db, fx := openTemp(t, "p"), effects{}
	wf, r, ctx := testWorkflow(fx, "3_three", false), runner(db), context.Background()
	_, _ = r.Run(ctx, wf, nil, workflow.Options{})
	if _, err := r.Run(ctx, wf, nil, workflow.Options{}); err != nil {
		t.Fatal(err)
	}
	snap, err := db.Snapshot(0)
	if err != nil {
		t.Fatal(err)
	}
	type tr struct {
		run, step string
		from, to  workflow.State
	}
	want := []tr{
		{"run-1", "", "", workflow.StateNormal},
		{"run-1", "3_three", workflow.StateNormal, workflow.StateRestore},
		{"run-1", "3_three", workflow.StateRestore, workflow.StateRestoreFail},
		{"run-2", "3_three", workflow.StateRestoreFail, workflow.StateRestore},
		{"run-2", "3_three", workflow.StateRestore, workflow.StateRecovery},
	}
	var got []tr
	for i, h := range snap.History {
		got = append(got, tr{h.RunID, h.Step, h.From, h.To})
		if h.Seq != uint64(i+1) || h.Time.IsZero() || h.Role != workflow.RolePrimary || h.Workflow != wf.Key() {
			t.Errorf("history entry %d: %+v", i, h)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("history\n got %+v\nwant %+v", got, want)
	}
	if last, _ := db.Snapshot(2); len(last.History) != 2 || last.History[1].To != workflow.StateRecovery {
		t.Errorf("Snapshot(2) history = %+v, want the last two", last.History)
	}
	if len(snap.Sides) != 1 || snap.Sides[0].State != workflow.StateRecovery || snap.Pair != "p" || snap.Schema != SchemaVersion {
		t.Errorf("snapshot sides %+v pair %q schema %d", snap.Sides, snap.Pair, snap.Schema)
	}
}

// BenchmarkRunnerStep runs a nine-step workflow against a real state file
// (every transition is an fsynced bbolt transaction).
func BenchmarkRunnerStep(b *testing.B) {
	db := openTemp(b, "bench")
	wf := workflow.Workflow{Action: "bench", Role: workflow.RolePrimary}
	for i := 1; i <= 9; i++ {
		wf.Steps = append(wf.Steps, workflow.Step{Num: i, Name: fmt.Sprintf("%d_step", i), Roles: []workflow.Role{workflow.RolePrimary},
			OnDone: workflow.StateArchive, Run: func(context.Context, *workflow.RunContext) error { return nil }})
	}
	r := runner(db)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := r.Run(ctx, wf, map[string]string{"i": "x"}, workflow.Options{Restart: true}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(wf.Steps)), "ns/step")
}

// TestHistoryShowsARunThatWasKilled: a run that dies inside a step (its
// goroutine ends as a SIGKILL would end the process) leaves the step
// started; the next run records the interruption with the step's failure
// state, and the history shows it, before the step runs again.
func TestHistoryShowsARunThatWasKilled(t *testing.T) {
	db, fx := openTemp(t, "p"), effects{}
	wf, ctx := testWorkflow(fx, "", false), context.Background()
	killed := runner(db)
	killed.Failpoint = func(step string, p workflow.FailpointName) error {
		if step == "3_three" && p == workflow.FailAfterEffects {
			runtime.Goexit()
		}
		return nil
	}
	done := make(chan struct{})
	go func() { defer close(done); _, _ = killed.Run(ctx, wf, nil, workflow.Options{}) }()
	<-done
	r := runner(db)
	r.NewRunID = func() string { return "run-2" }
	res, err := r.Run(ctx, wf, nil, workflow.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Interrupted) != 1 || res.Interrupted[0].Step != "3_three" || res.Interrupted[0].RunID != "run-1" {
		t.Errorf("Interrupted = %+v", res.Interrupted)
	}
	snap, err := db.Snapshot(0)
	if err != nil {
		t.Fatal(err)
	}
	type tr struct {
		run, step string
		from, to  workflow.State
	}
	want := []tr{
		{"run-1", "", "", workflow.StateNormal},
		{"run-1", "3_three", workflow.StateNormal, workflow.StateRestore},
		{"run-2", "3_three", workflow.StateRestore, workflow.StateRestoreFail}, // the interruption
		{"run-2", "3_three", workflow.StateRestoreFail, workflow.StateRestore},
		{"run-2", "3_three", workflow.StateRestore, workflow.StateRecovery},
	}
	var got []tr
	for _, h := range snap.History {
		got = append(got, tr{h.RunID, h.Step, h.From, h.To})
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("history\n got %+v\nwant %+v", got, want)
	}
	if sr := snap.Workflows[0].Step("3_three"); sr.Status != workflow.StatusDone || sr.Attempts != 2 || fx["3_three"] != 2 {
		t.Errorf("3_three %+v after %d side effects, want done in 2 attempts", sr, fx["3_three"])
	}
}
