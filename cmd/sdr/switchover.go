package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/pgsdr/sdr/steps"
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
			if tok := c.String("token"); tok != "" {
				if err := steps.CheckToken(tok); err != nil {
					return usagef("--token: %v (give the token the demote half printed, whole)", err)
				}
			}
			if _, err := timeoutFlag(c); err != nil {
				return err
			}
			if c.Int64("max-lag") < 0 {
				return usagef("--max-lag must not be negative")
			}
			return runSwitchover(c, readGlobals(c), role)
		},
	}
}

func runSwitchover(c *cli.Context, g globals, role workflow.Role) error {
	cfg, password, timeout, err := runConfig(g, c.Duration("timeout"), true)
	if err != nil {
		return err
	}
	command := "switchover --role " + string(role)
	if c.Bool("abort") {
		command += " --abort"
	}
	s, err := openSession(c, g, cfg, role, cfg.ClusterOf(string(role)), command, nil)
	if err != nil {
		return err
	}
	defer s.close()
	env := &steps.Env{Config: cfg, Pool: s.pool, Password: password, Timeout: timeout}
	defer env.Close()
	var wf workflow.Workflow
	if c.Bool("abort") {
		wf = steps.SwitchoverAbort(env)
	} else {
		wf = steps.Switchover(role, env, steps.SwitchoverOptions{MaxLag: c.Int64("max-lag"), Token: c.String("token")})
	}
	// A finished switchover is over: running the command again starts a
	// new one (whose checks refuse it when nothing is to be switched).
	res, err := s.run(c, cfg, wf, nil, workflow.Options{NewIfComplete: true, BeforeSteps: s.holdSide(env, wf)})
	if rerr := reportRun(c, wf, cfg.Name, res, err); rerr != nil {
		return rerr
	}
	if !c.Bool("abort") {
		fmt.Fprintf(c.App.Writer, "Cluster %s is the primary now. Change the config on both sides: primary: %s\n", cfg.StandbyName, cfg.StandbyName)
	}
	return nil
}
