package main

import (
	"errors"
	"fmt"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/steps"
	"github.com/pgsdr/sdr/workflow"
)

// Exit codes. README.md ("Exit codes") says what each means and why.
const (
	ExitOK         = 0
	ExitStepFailed = 1
	ExitUsage      = 2 // also: refused before anything was changed
	ExitNoState    = 3 // status: no state file at --state (sdr never ran there)
)

// codedError carries the exit code for an error.
type codedError struct {
	code int
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

func usageErr(err error) error { return &codedError{code: ExitUsage, err: err} }
func failErr(err error) error  { return &codedError{code: ExitStepFailed, err: err} }

func usagef(format string, args ...any) error { return usageErr(fmt.Errorf(format, args...)) }

// refusedBeforeChange decides whether a failed run gets exit code 2 ("refused,
// nothing changed") rather than 1 ("a step failed, rerun"): it failed in a
// step at or before the first one that can change anything (steps 1 and 2
// of start only check), so no node was changed, and running it again as it
// is cannot succeed: the error is marked permanent, or SSH refused the
// node's host key or sdr's key. An interrupted run, a timeout or any other
// error that a rerun may clear keeps exit code 1.
func refusedBeforeChange(wf workflow.Workflow, se *workflow.StepError) bool {
	if !wf.BeforeAnyChange(se.Step) || errors.Is(se.Err, workflow.ErrInterrupted) {
		return false
	}
	return workflow.IsPermanent(se.Err) || errors.Is(se.Err, cluster.ErrHostKey) || errors.Is(se.Err, cluster.ErrSSHAuth) ||
		errors.Is(se.Err, cluster.ErrSSHFiles) || errors.Is(se.Err, steps.ErrSideLocked)
}

// exitCode maps an error to the process exit code. Errors that the
// actions did not classify come from argument parsing: usage errors.
func exitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var ce *codedError
	if errors.As(err, &ce) {
		return ce.code
	}
	var se *workflow.StepError
	if errors.As(err, &se) {
		return ExitStepFailed
	}
	return ExitUsage
}
