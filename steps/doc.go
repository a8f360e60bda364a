// Package steps holds sdr's DR workflows. Start builds the start workflow
// of one role: nine numbered steps whose numbers line up on both sides,
// so step N is the same phase on the primary and on the standby side. A
// step that has nothing to do for a role is recorded as skipped. Stop
// builds the stop workflow of one role (stop.go): seven steps that take
// that side's half of the pair apart, each tolerating what is already gone.
//
// Every step re-checks the live cluster before it acts (is the slot
// there? is the node already a standby of this primary?), so running it
// again after a crash changes nothing that is already right. Decisions
// are made by pure functions in decide.go and stop_decide.go, which are
// table-tested.
//
// Every step that changes something also has a Plan (plan_*.go), which
// sdr plan calls instead of its Run: it probes as the step does and calls
// the same decisions, and describes what the step would do without doing
// it (workflow.Runner.Plan; the Env of a plan reaches nodes read-only).
//
// Probe (status.go) reads the live facts of every node, and how far each
// standby is behind the primary: `sdr status` and `sdr metrics` both show
// what it returns. A copy reports its progress (pg_basebackup -P, parsed
// in progress.go) through workflow.RunContext.Progress.
//
// Real servers: nodeconf.go finds the configuration a DR node's server
// reads (its data directory, or config_dir such as Debian's /etc) and
// proves a new copy would start with it before the swap; service.go starts
// and stops nodes through their service manager (pg_ctl, pg_ctlcluster,
// systemd, commands) and waits for the real state; pgversion.go holds
// everything that differs between PostgreSQL 13 and 17.
//
// Re-protect after a failover: 7_build_standby rewinds a former primary
// with pg_rewind in place when its pg_control allows it (rewind_decide.go
// decides, s7_rewind.go acts, with its own recorded phases), keeping its
// WAL from the fork on first, and copies it otherwise.
package steps
