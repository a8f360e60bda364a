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
		},
		Action: func(c *cli.Context) error {
			g := readGlobals(c)
			role, err := workflow.ParseRole(c.String("role"))
			if err != nil {
				return usageErr(err)
			}
			log, closeLog, err := newLogger(c.App.ErrWriter, g.logFile, g.verbose)
			if err != nil {
				return err
			}
			defer closeLog()
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
			journal, sleep := c.String("journal"), c.Duration("step-sleep")
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
			runner := &workflow.Runner{Store: db, Log: log, NewRunID: func() string { return runID }}
			res, err := runner.Run(c.Context, wf, map[string]string{"input": c.String("input")}, workflow.Options{Restart: c.Bool("restart")})
			return reportRun(c, wf, "selftest", res, err)
		},
	}}
}
