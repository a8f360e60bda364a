package workflow

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime/debug"
	"sort"
	"time"

	"go.uber.org/zap"
)

// RunContext is what a running step sees of the engine.
type RunContext struct {
	RunID string
	Role  Role
	Step  string
	Log   *zap.Logger // carries run_id and step
	Now   func() time.Time

	store    Store
	key      string
	fp       func(step string, point FailpointName) error
	progress *progressTracker
}

// Progress reports how far part of the running step got: done out of
// total bytes (total 0 when unknown). Call it as often as the work
// advances; the runner hands it on to its ProgressSink (the sidecar file
// that `sdr status` reads, the console's progress line) at most every
// Runner.ProgressEvery, and when the step ends it keeps what each part
// moved and how long that took (Transfer). It never fails the step.
func (rc *RunContext) Progress(part string, done, total int64) {
	if rc.progress != nil {
		rc.progress.update(part, done, total)
	}
}

// EndProgress says that part of the running step has ended (finished or
// failed): it is no longer shown. The runner ends every part when the
// step returns.
func (rc *RunContext) EndProgress(part string) {
	if rc.progress != nil {
		rc.progress.end(part)
	}
}

// SetPhase records, in its own transaction, the phase that part of the
// running step has reached (for example a node of a rebuild and
// "copied"). A rerun of the step reads it back with Phase, and must still
// check that reality agrees before it skips work.
func (rc *RunContext) SetPhase(ctx context.Context, part, phase string) error {
	return rc.SetPhases(ctx, map[string]string{part: phase})
}

// SetPhases records the phases of several parts in one transaction, so
// that a rerun sees all of them or none (for example every node that one
// copy reached at once). An empty phase removes the part's record.
func (rc *RunContext) SetPhases(ctx context.Context, phases map[string]string) error {
	return rc.store.Update(ctx, rc.key, rc.Role, func(rec **Record, _ *Side) error {
		if *rec == nil {
			return fmt.Errorf("while recording phases %v: workflow %s has no record", phases, rc.key)
		}
		sr := (*rec).Step(rc.Step)
		if sr == nil {
			return fmt.Errorf("while recording phases %v: workflow %s has no step %s", phases, rc.key, rc.Step)
		}
		if sr.Phases == nil {
			sr.Phases = map[string]string{}
		}
		for part, phase := range phases {
			if phase == "" {
				delete(sr.Phases, part)
			} else {
				sr.Phases[part] = phase
			}
		}
		return nil
	})
}

// Phase returns the phase recorded for part of the running step, or "".
func (rc *RunContext) Phase(ctx context.Context, part string) (string, error) {
	rec, err := rc.store.Load(ctx, rc.key)
	if err != nil || rec == nil {
		return "", err
	}
	if sr := rec.Step(rc.Step); sr != nil {
		return sr.Phases[part], nil
	}
	return "", nil
}

// Failpoint fires the named failpoint of the running step, for the
// recorded phases inside a long step (see docs/failpoints.md). It does
// nothing in a normal build.
func (rc *RunContext) Failpoint(point string) error {
	if rc.fp == nil {
		return hitFailpoint(rc.Step, FailpointName(point))
	}
	return rc.fp(rc.Step, FailpointName(point))
}

// Value returns a value saved by an earlier step or run.
func (rc *RunContext) Value(ctx context.Context, name string) (string, bool, error) {
	rec, err := rc.store.Load(ctx, rc.key)
	if err != nil {
		return "", false, err
	}
	if rec == nil {
		return "", false, nil
	}
	v, ok := rec.Values[name]
	return v, ok, nil
}

// SaveOnce records value under name unless a value is already recorded,
// and returns the recorded value. Values are write-once: a rerun never
// overwrites the original (for example a setting's value before sdr
// changed it).
func (rc *RunContext) SaveOnce(ctx context.Context, name, value string) (string, error) {
	var out string
	err := rc.store.Update(ctx, rc.key, rc.Role, func(rec **Record, _ *Side) error {
		if *rec == nil {
			return fmt.Errorf("while saving %s: workflow %s has no record", name, rc.key)
		}
		r := *rec
		if old, ok := r.Values[name]; ok {
			out = old
			return nil
		}
		if r.Values == nil {
			r.Values = map[string]string{}
		}
		r.Values[name] = value
		out = value
		return nil
	})
	return out, err
}

