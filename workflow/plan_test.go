package workflow

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"
)

// planSteps is a workflow whose steps count how often Run and Plan are
// called: 1 only checks and saves a value, 2 plans from that value, 3 has
// no plan, 4 is for the other role, 5 plans.
type planCounts struct{ run, plan map[string]int }

func planWorkflow(c *planCounts, fail map[string]error) Workflow {
	c.run, c.plan = map[string]int{}, map[string]int{}
	run := func(name string) func(context.Context, *RunContext) error {
		return func(ctx context.Context, rc *RunContext) error {
			c.run[name]++
			if name == "1_check" {
				if _, err := rc.SaveOnce(ctx, "seen", "by-check"); err != nil {
					return err
				}
			}
			return fail[name]
		}
	}
	plan := func(name string) func(context.Context, *RunContext) (PlanEntry, error) {
		return func(ctx context.Context, rc *RunContext) (PlanEntry, error) {
			c.plan[name]++
			v, _, err := rc.Value(ctx, "seen")
			if err != nil {
				return PlanEntry{}, err
			}
			if _, err := rc.SaveOnce(ctx, "planned."+name, "yes"); err != nil {
				return PlanEntry{}, err
			}
			return PlanEntry{Summary: "would act on " + v, Items: []PlanItem{{Kind: "slot", Action: "create", Name: "s_" + name, What: "create it"}},
				NoChange: name == "5_five"}, fail[name]
		}
	}
	both := []Role{RolePrimary, RoleStandby}
	return Workflow{Action: "test", Role: RolePrimary, Steps: []Step{
		{Num: 1, Name: "1_check", Short: "check", Roles: both, CheckOnly: true, Run: run("1_check")},
		{Num: 2, Name: "2_two", Short: "two", Roles: both, OnStart: StateRestore, Run: run("2_two"), Plan: plan("2_two")},
		{Num: 3, Name: "3_three", Short: "three", Roles: both, Run: run("3_three")},
		{Num: 4, Name: "4_four", Short: "four", Roles: []Role{RoleStandby}, Run: run("4_four"), Plan: plan("4_four")},
		{Num: 5, Name: "5_five", Short: "five", Roles: both, Run: run("5_five"), Plan: plan("5_five")},
	}}
}

func statusesOf(p *Plan) map[string]PlanStatus {
	out := map[string]PlanStatus{}
	for _, e := range p.Steps {
		out[e.Step] = e.Status
	}
	return out
}

