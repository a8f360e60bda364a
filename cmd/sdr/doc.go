// Package main is the sdr command: flags, config loading, the logger and
// exit codes. The work is done by the workflow, store, steps and cluster
// packages; every subcommand writes to the writers it is given, so tests
// drive the real app and read what it printed.
//
// Exit codes: 0 ok, 1 a step failed (rerun the same command to resume),
// 2 bad usage, bad config or a refused run (inputs changed, another run
// holds the state file, a state file of another pair), 3 status found no
// state file. README.md has the table.
package main