// Forget removes the value saved under name, if any. A step uses it for a
// record that a later step consumes (for example "sdr changed setting X
// from A to B", deleted once X is put back), so that the next run does not
// act on it again. Forgetting a missing value is not an error.
func (rc *RunContext) Forget(ctx context.Context, name string) error {
	return rc.store.Update(ctx, rc.key, rc.Role, func(rec **Record, _ *Side) error {
		if *rec != nil {
			delete((*rec).Values, name)
		}
		return nil
	})
}

// ValueOf returns a value saved by another workflow of this side (key, for
// example "start/primary"): a later action that undoes what that workflow
// did reads its records of what it changed.
func (rc *RunContext) ValueOf(ctx context.Context, key, name string) (string, bool, error) {
	rec, err := rc.store.Load(ctx, key)
	if err != nil || rec == nil {
		return "", false, err
	}
	v, ok := rec.Values[name]
	return v, ok, nil
}

// ForgetOf removes the value saved under name by workflow key of this
// side, once this step has consumed it (see Forget). A missing record or
// value is not an error.
func (rc *RunContext) ForgetOf(ctx context.Context, key, name string) error {
	return rc.store.Update(ctx, key, rc.Role, func(rec **Record, _ *Side) error {
		if *rec != nil {
			delete((*rec).Values, name)
		}
		return nil
	})
}

// Options changes how a run starts.
type Options struct {
	// Restart discards the recorded step progress (not the saved values)
	// and starts again from step 1, also when the inputs changed.
	Restart bool
	// NewIfComplete makes a finished record the record of an operation
	// that is over: the run starts a new one, with no steps done and no
	// saved values (a second switchover is a new operation; the first one's
	// transitions stay in the history).
	NewIfComplete bool
	// BeforeSteps, when set, is called once before the run is recorded,
	// and only when the run goes on to run steps (not for a rerun of a
	// complete run, nor for one refused because its inputs changed), with
	// the first step it will run. An error refuses the run with nothing
	// recorded: Run returns it as is. The commands take the DR side's run
	// lock here (steps.Env.HoldSide).
	BeforeSteps func(ctx context.Context, first Step) error
}

// FirstToRun returns the first step a Run of wf with inputs and opts
// would run now, as the state file stands, and false when it would run
// none (see firstToRun). It only reads.
func (r *Runner) FirstToRun(ctx context.Context, wf Workflow, inputs map[string]string, opts Options) (Step, bool, error) {
	rec, err := r.Store.Load(ctx, wf.Key())
	if err != nil {
		return Step{}, false, err
	}
	side, err := r.Store.LoadSide(ctx, wf.Role)
	if err != nil {
		return Step{}, false, err
	}
	first, ok := firstToRun(wf, rec, side, Fingerprint(inputs), opts)
	return first, ok, nil
}

// firstToRun returns the first step Run runs, finding rec and side
// recorded, and false when it runs none: rec is a current complete record
// (a rerun of a finished run), or rec is current and the inputs differ
// without Restart (the run is refused). It decides as Run's first
// transaction does.
func firstToRun(wf Workflow, rec *Record, side Side, fp string, opts Options) (Step, bool) {
	if rec != nil && rec.Complete && opts.NewIfComplete {
		rec = nil
	}
	fresh := rec == nil || rec.SupersededBy(side) != "" || opts.Restart
	if !fresh && (rec.Fingerprint != fp || rec.Complete) {
		return Step{}, false
	}
	for _, s := range wf.Steps {
		if !s.AppliesTo(wf.Role) {
			continue
		}
		if !fresh {
			if sr := rec.Step(s.Name); sr != nil && sr.Status.Finished() {
				continue
			}
		}
		return s, true
	}
	return Step{}, false
}

// Result tells what a run did.
type Result struct {
	RunID           string
	AlreadyComplete bool
	Ran             []string // steps run in this invocation
	Skipped         []string // steps recorded as skipped in this invocation
	State           State
	// Interrupted lists the steps an earlier run left started (it was
	// killed): this run recorded them as failed, with their failure
	// states, before it resumed.
	Interrupted []Interruption
	// SupersededBy names the workflow (e.g. "stop/primary") that changed
	// the side after this workflow's recorded run: the record was replaced
	// and this run started at step 1. Empty otherwise.
	SupersededBy string
}

// Interruption is a step that an earlier run left started.
type Interruption struct {
	Step    string
	RunID   string     // the run that was killed
	Started *time.Time // when that run started the step
}

