package workflow

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"
)

// Role is the side of the DR pair a workflow runs on.
type Role string

// The two roles.
const (
	RolePrimary Role = "primary"
	RoleStandby Role = "standby"
)

// ParseRole checks a role given by the operator.
func ParseRole(s string) (Role, error) {
	switch Role(s) {
	case RolePrimary, RoleStandby:
		return Role(s), nil
	}
	return "", fmt.Errorf("unknown role %q: use primary or standby", s)
}

// State is the DR state of one side.
type State string

// DR states. See docs/runbook.md for what each means and what to do.
const (
	StateNormal       State = "normal"
	StateFullBackup   State = "full_backup"
	StateArchive      State = "archive"
	StateBackupFail   State = "backup_fail"
	StateRestore      State = "restore"
	StateRecovery     State = "recovery"
	StateRestoreFail  State = "restore_fail"
	StateRecoveryFail State = "recovery_fail"
	// StateStop: sdr stop is taking this side's half of the pair apart;
	// a finished stop returns the side to StateNormal.
	StateStop     State = "stop"
	StateStopFail State = "stop_fail"
	// StatePromote is the DR side while sdr failover promotes it;
	// StatePromoteFail when that failed (rerun the failover).
	StatePromote     State = "promote"
	StatePromoteFail State = "promote_fail"
	// StateSwitchover is either side while its half of sdr switchover
	// runs; StateSwitchoverFail when that half failed (rerun it, or abort
	// the demote half).
	StateSwitchover     State = "switchover"
	StateSwitchoverFail State = "switchover_fail"
)

// sideStates lists, per role, every state a side of that role can be in:
// its normal path, then its failure states. A new state belongs here too:
// `sdr metrics` exports one series per listed state.
var sideStates = map[Role][]State{
	RolePrimary: {StateNormal, StateFullBackup, StateArchive, StateStop, StateSwitchover, StateRecovery,
		StateBackupFail, StateStopFail, StateSwitchoverFail},
	RoleStandby: {StateNormal, StateRestore, StateRecovery, StateStop, StatePromote, StateSwitchover, StateArchive,
		StateRestoreFail, StateRecoveryFail, StateStopFail, StatePromoteFail, StateSwitchoverFail},
}

// SideStates returns every state a side of role r can be in (a copy).
func SideStates(r Role) []State { return append([]State(nil), sideStates[r]...) }

// StepStatus is the recorded status of one step.
type StepStatus string

// Step statuses.
const (
	StatusPending StepStatus = "pending"
	StatusStarted StepStatus = "started"
	StatusDone    StepStatus = "done"
	StatusSkipped StepStatus = "skipped"
	StatusFailed  StepStatus = "failed"
)

// Finished reports whether a step in this status is not run again.
func (s StepStatus) Finished() bool { return s == StatusDone || s == StatusSkipped }

// Step is one numbered, idempotent unit of a workflow.
type Step struct {
	Num   int
	Name  string // "N_name", e.g. "7_build_standby"
	Short string // one line for help, status and plans
	Roles []Role // roles the step does something for; others record it as skipped
	// CheckOnly marks a step that only looks: it changes nothing on any
	// node and sets no state. A run that fails before the first step that
	// is not CheckOnly has changed nothing (see Workflow.BeforeAnyChange).
	CheckOnly bool

	// States written in the same transaction as the step record.
	// An empty value leaves the side's state unchanged.
	OnStart State
	OnDone  State
	OnFail  State

	Run func(ctx context.Context, rc *RunContext) error
	// Plan, when set, says what Run would do, without doing it (see
	// Runner.Plan): it probes the nodes and calls the same decisions Run
	// calls, and must change nothing on any node. Values it saves with
	// rc.SaveOnce go to the plan's scratch copy of the record, so that a
	// later step's Plan sees what this step would have saved. For a
	// CheckOnly step, Plan replaces Run in a plan and must run the same
	// checks (usually Run calls it); without Plan, a plan runs Run.
	Plan func(ctx context.Context, rc *RunContext) (PlanEntry, error)
}

