package workflow

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"sync"

	"go.uber.org/zap"
)

// Plans: what a run would do, without doing it.
//
// Runner.Plan walks a workflow the way Runner.Run does, with the same
// resume rules and the same steps, but it writes nothing to the store and
// changes nothing on any node. The steps that only look (CheckOnly) run as
// they are; every other step answers with its Plan function, which probes
// the nodes and calls the same decisions its Run calls. So a plan and a
// run come from one step list and one set of decisions: they cannot
// drift apart.
//
// Steps may save values (RunContext.SaveOnce, SetPhase, Forget) while
// they plan: those go to a scratch copy of the records that lives as long
// as the plan, so a later step's Plan sees what an earlier step would
// have saved. The store is only read.

// PlanStatus says what a run would do with one step.
type PlanStatus string

// The statuses of a step in a plan.
const (
	// PlanChecked: a step that only looks ran against the live nodes and passed.
	PlanChecked PlanStatus = "checked"
	// PlanWouldChange: the step's plan found something it would change.
	PlanWouldChange PlanStatus = "would_change"
	// PlanNoChange: the step would run and find everything already in place.
	PlanNoChange PlanStatus = "no_change"
	// PlanWouldRun: the step has no plan of its own (it waits, or acts on
	// what earlier steps make); its Short line says what it does.
	PlanWouldRun PlanStatus = "would_run"
	// PlanDone: the recorded run finished the step; a run resumes after it.
	PlanDone PlanStatus = "done"
	// PlanSkipped: nothing to do for this role (a run records it as skipped).
	PlanSkipped PlanStatus = "skipped"
	// PlanRefused: a run would stop at this step; Error says why.
	PlanRefused PlanStatus = "refused"
	// PlanNotReached: a step after the one where a run would stop.
	PlanNotReached PlanStatus = "not_reached"
)

// PlanItem is one thing a step would do, or one fact it found that the
// operator should see. docs/plan.md lists the kinds and actions.
type PlanItem struct {
	// Kind is what the item is about: node, data_dir, copy, slot, hba,
	// setting, file, role, process, wal.
	Kind string `json:"kind"`
	// Action is what the step would do with it: stop, rebuild, keep_aside,
	// create, drop, recreate, set, reset, insert, replace, remove, reload,
	// promote, fence, terminate, wait, keep, none.
	Action string `json:"action"`
	Node   string `json:"node,omitempty"`
	// Name is the slot, setting, role, file or directory.
	Name string `json:"name,omitempty"`
	// What is one line for people.
	What string `json:"what"`
	// Why says why it is needed, or why it is safe (for a data directory:
	// the classifier's reason).
	Why string `json:"why,omitempty"`
	// Old and New are a setting's value now and after the step.
	Old string `json:"old,omitempty"`
	New string `json:"new,omitempty"`
	// Where says the file and the place in it that Lines would go to.
	Where string   `json:"where,omitempty"`
	Lines []string `json:"lines,omitempty"`
	// Bytes is how much would be copied; Seconds the estimated time of
	// it, and Basis what that estimate is based on.
	Bytes   int64   `json:"bytes,omitempty"`
	Seconds float64 `json:"seconds,omitempty"`
	Basis   string  `json:"basis,omitempty"`
}

// PlanEntry is one step of a plan.
type PlanEntry struct {
	Num       int        `json:"num"`
	Step      string     `json:"step"`
	Short     string     `json:"short"`
	CheckOnly bool       `json:"check_only"`
	Status    PlanStatus `json:"status"`
	// The states the step sets when it starts, is done and fails ("" for none).
	OnStart State `json:"on_start,omitempty"`
	OnDone  State `json:"on_done,omitempty"`
	OnFail  State `json:"on_fail,omitempty"`
	// Summary is one line on what the step would do.
	Summary string     `json:"summary,omitempty"`
	Items   []PlanItem `json:"items"`
	// Notes are what the operator should know: assumptions, what is
	// decided again only when the step runs.
	Notes []string `json:"notes"`
	// Error says why a run would stop here (Status refused).
	Error *ErrorRecord `json:"error,omitempty"`
	// NoChange is set by a step's Plan when it found nothing to change.
	NoChange bool `json:"-"`
}

// Plan is what a run of a workflow would do now.
type Plan struct {
	Workflow string `json:"workflow"`
	Action   string `json:"action"`
	Role     Role   `json:"role"`
	// Allowed: no check refused and no step's plan found a reason to stop.
	Allowed bool `json:"allowed"`
	// RefusedAt names the step where a run would stop, or "inputs" when
	// the run would be refused before any step because the recorded run
	// used other inputs. Refusal says why.
	RefusedAt string       `json:"refused_at,omitempty"`
	Refusal   *ErrorRecord `json:"refusal,omitempty"`
	// InputsChanged lists what differs from the recorded run's inputs.
	InputsChanged []Change `json:"inputs_changed,omitempty"`
	// AlreadyComplete: the recorded run finished; a run says so and does nothing.
	AlreadyComplete bool `json:"already_complete"`
	// SupersededBy: the recorded run was superseded (Record.SupersededBy),
	// so a run starts at step 1.
	SupersededBy string `json:"superseded_by,omitempty"`
	// ResumesAt is the first step a run would run ("" when none).
	ResumesAt string      `json:"resumes_at,omitempty"`
	Steps     []PlanEntry `json:"steps"`
}