// Runner executes workflows against a Store.
type Runner struct {
	Store Store
	Log   *zap.Logger
	Now   func() time.Time
	// NewRunID returns a fresh run id; injected so tests are repeatable.
	NewRunID func() string
	// Failpoint is called at the named points of each step; see failpoint.go.
	Failpoint func(step string, point FailpointName) error
	// Progress receives what running steps report with
	// RunContext.Progress; nil drops it.
	Progress ProgressSink
	// ProgressEvery is how often, at most, Progress is called while a
	// part advances; default DefaultProgressEvery.
	ProgressEvery time.Duration
	// InputPath, when set, says where the config file sets an input
	// (Change.Path); the recorded names stay as they are.
	InputPath func(name string) string
}

// diffInputs is DiffInputs with each change's Path from r.InputPath.
func (r *Runner) diffInputs(was, now map[string]string) []Change {
	out := DiffInputs(was, now)
	if r.InputPath != nil {
		for i := range out {
			if p := r.InputPath(out[i].Name); p != out[i].Name {
				out[i].Path = p
			}
		}
	}
	return out
}

// Fingerprint returns a stable hash of the inputs.
func Fingerprint(inputs map[string]string) string {
	keys := make([]string, 0, len(inputs))
	for k := range inputs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%q=%q\n", k, inputs[k])
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now().UTC()
	}
	return time.Now().UTC()
}

func (r *Runner) log() *zap.Logger {
	if r.Log != nil {
		return r.Log
	}
	return zap.NewNop()
}

func (r *Runner) failpoint(step string, p FailpointName) error {
	if r.Failpoint != nil {
		return r.Failpoint(step, p)
	}
	return hitFailpoint(step, p)
}

// Run executes wf from its first unfinished step. It returns a *StepError
// when a step fails, an *InputsChangedError when the inputs differ from the
// recorded run and opts.Restart is false.
//
// A record that another workflow of the side superseded (Record.SupersededBy:
// for example a start record after a stop changed the side) is not resumed,
// compared or reported complete: the run replaces its step records and
// starts at step 1 with the inputs given, keeping the saved values, as
// with opts.Restart. The first step that changes something (not CheckOnly)
// marks the side as changed by wf (Side.ChangedBy) in the transaction that
// records it started.
//
// The caller holds the state file's run lock, so a step recorded as
// started belongs to a run that is gone (killed, its terminal closed).
// Before it resumes, Run records each such step as failed with an
// interrupted error, and applies the step's OnFail state, in the same
// transaction that starts this run (also with opts.Restart, before the
// step records are replaced). A refused run (inputs changed) records nothing.
func (r *Runner) Run(ctx context.Context, wf Workflow, inputs map[string]string, opts Options) (Result, error) {
	if err := wf.Validate(); err != nil {
		return Result{}, err
	}
	key := wf.Key()
	fp := Fingerprint(inputs)
	runID := ""
	if r.NewRunID != nil {
		runID = r.NewRunID()
	}
	res := Result{RunID: runID}
	if opts.BeforeSteps != nil {
		first, ok, err := r.FirstToRun(ctx, wf, inputs, opts)
		if err != nil {
			return res, err
		}
		if ok {
			if err := opts.BeforeSteps(ctx, first); err != nil {
				return res, err
			}
		}
	}
	var complete bool
	err := r.Store.Update(ctx, key, wf.Role, func(recp **Record, side *Side) error {
		now := r.now()
		rec := *recp
		if rec != nil && rec.Complete && opts.NewIfComplete {
			rec = nil
		}
		if rec != nil {
			res.SupersededBy = rec.SupersededBy(*side)
		}
		current := rec != nil && res.SupersededBy == ""
		if current && rec.Fingerprint != fp && !opts.Restart {
			return &InputsChangedError{Workflow: key, Changes: r.diffInputs(rec.Inputs, inputs)}
		}
		if current {
			res.Interrupted = recordRunGone(wf, rec, side, runID, now)
		}
		if !current || opts.Restart {
			fresh := &Record{Workflow: key, Action: wf.Action, Role: wf.Role, Created: now}
			if rec != nil {
				fresh.Values = rec.Values
				fresh.Runs = rec.Runs
				fresh.Created = rec.Created
			}
			for _, s := range wf.Steps {
				fresh.Steps = append(fresh.Steps, StepRecord{Num: s.Num, Name: s.Name, Status: StatusPending})
			}
			rec = fresh
		}
		rec.Fingerprint, rec.Inputs = fp, inputs
		rec.SideChanges = side.Changes
		if rec.Complete {
			complete = true
			res.State = side.State
			return nil
		}
		// A workflow definition may gain steps; keep records in step order.
		for _, s := range wf.Steps {
			if rec.Step(s.Name) == nil {
				rec.Steps = append(rec.Steps, StepRecord{Num: s.Num, Name: s.Name, Status: StatusPending})
			}
		}
		sort.SliceStable(rec.Steps, func(i, j int) bool { return rec.Steps[i].Num < rec.Steps[j].Num })
		rec.RunID = runID
		rec.Runs++
		rec.Updated = now
		if side.State == "" {
			side.State, side.Since, side.RunID = StateNormal, now, runID
		}
		*recp = rec
		return nil
	})
	if err != nil {
		return res, err
	}
	log := r.log().With(zap.String("run_id", runID))
	if res.SupersededBy != "" {
		log.Info("the recorded run of "+key+" was superseded by a later "+res.SupersededBy+": this run starts at step 1",
			zap.String("superseded_by", res.SupersededBy))
	}
	for _, in := range res.Interrupted {
		log.Warn("the run that started this step is gone (killed, or its terminal closed): recorded the step as interrupted",
			zap.String("step", in.Step), zap.String("gone_run_id", in.RunID))
	}
	if complete {
		res.AlreadyComplete = true
		return res, nil
	}
	for _, s := range wf.Steps {
		ran, skipped, err := r.runStep(ctx, wf, s, runID, log)
		if ran {
			res.Ran = append(res.Ran, s.Name)
		}
		if skipped {
			res.Skipped = append(res.Skipped, s.Name)
		}
		if err != nil {
			res.State = r.sideState(ctx, wf.Role)
			return res, err
		}
	}
	err = r.Store.Update(ctx, key, wf.Role, func(recp **Record, side *Side) error {
		now := r.now()
		(*recp).Complete, (*recp).Finished, (*recp).Updated = true, &now, now
		res.State = side.State
		return nil
	})
	return res, err
}

