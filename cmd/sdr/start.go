package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/steps"
	"github.com/pgsdr/sdr/store"
	"github.com/pgsdr/sdr/workflow"
)

func startCommand() *cli.Command {
	return &cli.Command{
		Name:      "start",
		Usage:     "turn this side into its half of the DR pair (resumable: rerun to continue)",
		UsageText: "sdr --config FILE --state FILE start --role primary|standby [--timeout D] [--restart] [--replace-diverged NODE] [--no-rewind] [--reset-replication-password]",
		Description: "Steps (the same numbers on both sides; a step with nothing to do for a role is recorded as skipped):\n" +
			steps.StartHelp() + `
While a node is copied, a terminal shows one progress line under the log lines
(bytes copied of pg_basebackup's estimate, rate, time left); other outputs get a
log line every 10 s per node. sdr status (-w to keep watching) shows it as well.
A rerun with the same config starts at the first step that is not done, after
re-checking the live cluster. A rerun whose config changed is refused and the
changes are named; --restart starts again from step 1 (values saved by earlier
runs are kept: on the primary side, the record that step 4 raised
wal_keep_size, which step 9 consumes).

Re-protect after a failover (--role standby on the old primary cluster, once
primary: names the new one): the former primary is rewound with pg_rewind when
its pg_control shows wal_log_hints on or data checksums, after its WAL from the
fork on and its pg_control are kept in <data_dir>.sdr/diverged-<id>; otherwise
(or with --no-rewind, or after a pg_rewind that did not finish) it is copied
again and its whole data directory is kept there. sdr never deletes either.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "role", Required: true, Usage: "`primary` (run on the primary side) or standby (run on the DR side)"},
			&cli.DurationFlag{Name: "timeout", Usage: "bound for waits (primary: for the main standby to stream; standby: for the primary to accept the replication user, for each pg_basebackup, for streaming); default timeouts.wait from the config"},
			&cli.BoolFlag{Name: "restart", Usage: "forget recorded step progress and start again from step 1 (every DR node is copied again)"},
			&cli.StringSliceFlag{Name: "replace-diverged", Usage: "standby role: allow the rebuild to replace `NODE`'s data directory although it is diverged " +
				"(promoted, may hold writes the primary does not have) or not recognised as an sdr copy; it is moved aside into " +
				"<data_dir>.sdr/diverged-* and kept, never deleted. Repeat for several nodes. Never applies to a primary-cluster node"},
			&cli.BoolFlag{Name: "no-rewind", Usage: "standby role, re-protect after a failover: copy the former primary again (its whole data directory " +
				"is moved aside and kept) instead of rewinding it with pg_rewind, which sdr does when its pg_control shows wal_log_hints on or data checksums"},
			&cli.BoolFlag{Name: "reset-replication-password", Usage: "primary side: set the password of replication.user even though sdr did not create that role for this pair (by default sdr refuses to change it)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("start takes no arguments, got %q", c.Args().Slice())
			}
			role, err := workflow.ParseRole(c.String("role"))
			if err != nil {
				return usagef("--role: %w", err)
			}
			named := c.StringSlice("replace-diverged")
			if len(named) > 0 && role != workflow.RoleStandby {
				return usagef("--replace-diverged applies to --role standby only")
			}
			if c.Bool("no-rewind") && role != workflow.RoleStandby {
				return usagef("--no-rewind applies to --role standby only")
			}
			timeout, err := timeoutFlag(c)
			if err != nil {
				return err
			}
			return runStart(c, readGlobals(c), role, timeout, c.Bool("restart"), named)
		},
	}
}

func newRunID(now time.Time) string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
}

func loadConfig(g globals) (*cluster.Config, error) {
	if g.config == "" {
		return nil, usageErr(errNoConfig)
	}
	cfg, err := cluster.Load(g.config)
	if err != nil {
		return nil, usageErr(err)
	}
	return cfg, nil
}

// openStore opens (or creates) the state file of this side for a run of
// role on cluster: a file of another pair, of the other cluster (or, for a
// file written before clusters were recorded, of the other side) is
// refused (exit 2) and left as it was.
func openStore(g globals, pair string, role workflow.Role, cluster string) (*store.DB, error) {
	db, err := store.Open(g.state, store.Options{Pair: pair, Role: role, Cluster: cluster})
	if err != nil {
		return nil, usageErr(err)
	}
	return db, nil
}

func runStart(c *cli.Context, g globals, role workflow.Role, timeout time.Duration, restart bool, replaceDiverged []string) error {
	ctx := c.Context
	cfg, password, timeout, err := runConfig(g, timeout, true)
	if err != nil {
		return err
	}
	for _, n := range replaceDiverged {
		if _, ok := cfg.Node(n); !ok || cfg.IsPrimaryNode(n) {
			return usagef("--replace-diverged %s: not a node of the standby cluster in %s", n, cfg.Path)
		}
	}
	s, err := openSession(c, g, cfg, role, cfg.ClusterOf(string(role)), "start --role "+string(role),
		func(db *store.DB) error { return checkNotPromoted(ctx, db, cfg, role) })
	if err != nil {
		return err
	}
	defer s.close()
	env := &steps.Env{Config: cfg, Pool: s.pool, Password: password, Timeout: timeout, ReplaceDiverged: replaceDiverged,
		ResetReplicationPassword: c.Bool("reset-replication-password"), NoRewind: c.Bool("no-rewind")}
	defer env.Close()
	wf := steps.Start(role, env)
	res, err := s.run(c, cfg, wf, nil, workflow.Options{Restart: restart, BeforeSteps: s.holdSide(env, wf)})
	return reportRun(c, wf, cfg.Name, res, err)
}

// reportRun prints the outcome of a run and classifies its error.
func reportRun(c *cli.Context, wf workflow.Workflow, pair string, res workflow.Result, err error) error {
	out := c.App.Writer
	var ic *workflow.InputsChangedError
	switch {
	case errors.As(err, &ic):
		return usageErr(err)
	case errors.Is(err, steps.ErrSideLocked) && !errors.As(err, new(*workflow.StepError)):
		fmt.Fprintf(out, "%s for DR pair %s refused before its first step: another sdr run works on this side; nothing was changed or recorded.\n",
			wf.Key(), pair)
		return usageErr(err)
	case err != nil:
		var se *workflow.StepError
		if errors.As(err, &se) {
			if refusedBeforeChange(wf, se) {
				fmt.Fprintf(out, "%s for DR pair %s refused at %s before changing anything; state %s. Fix what the error names, then run the same command again (see docs/runbook.md).\n",
					wf.Key(), pair, se.Step, orDash(string(res.State)))
				return usageErr(err)
			}
			fmt.Fprintf(out, "%s for DR pair %s failed at %s; state %s. Fix the cause and run the same command again to resume (see docs/runbook.md).\n",
				wf.Key(), pair, se.Step, orDash(string(res.State)))
			return err
		}
		return failErr(err)
	case res.AlreadyComplete:
		fmt.Fprintf(out, "%s for DR pair %s is already complete; state %s. Nothing to do.\n", wf.Key(), pair, orDash(string(res.State)))
	default:
		fmt.Fprintf(out, "%s for DR pair %s complete; state %s (ran %s).\n", wf.Key(), pair, orDash(string(res.State)), strings.Join(res.Ran, ", "))
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
