// Package main is the sdr command: flags, config loading, the logger and
// exit codes. The work is done by the workflow, store, steps and cluster
// packages; every subcommand writes to the writers it is given, so tests
// drive the real app and read what it printed.
//
// status (status.go, status_text.go, watch.go) and metrics (metrics.go,
// metrics_text.go) show the same facts, loaded once by loadStatus: the
// state file, the running step's progress, and with a config the live
// facts of steps.Probe. The console (console.go, progress.go) keeps a
// progress line under the log lines on a terminal.
//
// plan (plan.go, plan_text.go) builds an action's workflow on a read-only
// steps.Env and asks workflow.Runner.Plan what a run would do; it reads
// the state file as status does and writes nothing.
//
// Exit codes: 0 ok, 1 a step failed (rerun the same command to resume),
// 2 bad usage, bad config or a refused run (inputs changed, another run
// holds the state file, a state file of another pair; a plan whose run
// would not go ahead), 3 status or
// metrics found no state file. README.md has the table.
package main