func TestPlan(t *testing.T) {
	errCheck := &Permanent{Err: errors.New("primary is down")}
	tests := []struct {
		name string
		// prepare runs the real workflow (with failures) before the plan, to leave a record.
		prepare     map[string]error
		fail        map[string]error
		inputs      map[string]string
		opts        Options
		want        map[string]PlanStatus
		allowed     bool
		refusedAt   string
		resumesAt   string
		complete    bool
		wantRuns    map[string]int
		wantPlans   map[string]int
		wantSummary string
	}{
		{
			name:   "fresh: checks run, other steps plan, nothing runs",
			inputs: inputsA,
			want: map[string]PlanStatus{"1_check": PlanChecked, "2_two": PlanWouldChange, "3_three": PlanWouldRun, "4_four": PlanSkipped,
				"5_five": PlanNoChange},
			allowed: true, resumesAt: "1_check",
			wantRuns:  map[string]int{"1_check": 1},
			wantPlans: map[string]int{"2_two": 1, "5_five": 1}, wantSummary: "would act on by-check",
		},
		{
			name:   "a refused check stops the plan where the run would stop",
			inputs: inputsA, fail: map[string]error{"1_check": errCheck},
			want: map[string]PlanStatus{"1_check": PlanRefused, "2_two": PlanNotReached, "3_three": PlanNotReached, "4_four": PlanNotReached,
				"5_five": PlanNotReached},
			refusedAt: "1_check", resumesAt: "1_check",
			wantRuns: map[string]int{"1_check": 1}, wantPlans: map[string]int{},
		},
		{
			name:   "a step whose plan finds a reason to stop",
			inputs: inputsA, fail: map[string]error{"2_two": errors.New("slot is of another kind")},
			want: map[string]PlanStatus{"1_check": PlanChecked, "2_two": PlanRefused, "3_three": PlanNotReached, "4_four": PlanNotReached,
				"5_five": PlanNotReached},
			refusedAt: "2_two", resumesAt: "1_check",
			wantRuns: map[string]int{"1_check": 1}, wantPlans: map[string]int{"2_two": 1}, wantSummary: "would act on by-check",
		},
		{
			name:    "resumes after the steps the recorded run finished",
			prepare: map[string]error{"3_three": errors.New("boom")}, inputs: inputsA,
			want: map[string]PlanStatus{"1_check": PlanDone, "2_two": PlanDone, "3_three": PlanWouldRun, "4_four": PlanSkipped,
				"5_five": PlanNoChange},
			allowed: true, resumesAt: "3_three",
			wantRuns: map[string]int{}, wantPlans: map[string]int{"5_five": 1},
		},
		{
			name:    "changed inputs: refused before any step",
			prepare: map[string]error{"3_three": errors.New("boom")}, inputs: map[string]string{"pair": "p2"},
			want: map[string]PlanStatus{"1_check": PlanNotReached, "2_two": PlanNotReached, "3_three": PlanNotReached, "4_four": PlanNotReached,
				"5_five": PlanNotReached},
			refusedAt: "inputs", wantRuns: map[string]int{}, wantPlans: map[string]int{},
		},
		{
			name:    "changed inputs with restart: from step 1",
			prepare: map[string]error{"3_three": errors.New("boom")}, inputs: map[string]string{"pair": "p2"}, opts: Options{Restart: true},
			want: map[string]PlanStatus{"1_check": PlanChecked, "2_two": PlanWouldChange, "3_three": PlanWouldRun, "4_four": PlanSkipped,
				"5_five": PlanNoChange},
			allowed: true, resumesAt: "1_check",
			wantRuns: map[string]int{"1_check": 1}, wantPlans: map[string]int{"2_two": 1, "5_five": 1}, wantSummary: "would act on by-check",
		},
		{
			name:    "finished: nothing to do",
			prepare: map[string]error{}, inputs: inputsA,
			want: map[string]PlanStatus{"1_check": PlanDone, "2_two": PlanDone, "3_three": PlanDone, "4_four": PlanSkipped,
				"5_five": PlanDone},
			allowed: true, complete: true, wantRuns: map[string]int{}, wantPlans: map[string]int{},
		},
		{
			name:    "finished, but each run is a new operation",
			prepare: map[string]error{}, inputs: inputsA, opts: Options{NewIfComplete: true},
			want: map[string]PlanStatus{"1_check": PlanChecked, "2_two": PlanWouldChange, "3_three": PlanWouldRun, "4_four": PlanSkipped,
				"5_five": PlanNoChange},
			allowed: true, resumesAt: "1_check",
			wantRuns: map[string]int{"1_check": 1}, wantPlans: map[string]int{"2_two": 1, "5_five": 1}, wantSummary: "would act on by-check",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := newFakeStore()
			r := newRunner(st)
			if tc.prepare != nil {
				c := &planCounts{}
				_, _ = r.Run(context.Background(), planWorkflow(c, tc.prepare), inputsA, Options{})
			}
			before := snapshotStore(st)
			c := &planCounts{}
			p, err := r.Plan(context.Background(), planWorkflow(c, tc.fail), tc.inputs, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if after := snapshotStore(st); !reflect.DeepEqual(before, after) {
				t.Errorf("the plan changed the store:\nbefore %s\nafter  %s", before, after)
			}
			if got := statusesOf(p); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("statuses %v, want %v", got, tc.want)
			}
			if p.Allowed != tc.allowed || p.RefusedAt != tc.refusedAt || p.ResumesAt != tc.resumesAt || p.AlreadyComplete != tc.complete {
				t.Errorf("allowed %t refused at %q resumes at %q complete %t; want %t %q %q %t",
					p.Allowed, p.RefusedAt, p.ResumesAt, p.AlreadyComplete, tc.allowed, tc.refusedAt, tc.resumesAt, tc.complete)
			}
			if (tc.refusedAt == "") != (p.Refusal == nil) {
				t.Errorf("refusal %+v", p.Refusal)
			}
			if !reflect.DeepEqual(c.run, tc.wantRuns) || !reflect.DeepEqual(c.plan, tc.wantPlans) {
				t.Errorf("Run called %v, Plan called %v; want %v and %v", c.run, c.plan, tc.wantRuns, tc.wantPlans)
			}
			if tc.wantSummary != "" && p.Steps[1].Summary != tc.wantSummary && p.Steps[4].Summary != "would act on by-check" {
				t.Errorf("a later step's plan did not see what the check saved: %q", p.Steps[1].Summary)
			}
			for _, e := range p.Steps {
				if e.Items == nil || e.Notes == nil {
					t.Errorf("%s: items and notes must be lists, even empty", e.Step)
				}
				if (e.Status == PlanRefused) != (e.Error != nil) {
					t.Errorf("%s: status %s with error %+v", e.Step, e.Status, e.Error)
				}
			}
		})
	}
}