// Plan says what Run(ctx, wf, inputs, opts) would do now, step by step,
// without doing it. It reads the store, never writes it, and changes
// nothing on any node: CheckOnly steps run (or their Plan, which runs the
// same checks), and every other step that is not finished answers with
// its Plan; a step without Plan is listed as PlanWouldRun. The plan stops
// where the run would stop: at a refused check, at a step whose Plan
// returns an error, or before any step when the recorded inputs differ
// and opts.Restart is false. The error is only for a workflow that is not
// valid, a store that cannot be read, or a cancelled ctx.
func (r *Runner) Plan(ctx context.Context, wf Workflow, inputs map[string]string, opts Options) (*Plan, error) {
	if err := wf.Validate(); err != nil {
		return nil, err
	}
	key := wf.Key()
	rec, err := r.Store.Load(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("while reading the record of %s: %w", key, err)
	}
	side, err := r.Store.LoadSide(ctx, wf.Role)
	if err != nil {
		return nil, fmt.Errorf("while reading the %s side's state: %w", wf.Role, err)
	}
	p := newPlan(wf)
	if rec != nil && rec.Complete && opts.NewIfComplete {
		rec = nil
	}
	if rec != nil {
		p.SupersededBy = rec.SupersededBy(side)
	}
	current := rec != nil && p.SupersededBy == ""
	fp := Fingerprint(inputs)
	if current && rec.Fingerprint != fp && !opts.Restart {
		ic := &InputsChangedError{Workflow: key, Changes: r.diffInputs(rec.Inputs, inputs)}
		p.InputsChanged = ic.Changes
		p.refuse("inputs", ic)
		return p, nil
	}
	work := cloneRecord(rec)
	if !current || opts.Restart {
		fresh := &Record{Workflow: key, Action: wf.Action, Role: wf.Role, Created: r.now()}
		if work != nil {
			fresh.Values, fresh.Runs, fresh.Created = work.Values, work.Runs, work.Created
		}
		for _, s := range wf.Steps {
			fresh.Steps = append(fresh.Steps, StepRecord{Num: s.Num, Name: s.Name, Status: StatusPending})
		}
		work = fresh
	}
	work.Fingerprint, work.Inputs = fp, inputs
	if work.Complete {
		p.AlreadyComplete, p.Allowed = true, true
		for i, s := range wf.Steps {
			p.Steps[i].Status = recordedStatus(work.Step(s.Name), s, wf.Role)
		}
		return p, nil
	}
	for _, s := range wf.Steps {
		if work.Step(s.Name) == nil {
			work.Steps = append(work.Steps, StepRecord{Num: s.Num, Name: s.Name, Status: StatusPending})
		}
	}
	scratch := newPlanStore(r.Store)
	scratch.put(key, work)
	log := r.log().With(zap.String("run_id", "plan"))
	refused := false
	for i, s := range wf.Steps {
		e := &p.Steps[i]
		sr := work.Step(s.Name)
		switch {
		case refused:
			e.Status = PlanNotReached
			continue
		case sr != nil && sr.Status.Finished():
			e.Status = recordedStatus(sr, s, wf.Role)
			continue
		case !s.AppliesTo(wf.Role):
			e.Status = PlanSkipped
			continue
		}
		if p.ResumesAt == "" {
			p.ResumesAt = s.Name
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("%w while planning %s: %w", ErrInterrupted, s.Name, err)
		}
		switch {
		case sr != nil && sr.Status == StatusStarted:
			e.Notes = append(e.Notes, "an earlier run was cut short in this step: a run records that, then runs the step again")
		case sr != nil && sr.Status == StatusFailed && sr.Error != nil:
			e.Notes = append(e.Notes, "the last run failed here ("+sr.Error.Message+"): a run tries the step again")
		}
		rc := &RunContext{RunID: "plan", Role: wf.Role, Step: s.Name, Log: log.With(zap.String("step", s.Name)), Now: r.now,
			store: scratch, key: key, fp: func(string, FailpointName) error { return nil }}
		got, err := planStep(ctx, s, rc)
		if got.Summary != "" {
			e.Summary = got.Summary
		}
		e.Items = append(e.Items, got.Items...)
		e.Notes = append(e.Notes, got.Notes...)
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%w while planning %s: %w", ErrInterrupted, s.Name, err)
			}
			e.Status, e.Error = PlanRefused, NewErrorRecord(err)
			p.RefusedAt, p.Refusal = s.Name, e.Error
			refused = true
			continue
		}
		switch {
		case s.CheckOnly:
			e.Status = PlanChecked
		case s.Plan == nil:
			e.Status = PlanWouldRun
		case got.NoChange:
			e.Status = PlanNoChange
		default:
			e.Status = PlanWouldChange
		}
	}
	p.Allowed = !refused
	return p, nil
}

