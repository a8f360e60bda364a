package main

import (
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"
	"go.uber.org/zap"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/steps"
	"github.com/pgsdr/sdr/store"
	"github.com/pgsdr/sdr/workflow"
)

func switchoverCommand() *cli.Command {
	return &cli.Command{
		Name:      "switchover",
		Usage:     "swap the data centres with zero data loss: --role primary demotes this side, --role standby promotes it (resumable)",
		UsageText: "sdr --config FILE --state FILE switchover --role primary|standby [--timeout D] [--max-lag BYTES] [--token T] [--abort]",
		Description: `A planned switchover has two halves, one per side, started at the same time or one
after the other in either order. They meet through PostgreSQL, not through each other.
Steps:
` + steps.SwitchoverHelp() + `
--role primary (the demote half, on the primary side) refuses unless the main standby
streams with at most --max-lag bytes of lag, stops the primary with a fast shutdown,
checks that pg_control says "shut down", and records the token (system identifier,
timeline, shutdown checkpoint and REDO). It starts the old primary again only as a
standby of the new primary, once the new primary's timeline provably forked after that
checkpoint: no copy is made. The old primary's in-cluster standbys follow it.

--role standby (the promote half, on the DR side) waits until the main standby has
replayed the old primary's shutdown checkpoint, then promotes it. With --token (printed
by the demote half) it checks the main standby against it; without, against what
PostgreSQL alone proves: no walreceiver streams, everything received is replayed, and
the last checkpoint replayed is a shutdown checkpoint right before the end of replay.

--abort (with --role primary) brings the old primary back as the primary, only while the
DR side's main standby provably did not promote (still in recovery on the old timeline).

At the end each side says which config field to change (primary:).`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "role", Required: true, Usage: "`primary` (demote this side) or standby (promote this side)"},
			&cli.DurationFlag{Name: "timeout", Usage: "how long each half waits for the other; default timeouts.wait from the config"},
			&cli.Int64Flag{Name: "max-lag", Value: 16 << 20, Usage: "demote half: refuse unless the main standby is at most `BYTES` behind the primary"},
			&cli.StringFlag{Name: "token", Usage: "promote half: the token the demote half printed; the main standby is checked against it"},
			&cli.BoolFlag{Name: "abort", Usage: "with --role primary: bring the old primary back as the primary, if the DR side provably did not promote"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("switchover takes no arguments, got %q", c.Args().Slice())
			}
			role, err := workflow.ParseRole(c.String("role"))
			if err != nil {
				return usagef("--role: %w", err)
			}
			if c.Bool("abort") && role != workflow.RolePrimary {
				return usagef("--abort applies to the demote half (--role primary) only")
			}
			if c.String("token") != "" && role != workflow.RoleStandby {
				return usagef("--token applies to the promote half (--role standby) only")
			}
			if c.Int64("max-lag") < 0 {
				return usagef("--max-lag must not be negative")
			}
			return runSwitchover(c, readGlobals(c), role)
		},
	}
}

func runSwitchover(c *cli.Context, g globals, role workflow.Role) error {
	ctx := c.Context
	timeout := c.Duration("timeout")
	if timeout < 0 {
		return usagef("--timeout must be positive, got %s", timeout)
	}
	cfg, err := loadConfig(g)
	if err != nil {
		return err
	}
	password, err := cfg.Password()
	if err != nil {
		return usageErr(err)
	}
	if timeout == 0 {
		timeout = cfg.Timeouts.Wait.Duration
	}
	log, closeLog, err := newLogger(c.App.ErrWriter, g.logFile, g.verbose)
	if err != nil {
		return err
	}
	defer closeLog()
	db, err := openStore(g, cfg.Name, role, cfg.ClusterOf(string(role)))
	if err != nil {
		return err
	}
	now := time.Now()
	runID := newRunID(now)
	cmdLog := log.With(zap.String("run_id", runID), zap.String("step", "-"))
	host, _ := os.Hostname()
	command := "switchover --role " + string(role)
	if c.Bool("abort") {
		command += " --abort"
	}
	lock, err := store.Acquire(db.Path(), store.Holder{PID: os.Getpid(), Host: host, Started: now.UTC(), RunID: runID, Command: command}, 2*time.Second)
	if err != nil {
		return usageErr(err)
	}
	defer lock.Release()
	if cfg.SSH.InsecureIgnoreHostKey {
		cmdLog.Warn("ssh.insecure_ignore_host_key is set: SSH host keys are NOT verified")
	}
	pool := cluster.Open(ctx, cfg, cmdLog)
	defer pool.Close()
	env := &steps.Env{Config: cfg, Pool: pool, Password: password, Timeout: timeout}
	var wf workflow.Workflow
	if c.Bool("abort") {
		wf = steps.SwitchoverAbort(env)
	} else {
		wf = steps.Switchover(role, env, steps.SwitchoverOptions{MaxLag: c.Int64("max-lag"), Token: c.String("token")})
	}
	inputs := cfg.Inputs()
	inputs["action"], inputs["role"] = wf.Action, string(role)
	runner := &workflow.Runner{Store: db, Log: log, NewRunID: func() string { return runID }}
	cmdLog.Info(fmt.Sprintf("sdr %s for DR pair %s: cluster %s (state file %s)", command, cfg.Name, cfg.ClusterOf(string(role)), db.Path()))
	// A finished switchover is over: running the command again starts a
	// new one (whose checks refuse it when nothing is to be switched).
	res, err := runner.Run(ctx, wf, inputs, workflow.Options{NewIfComplete: true})
	if rerr := reportRun(c, wf, cfg.Name, res, err); rerr != nil {
		return rerr
	}
	if !c.Bool("abort") {
		fmt.Fprintf(c.App.Writer, "Cluster %s is the primary now. Change the config on both sides: primary: %s\n", cfg.StandbyName, cfg.StandbyName)
	}
	return nil
}