// recordRunGone marks every step that rec shows started as failed (the run
// that started it is gone) and applies the step's failure state to side.
func recordRunGone(wf Workflow, rec *Record, side *Side, runID string, now time.Time) []Interruption {
	var out []Interruption
	for i := range rec.Steps {
		sr := &rec.Steps[i]
		if sr.Status != StatusStarted {
			continue
		}
		out = append(out, Interruption{Step: sr.Name, RunID: rec.RunID, Started: sr.Started})
		err := fmt.Errorf("%w: %w (run %s, while %s ran: SIGKILL, a closed terminal, a crash or a reboot); recorded by run %s",
			ErrInterrupted, ErrRunGone, orUnknown(rec.RunID), sr.Name, orUnknown(runID))
		sr.Status, sr.Error = StatusFailed, NewErrorRecord(err)
		sr.Ended = nil // unknown: the run died without a word
		for _, s := range wf.Steps {
			if s.Name == sr.Name && s.OnFail != "" && s.OnFail != side.State {
				side.State, side.Since, side.RunID, side.Step = s.OnFail, now, runID, s.Name
			}
		}
	}
	return out
}

func orUnknown(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}

func (r *Runner) sideState(ctx context.Context, role Role) State {
	side, err := r.Store.LoadSide(context.WithoutCancel(ctx), role)
	if err != nil {
		return ""
	}
	return side.State
}

// setStep writes one step transition, and the state it causes, in one transaction.
func (r *Runner) setStep(ctx context.Context, wf Workflow, s Step, runID string, fn func(sr *StepRecord, now time.Time) State) error {
	return r.setStepValues(ctx, wf, s, runID, nil, fn)
}

// setStepValues is setStep that also sets vals in the record's values,
// replacing what was there (the transfers the step measured).
func (r *Runner) setStepValues(ctx context.Context, wf Workflow, s Step, runID string, vals map[string]string, fn func(sr *StepRecord, now time.Time) State) error {
	return r.Store.Update(ctx, wf.Key(), wf.Role, func(recp **Record, side *Side) error {
		rec := *recp
		if rec == nil {
			return fmt.Errorf("workflow %s has no record", wf.Key())
		}
		if len(vals) > 0 && rec.Values == nil {
			rec.Values = map[string]string{}
		}
		for k, v := range vals {
			rec.Values[k] = v
		}
		sr := rec.Step(s.Name)
		if sr == nil {
			return fmt.Errorf("workflow %s has no record of step %s", wf.Key(), s.Name)
		}
		now := r.now()
		rec.Updated = now
		if st := fn(sr, now); st != "" && st != side.State {
			side.State, side.Since, side.RunID, side.Step = st, now, runID, s.Name
		}
		if sr.Status == StatusStarted && !s.CheckOnly {
			side.ChangedBy = wf.Key()
			side.Changes++
		}
		return nil
	})
}