// AppliesTo reports whether the step does something for role.
func (s Step) AppliesTo(r Role) bool {
	for _, x := range s.Roles {
		if x == r {
			return true
		}
	}
	return false
}

// Workflow is an ordered list of steps for one action and role.
type Workflow struct {
	Action string
	Role   Role
	Steps  []Step
}

// Key names the workflow in the store, e.g. "start/primary".
func (w Workflow) Key() string { return w.Action + "/" + string(w.Role) }

// BeforeAnyChange reports whether step is, in w, at or before the first
// step that can change something: it and every step before it either only
// check (CheckOnly) or have nothing to do for w's role. A run that failed
// in such a step changed nothing on any node. False for an unknown step.
func (w Workflow) BeforeAnyChange(step string) bool {
	for _, s := range w.Steps {
		if s.AppliesTo(w.Role) && !s.CheckOnly {
			return false
		}
		if s.Name == step {
			return true
		}
	}
	return false
}

// Validate checks that step numbers are increasing and names are "N_name".
func (w Workflow) Validate() error {
	if len(w.Steps) == 0 {
		return ErrNoSteps
	}
	seen := map[string]bool{}
	prev := 0
	for _, s := range w.Steps {
		if s.Num <= prev {
			return fmt.Errorf("workflow %s: step %s: number %d is not after %d", w.Key(), s.Name, s.Num, prev)
		}
		prefix := fmt.Sprintf("%d_", s.Num)
		if len(s.Name) <= len(prefix) || s.Name[:len(prefix)] != prefix {
			return fmt.Errorf("workflow %s: step %q must be named %s<name>", w.Key(), s.Name, prefix)
		}
		if seen[s.Name] {
			return fmt.Errorf("workflow %s: duplicate step %s", w.Key(), s.Name)
		}
		if s.CheckOnly && (s.OnStart != "" || s.OnDone != "" || s.OnFail != "") {
			return fmt.Errorf("workflow %s: step %s only checks but sets states", w.Key(), s.Name)
		}
		seen[s.Name] = true
		prev = s.Num
	}
	return nil
}

// ErrorRecord is the serialisable form of a step's error, kept in the store
// so that a later `sdr status` can still explain what went wrong.
type ErrorRecord struct {
	Type      string   `json:"type"`
	Message   string   `json:"message"`
	Permanent bool     `json:"permanent"`
	Chain     []string `json:"chain,omitempty"`
}

// NewErrorRecord flattens err and its cause chain.
func NewErrorRecord(err error) *ErrorRecord {
	if err == nil {
		return nil
	}
	rec := &ErrorRecord{Message: err.Error(), Permanent: IsPermanent(err)}
	switch {
	case errors.Is(err, ErrPanic):
		rec.Type = "panic"
	case errors.Is(err, ErrInterrupted), errors.Is(err, context.Canceled):
		rec.Type = "interrupted"
	case errors.Is(err, context.DeadlineExceeded):
		rec.Type = "timeout"
	default:
		rec.Type = reflect.TypeOf(err).String()
	}
	for cur := errors.Unwrap(err); cur != nil; cur = errors.Unwrap(cur) {
		rec.Chain = append(rec.Chain, cur.Error())
		if len(rec.Chain) >= 16 {
			break
		}
	}
	return rec
}

// StepRecord is the checkpoint of one step.
type StepRecord struct {
	Num      int          `json:"num"`
	Name     string       `json:"name"`
	Status   StepStatus   `json:"status"`
	Attempts int          `json:"attempts"`
	Started  *time.Time   `json:"started,omitempty"`
	Ended    *time.Time   `json:"ended,omitempty"`
	Error    *ErrorRecord `json:"error,omitempty"`
	// Phases holds how far each part of a long step got (for example
	// "dc2-a" -> "copied" in a rebuild). A step records them with
	// RunContext.SetPhase; they survive reruns of the step, and are
	// forgotten with the rest of the record by --restart.
	Phases map[string]string `json:"phases,omitempty"`
	// Interrupted is never stored: `sdr status` sets it on a step that is
	// started while no live run holds the state file (or a run other than
	// the one that started it does): the run was killed or its terminal
	// closed. The next run records the step as failed (interrupted).
	Interrupted bool `json:"interrupted,omitempty"`
}

