package workflow

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Errors returned by Runner.Run before any step runs.
var (
	// ErrInputsChanged is wrapped by *InputsChangedError: the recorded run
	// used different inputs and the caller did not ask for a restart.
	ErrInputsChanged = errors.New("inputs changed since the recorded run")
	// ErrNoSteps is returned for a workflow without steps.
	ErrNoSteps = errors.New("workflow has no steps")
)

// Errors returned while a workflow runs.
var (
	// ErrStepFailed is wrapped by *StepError.
	ErrStepFailed = errors.New("step failed")
	// ErrInterrupted is the cause recorded when the run's context was
	// cancelled (SIGINT, SIGTERM, SIGHUP) while a step ran.
	ErrInterrupted = errors.New("interrupted")
	// ErrPanic is wrapped by errors built from a recovered panic.
	ErrPanic = errors.New("panic")
	// ErrRunGone is recorded, with ErrInterrupted, on a step that an
	// earlier run left started: that run ended (SIGKILL, a closed
	// terminal, a crash or a reboot) without recording an outcome. The
	// next run records it before it resumes.
	ErrRunGone = errors.New("run ended without recording an outcome")
)

// Errors for values a step saves for later.
var (
	// ErrValueConflict is returned by SaveOnce when a different value is
	// already recorded under the same name.
	ErrValueConflict = errors.New("a different value is already recorded")
)

// Change is one input that differs from the recorded run.
type Change struct {
	Name string `json:"name"`
	// Path is where the config file sets it, when that is not Name
	// (Runner.InputPath).
	Path string `json:"config_path,omitempty"`
	Was  string `json:"was"`
	Now  string `json:"now"`
}

func (c Change) String() string {
	name := c.Name
	if c.Path != "" {
		name = c.Path
	}
	switch {
	case c.Was == "":
		return fmt.Sprintf("%s (added: %q)", name, c.Now)
	case c.Now == "":
		return fmt.Sprintf("%s (removed, was %q)", name, c.Was)
	default:
		return fmt.Sprintf("%s (was %q, now %q)", name, c.Was, c.Now)
	}
}

// InputsChangedError lists what differs between the recorded inputs and
// the inputs of this run.
type InputsChangedError struct {
	Workflow string
	Changes  []Change
}

func (e *InputsChangedError) Error() string {
	parts := make([]string, len(e.Changes))
	for i, c := range e.Changes {
		parts[i] = c.String()
	}
	return fmt.Sprintf("%s: inputs changed since the recorded run: %s; rerun with --restart to start again from step 1",
		e.Workflow, strings.Join(parts, "; "))
}

func (e *InputsChangedError) Unwrap() error { return ErrInputsChanged }

// DiffInputs returns the inputs that differ between was and now, sorted by name.
func DiffInputs(was, now map[string]string) []Change {
	var out []Change
	for k, v := range now {
		if w, ok := was[k]; !ok || w != v {
			out = append(out, Change{Name: k, Was: was[k], Now: v})
		}
	}
	for k, w := range was {
		if _, ok := now[k]; !ok {
			out = append(out, Change{Name: k, Was: w})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// StepError is returned by Runner.Run when a step fails.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string { return fmt.Sprintf("step %s failed: %v", e.Step, e.Err) }

// Unwrap returns both the sentinel and the cause, so errors.Is works for each.
func (e *StepError) Unwrap() []error { return []error{ErrStepFailed, e.Err} }

// PanicError is a panic recovered from a step.
type PanicError struct {
	Value any
	Stack string
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

func (e *PanicError) Unwrap() error { return ErrPanic }

// Permanent marks an error that a rerun cannot fix without operator action
// (a bad setting, a safety check that refused). It is recorded as such.
type Permanent struct{ Err error }

func (e *Permanent) Error() string { return e.Err.Error() }
func (e *Permanent) Unwrap() error { return e.Err }

// IsPermanent reports whether err is marked permanent.
func IsPermanent(err error) bool {
	var p *Permanent
	return errors.As(err, &p)
}