// RefusedPlan is the plan of a run that would be refused before any step,
// at (a name for what refuses it: "lock", "state file"), because of err.
func RefusedPlan(wf Workflow, at string, err error) *Plan {
	p := newPlan(wf)
	p.refuse(at, err)
	return p
}

// newPlan lists wf's steps, with nothing decided yet.
func newPlan(wf Workflow) *Plan {
	p := &Plan{Workflow: wf.Key(), Action: wf.Action, Role: wf.Role, Steps: []PlanEntry{}}
	for _, s := range wf.Steps {
		e := PlanEntry{Num: s.Num, Step: s.Name, Short: s.Short, CheckOnly: s.CheckOnly, OnStart: s.OnStart, OnDone: s.OnDone, OnFail: s.OnFail,
			Items: []PlanItem{}, Notes: []string{}}
		if !s.AppliesTo(wf.Role) {
			e.Short, e.OnStart, e.OnDone, e.OnFail = "(nothing to do for this role)", "", "", ""
		}
		p.Steps = append(p.Steps, e)
	}
	return p
}

// refuse makes p a plan refused before any step.
func (p *Plan) refuse(at string, err error) {
	p.Allowed, p.RefusedAt, p.Refusal = false, at, NewErrorRecord(err)
	for i := range p.Steps {
		p.Steps[i].Status = PlanNotReached
	}
}

// recordedStatus is the plan status of a step a run would not run again.
func recordedStatus(sr *StepRecord, s Step, role Role) PlanStatus {
	if (sr != nil && sr.Status == StatusSkipped) || !s.AppliesTo(role) {
		return PlanSkipped
	}
	return PlanDone
}

// planStep asks the step for its plan, turning a panic into an error.
func planStep(ctx context.Context, s Step, rc *RunContext) (e PlanEntry, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: string(debug.Stack())}
		}
	}()
	switch {
	case s.Plan != nil:
		return s.Plan(ctx, rc)
	case s.CheckOnly && s.Run != nil:
		return PlanEntry{}, s.Run(ctx, rc)
	}
	return PlanEntry{}, nil
}

// planStore is the scratch store of a plan: it reads through to the real
// store and keeps what steps write in memory. It never writes the real
// store.
type planStore struct {
	base  Store
	mu    sync.Mutex
	recs  map[string][]byte // JSON, so that callers never share a record
	sides map[Role]Side
}

var _ Store = (*planStore)(nil)

func newPlanStore(base Store) *planStore {
	return &planStore{base: base, recs: map[string][]byte{}, sides: map[Role]Side{}}
}

func (s *planStore) put(key string, rec *Record) {
	raw, err := json.Marshal(rec)
	if err != nil {
		panic(fmt.Sprintf("workflow: a record that cannot be encoded: %v", err))
	}
	s.mu.Lock()
	s.recs[key] = raw
	s.mu.Unlock()
}

func (s *planStore) Load(ctx context.Context, key string) (*Record, error) {
	s.mu.Lock()
	raw, ok := s.recs[key]
	s.mu.Unlock()
	if ok {
		var r *Record
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, err
		}
		return r, nil
	}
	if s.base == nil {
		return nil, nil
	}
	rec, err := s.base.Load(ctx, key)
	return cloneRecord(rec), err
}

func (s *planStore) LoadSide(ctx context.Context, role Role) (Side, error) {
	s.mu.Lock()
	side, ok := s.sides[role]
	s.mu.Unlock()
	if ok || s.base == nil {
		if !ok {
			side = Side{Role: role, State: StateNormal}
		}
		return side, nil
	}
	return s.base.LoadSide(ctx, role)
}

func (s *planStore) Update(ctx context.Context, key string, role Role, fn func(rec **Record, side *Side) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	rec, err := s.Load(ctx, key)
	if err != nil {
		return err
	}
	side, err := s.LoadSide(ctx, role)
	if err != nil {
		return err
	}
	if err := fn(&rec, &side); err != nil {
		return err
	}
	s.put(key, rec)
	s.mu.Lock()
	s.sides[role] = side
	s.mu.Unlock()
	return nil
}

// cloneRecord returns a deep copy of rec (nil for nil).
func cloneRecord(rec *Record) *Record {
	if rec == nil {
		return nil
	}
	raw, err := json.Marshal(rec)
	if err != nil {
		panic(fmt.Sprintf("workflow: a record that cannot be encoded: %v", err))
	}
	var out Record
	if err := json.Unmarshal(raw, &out); err != nil {
		panic(fmt.Sprintf("workflow: a record that cannot be decoded: %v", err))
	}
	return &out
}