// Record is the checkpoint of one workflow on one side.
type Record struct {
	Workflow    string            `json:"workflow"`
	Action      string            `json:"action"`
	Role        Role              `json:"role"`
	RunID       string            `json:"run_id"`
	Fingerprint string            `json:"fingerprint"`
	Inputs      map[string]string `json:"inputs"`
	Created     time.Time         `json:"created"`
	Updated     time.Time         `json:"updated"`
	Complete    bool              `json:"complete"`
	Finished    *time.Time        `json:"finished,omitempty"`
	Runs        int               `json:"runs"`
	Steps       []StepRecord      `json:"steps"`
	// Values are saved by steps for later steps and later runs. They are
	// write-once and survive --restart. They never hold secrets. The
	// runner also keeps here the last Transfer of each part of a step that
	// reported progress (TransferValue), replacing the one before.
	Values map[string]string `json:"values,omitempty"`
	// SideChanges is the side's Changes when this record's last run
	// began: a change of the side by another workflow after that
	// supersedes the record (SupersededBy).
	SideChanges uint64 `json:"side_changes,omitempty"`
}

// Step returns the record of the named step, or nil.
func (r *Record) Step(name string) *StepRecord {
	for i := range r.Steps {
		if r.Steps[i].Name == name {
			return &r.Steps[i]
		}
	}
	return nil
}

// SupersededBy returns the workflow that began changing side after r's
// last run began (side.ChangedBy), or "" when r is still current: no
// other workflow changed the side since, or r's last run came after that
// change (a run that only checked, say a refused failover after a
// switchover). A superseded record is history: the next run of its
// workflow starts at step 1, as if there were no record (saved values are
// kept). In files written before Changes existed, any other workflow that
// changed the side supersedes r.
func (r *Record) SupersededBy(side Side) string {
	if side.ChangedBy == "" || side.ChangedBy == r.Workflow {
		return ""
	}
	if side.Changes > 0 && r.SideChanges >= side.Changes {
		return ""
	}
	return side.ChangedBy
}

// Side is the DR state of one side of the pair.
type Side struct {
	Role  Role      `json:"role"`
	State State     `json:"state"`
	Since time.Time `json:"since"`
	RunID string    `json:"run_id,omitempty"`
	Step  string    `json:"step,omitempty"` // the step whose record caused the state
	// ChangedBy is the workflow (e.g. "stop/primary") whose run last began
	// a step that changes something on this side: the runner sets it in the
	// transaction that records such a step (not CheckOnly) as started. The
	// record of any other workflow of this side is then superseded: its
	// next run starts at step 1 with the inputs it is given (see Runner.Run).
	// Empty in files written before it existed.
	ChangedBy string `json:"changed_by,omitempty"`
	// Changes counts the starts of steps that change something on this
	// side (each sets ChangedBy), so that a record can tell whether the
	// side changed after its last run began (Record.SideChanges). Zero in
	// files written before it existed.
	Changes uint64 `json:"changes,omitempty"`
}

// Store persists workflow records and side states. Each Update is one
// atomic transaction: fn receives the current record (nil when there is
// none yet) and side, and both are written together when it returns nil.
// A store records a history entry when side.State changes.
type Store interface {
	Load(ctx context.Context, key string) (*Record, error)
	LoadSide(ctx context.Context, role Role) (Side, error)
	Update(ctx context.Context, key string, role Role, fn func(rec **Record, side *Side) error) error
}
