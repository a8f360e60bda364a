package main

import (
	"errors"
	"fmt"

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
