//go:build failpoints

package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pgsdr/sdr/store"
	"github.com/pgsdr/sdr/workflow"
)

// fakeCopy reports two parts copying total bytes each, evenly over d
// (every 100 ms), as a pg_basebackup of two nodes would, and logs a line
// now and then. The parts end when their copy is done.
func fakeCopy(ctx context.Context, rc *workflow.RunContext, d time.Duration, total int64) error {
	const tick = 100 * time.Millisecond
	t := time.NewTicker(tick)
	defer t.Stop()
	start := time.Now()
	logged := start
	for {
		el := time.Since(start)
		done := total
		if el < d {
			done = int64(float64(total) * float64(el) / float64(d))
		}
		rc.Progress("node-a", done, total)
		rc.Progress("node-b", done/2, total)
		if time.Since(logged) >= time.Second {
			logged = time.Now()
			rc.Log.Info("a log line while copying")
		}
		if done == total {
			rc.EndProgress("node-a")
			rc.EndProgress("node-b")
			return nil
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// extraCommands adds "selftest", only in binaries built with the failpoints
// tag: it runs the engine and the store on a synthetic workflow whose steps
// append their name to a journal file (one line per side effect), so tests
// can kill the real binary at any failpoint and count side effects.
func extraCommands() []*cli.Command {
	return []*cli.Command{{
		Name:   "selftest",
		Hidden: true,
		Usage:  "run a synthetic five-step workflow (test builds only)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "journal", Required: true},
			&cli.StringFlag{Name: "role", Value: "primary"},
			&cli.StringFlag{Name: "input", Value: "a"},
			&cli.BoolFlag{Name: "restart"},
			&cli.DurationFlag{Name: "step-sleep"},
			&cli.Int64Flag{Name: "progress-bytes", Usage: "3_three reports copying this many bytes to two parts over --step-sleep"},
		},
		Action: func(c *cli.Context) error {
			g := readGlobals(c)
			role, err := workflow.ParseRole(c.String("role"))
			if err != nil {
				return usageErr(err)
			}
			out, err := newOutput(c.App.ErrWriter, g.logFile, g.verbose)
			if err != nil {
				return err
			}
			defer out.close()
			log := out.log
			db, err := openStore(g, "selftest", role, "")
			if err != nil {
				return err
			}
			host, _ := os.Hostname()
			runID := newRunID(time.Now())
			lock, err := store.Acquire(db.Path(), store.Holder{PID: os.Getpid(), Host: host, Started: time.Now().UTC(), RunID: runID, Command: "selftest"}, 2*time.Second)
			if err != nil {
				return usageErr(err)
			}
			defer lock.Release()
			journal, sleep, total := c.String("journal"), c.Duration("step-sleep"), c.Int64("progress-bytes")
			mk := func(num int, name string, st workflow.State) workflow.Step {
				return workflow.Step{Num: num, Name: name, Short: "synthetic " + name, Roles: []workflow.Role{role}, OnDone: st,
					Run: func(ctx context.Context, rc *workflow.RunContext) error {
						f, err := os.OpenFile(journal, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
						if err != nil {
							return err
						}
						defer f.Close()
						if _, err := fmt.Fprintln(f, name); err != nil {
							return err
						}
						if total > 0 && name == "3_three" {
							return fakeCopy(ctx, rc, sleep, total)
						}
						select {
						case <-time.After(sleep):
							return nil
						case <-ctx.Done():
							return ctx.Err()
						}
					}}
			}
			// 3_three has the states of the real 7_build_standby.
			three := mk(3, "3_three", workflow.StateRestore)
			three.OnStart, three.OnFail = workflow.StateRestore, workflow.StateRestoreFail
			wf := workflow.Workflow{Action: "selftest", Role: role, Steps: []workflow.Step{
				mk(1, "1_one", ""), mk(2, "2_two", ""), three, mk(4, "4_four", ""), mk(5, "5_five", workflow.StateRecovery),
			}}
			progress, progressDone := runProgress(out, db.Path())
			defer progressDone()
			runner := &workflow.Runner{Store: db, Log: log, NewRunID: func() string { return runID }, Progress: progress}
			res, err := runner.Run(c.Context, wf, map[string]string{"input": c.String("input")}, workflow.Options{Restart: c.Bool("restart")})
			return reportRun(c, wf, "selftest", res, err)
		},
	}}
}
