// Package workflow is sdr's generic resumable step engine.
//
// A Workflow is an ordered list of numbered Steps for one action and role
// (for example start/standby). The Runner executes the steps in order and
// checkpoints every transition through the small Store interface declared
// here: a step is recorded as started before its first side effect and as
// done after its last, so a rerun resumes at the first step that is not done.
// A DR state change that a step causes is written in the same store
// transaction as the step record.
//
// A long step reports how far each of its parts got with
// RunContext.Progress; the runner measures the rate and the time left and
// hands the step's progress to a ProgressSink at most once a second (the
// command line writes it to a sidecar file that `sdr status` reads, and
// draws the console's progress line).
//
// Runner.Plan walks a workflow the way Run would, without recording
// anything or changing any node: steps that only look run, every other
// step answers with its Plan (plan.go). `sdr plan` prints the result.
//
// The package knows nothing about PostgreSQL, SSH or bbolt: the store
// package implements Store, and the steps package builds the workflows.
package workflow