// snapshotStore is everything the fake store holds, as text.
func snapshotStore(st *fakeStore) string {
	st.mu.Lock()
	defer st.mu.Unlock()
	raw, _ := json.Marshal(struct {
		Recs    map[string][]byte
		Sides   map[Role]Side
		Updates int
	}{st.recs, st.sides, len(st.updates)})
	return string(raw)
}

func TestPlanRecoversFromAPanicInAPlan(t *testing.T) {
	wf := Workflow{Action: "test", Role: RolePrimary, Steps: []Step{
		{Num: 1, Name: "1_one", Roles: []Role{RolePrimary}, Plan: func(context.Context, *RunContext) (PlanEntry, error) { panic("bad probe") }},
		{Num: 2, Name: "2_two", Roles: []Role{RolePrimary}},
	}}
	p, err := newRunner(newFakeStore()).Plan(context.Background(), wf, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Allowed || p.RefusedAt != "1_one" || p.Refusal == nil || p.Refusal.Type != "panic" || p.Steps[1].Status != PlanNotReached {
		t.Fatalf("plan %+v, refusal %+v", p, p.Refusal)
	}
}

func TestPlanStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c := &planCounts{}
	_, err := newRunner(newFakeStore()).Plan(ctx, planWorkflow(c, nil), nil, Options{})
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("got %v, want an interrupted error", err)
	}
	if len(c.run)+len(c.plan) != 0 {
		t.Fatalf("steps ran after the cancel: %v %v", c.run, c.plan)
	}
}

func TestPlanMarksInterruptedAndFailedSteps(t *testing.T) {
	st := newFakeStore()
	r := newRunner(st)
	c := &planCounts{}
	_, _ = r.Run(context.Background(), planWorkflow(c, map[string]error{"2_two": errors.New("disk full")}), inputsA, Options{})
	p, err := r.Plan(context.Background(), planWorkflow(c, nil), inputsA, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if e := p.Steps[1]; len(e.Notes) != 1 || e.Status != PlanWouldChange {
		t.Fatalf("step 2 after a failed run: %+v", e)
	}
}

func TestTransferRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Transfer
		ok   bool
	}{
		{"written by String", Transfer{Bytes: 825229312, Seconds: 2.125, Ended: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), RunID: "r1"}.String(),
			Transfer{Bytes: 825229312, Seconds: 2.125, Ended: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), RunID: "r1"}, true},
		{"not key=value", "bytes", Transfer{}, false},
		{"negative bytes", "bytes=-1;seconds=1", Transfer{}, false},
		{"seconds missing", "bytes=1", Transfer{}, false},
		{"bad time", "bytes=1;seconds=1;ended=yesterday", Transfer{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseTransfer(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("ParseTransfer(%q) = %+v, %v; want %+v ok=%t", tc.in, got, err, tc.want, tc.ok)
			}
		})
	}
	if r := (Transfer{Bytes: 100, Seconds: 4}).Rate(); r != 25 {
		t.Fatalf("rate %v", r)
	}
	if r := (Transfer{Bytes: 100}).Rate(); r != 0 {
		t.Fatalf("rate without time %v", r)
	}
}