// runStep runs one step unless it is already finished. ran tells whether
// the step's Run was called, skipped whether it was recorded as skipped now.
func (r *Runner) runStep(ctx context.Context, wf Workflow, s Step, runID string, log *zap.Logger) (ran, skipped bool, err error) {
	rec, err := r.Store.Load(ctx, wf.Key())
	if err != nil {
		return false, false, err
	}
	if sr := rec.Step(s.Name); sr != nil && sr.Status.Finished() {
		return false, false, nil
	}
	log = log.With(zap.String("step", s.Name))
	// Checkpoints are written even after cancellation, so that an
	// interrupted run is recorded as such.
	wctx := context.WithoutCancel(ctx)
	if !s.AppliesTo(wf.Role) {
		log.Debug("skipped: nothing to do for this role", zap.String("role", string(wf.Role)))
		err := r.setStep(wctx, wf, s, runID, func(sr *StepRecord, now time.Time) State {
			sr.Status, sr.Ended, sr.Error = StatusSkipped, &now, nil
			return ""
		})
		return false, err == nil, err
	}
	if err := ctx.Err(); err != nil {
		// Interrupted between steps: record it on the step that was next,
		// without running it or changing the side's state.
		err = fmt.Errorf("%w before %s started: %w", ErrInterrupted, s.Name, err)
		rec := NewErrorRecord(err)
		if werr := r.setStep(wctx, wf, s, runID, func(sr *StepRecord, now time.Time) State {
			sr.Status, sr.Ended, sr.Error = StatusFailed, &now, rec
			return ""
		}); werr != nil {
			return false, false, errors.Join(&StepError{Step: s.Name, Err: err}, fmt.Errorf("while recording the interruption: %w", werr))
		}
		log.Error("interrupted before the step started", zap.Error(err))
		return false, false, &StepError{Step: s.Name, Err: err}
	}
	if err := r.setStep(wctx, wf, s, runID, func(sr *StepRecord, now time.Time) State {
		sr.Status, sr.Started, sr.Ended, sr.Error = StatusStarted, &now, nil, nil
		sr.Attempts++
		return s.OnStart
	}); err != nil {
		return false, false, err
	}
	log.Info(s.Short)
	rc := &RunContext{RunID: runID, Role: wf.Role, Step: s.Name, Log: log, Now: r.now, store: r.Store, key: wf.Key(), fp: r.failpoint}
	rc.progress = newProgressTracker(runID, s.Name, r.ProgressEvery, r.now, r.Progress, func(err error) {
		log.Warn("could not hand on the step's progress (sdr status will not show it)", zap.Error(err))
	})
	err = r.safeRun(ctx, s, rc)
	transfers := transferValues(s.Name, runID, rc.progress.close())
	if err == nil {
		err = r.failpoint(s.Name, FailAfterEffects)
	}
	if err != nil {
		if ctx.Err() != nil && !errors.Is(err, ErrInterrupted) {
			err = fmt.Errorf("%w: %w", ErrInterrupted, err)
		}
		rec := NewErrorRecord(err)
		if werr := r.setStepValues(wctx, wf, s, runID, transfers, func(sr *StepRecord, now time.Time) State {
			sr.Status, sr.Ended, sr.Error = StatusFailed, &now, rec
			return s.OnFail
		}); werr != nil {
			return true, false, errors.Join(&StepError{Step: s.Name, Err: err}, fmt.Errorf("while recording the failure: %w", werr))
		}
		fields := []zap.Field{zap.Error(err)}
		var pe *PanicError
		if errors.As(err, &pe) {
			fields = append(fields, zap.String("stack", pe.Stack))
		}
		log.Error("step failed", fields...)
		return true, false, &StepError{Step: s.Name, Err: err}
	}
	if err := r.setStepValues(wctx, wf, s, runID, transfers, func(sr *StepRecord, now time.Time) State {
		sr.Status, sr.Ended, sr.Error = StatusDone, &now, nil
		return s.OnDone
	}); err != nil {
		return true, false, err
	}
	log.Debug("step done")
	if err := r.failpoint(s.Name, FailAfterCheckpoint); err != nil {
		return true, false, &StepError{Step: s.Name, Err: err}
	}
	return true, false, nil
}

// safeRun runs the step, turning a panic into a *PanicError.
func (r *Runner) safeRun(ctx context.Context, s Step, rc *RunContext) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: string(debug.Stack())}
		}
	}()
	if err := r.failpoint(s.Name, FailBefore); err != nil {
		return err
	}
	if s.Run == nil {
		return nil
	}
	return s.Run(ctx, rc)
}