func TestRunnerKeepsTheLastTransferOfEachPart(t *testing.T) {
	st := newFakeStore()
	r := newRunner(st) // its clock moves one second per reading
	moved := int64(0)
	wf := Workflow{Action: "test", Role: RolePrimary, Steps: []Step{
		{Num: 1, Name: "1_copy", Roles: []Role{RolePrimary}, Run: func(ctx context.Context, rc *RunContext) error {
			if _, ok, err := rc.LastTransfer(ctx, "n1"); err != nil || ok != (moved > 0) {
				t.Errorf("last transfer before copy %d: ok=%t err=%v", moved, ok, err)
			}
			moved += 1000
			rc.Progress("n1", 0, moved)
			rc.Progress("n1", moved/2, moved)
			rc.Progress("n1", moved, moved)
			rc.EndProgress("n1")
			rc.Progress("tiny", 0, 0) // one report: no rate
			return nil
		}},
	}}
	for run := 1; run <= 2; run++ {
		if _, err := r.Run(context.Background(), wf, nil, Options{Restart: true}); err != nil {
			t.Fatal(err)
		}
		rec, _ := st.Load(context.Background(), wf.Key())
		tr, err := ParseTransfer(rec.Values[TransferValue("1_copy", "n1")])
		if err != nil || tr.Bytes != int64(run)*1000 || tr.Seconds != 2 {
			t.Fatalf("run %d: transfer %+v, %v (values %v)", run, tr, err, rec.Values)
		}
		if _, ok := rec.Values[TransferValue("1_copy", "tiny")]; ok {
			t.Fatalf("a part with one report has no rate, but was kept: %v", rec.Values)
		}
	}
}

func TestPlanReadsOtherWorkflowsThroughTheScratchStore(t *testing.T) {
	st := newFakeStore()
	other := Workflow{Action: "start", Role: RolePrimary, Steps: []Step{{Num: 1, Name: "1_save", Roles: []Role{RolePrimary},
		Run: func(ctx context.Context, rc *RunContext) error {
			_, err := rc.SaveOnce(ctx, "raised", "from=0;to=1024")
			return err
		}}}}
	r := newRunner(st)
	if _, err := r.Run(context.Background(), other, nil, Options{}); err != nil {
		t.Fatal(err)
	}
	var seen string
	wf := Workflow{Action: "stop", Role: RolePrimary, Steps: []Step{{Num: 1, Name: "1_restore", Roles: []Role{RolePrimary},
		Plan: func(ctx context.Context, rc *RunContext) (PlanEntry, error) {
			v, _, err := rc.ValueOf(ctx, "start/primary", "raised")
			seen = v
			// Consuming it in a plan must not reach the store.
			return PlanEntry{}, errors.Join(err, rc.ForgetOf(ctx, "start/primary", "raised"))
		}}}}
	before := snapshotStore(st)
	if _, err := r.Plan(context.Background(), wf, nil, Options{}); err != nil {
		t.Fatal(err)
	}
	if seen != "from=0;to=1024" {
		t.Fatalf("the plan saw %q of the start record", seen)
	}
	if after := snapshotStore(st); after != before {
		t.Fatalf("the plan changed the store")
	}
}
