package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"go.uber.org/zap"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/steps"
)

// Run runs the sdr command line and returns the process exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := NewApp(stdout, stderr)
	err := app.RunContext(ctx, args)
	if err != nil {
		fmt.Fprintf(stderr, "sdr: %s\n", oneLine(err))
	}
	return exitCode(err)
}

// oneLine keeps an error on one line for the operator.
func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", " ")), " ")
}

// globals are the flags every subcommand shares.
type globals struct {
	config, state, logFile string
	verbose                bool
}

func readGlobals(c *cli.Context) globals {
	return globals{
		config:  c.String("config"),
		state:   c.String("state"),
		logFile: c.String("log-file"),
		verbose: c.Bool("verbose"),
	}
}

// deps is how the commands reach the world outside the state file; tests
// give fakes, so they can drive the real commands without nodes.
type deps struct {
	now   func() time.Time
	probe func(ctx context.Context, cfg *cluster.Config) []steps.NodeStatus // live facts of every node
}

func defaultDeps() deps {
	return deps{
		now: time.Now,
		probe: func(ctx context.Context, cfg *cluster.Config) []steps.NodeStatus {
			pool := cluster.Open(ctx, cfg, zap.NewNop())
			defer pool.Close()
			return steps.Probe(ctx, &steps.Env{Config: cfg, Pool: pool})
		},
	}
}

// NewApp builds the CLI. All output goes to stdout and stderr.
func NewApp(stdout, stderr io.Writer) *cli.App { return newApp(stdout, stderr, defaultDeps()) }

func newApp(stdout, stderr io.Writer, d deps) *cli.App {
	app := &cli.App{
		Name:  "sdr",
		Usage: "set up and watch a streaming disaster-recovery pair of PostgreSQL clusters",
		Description: `Run "sdr start --role primary" on the primary side and "sdr start --role standby"
on the disaster-standby side. Each run is a list of numbered steps checkpointed in
the state file. If a run fails, is killed or loses its network, run the same
command again: it resumes at the step that did not finish. "sdr stop --role ..."
takes a side's half of the pair apart the same way. "sdr plan start --role ..."
(or stop, failover, switchover) runs the checks and says what a run would do,
changing nothing. "sdr status" shows where a side stands (-w to keep watching);
"sdr metrics" exports it for Prometheus.

Exit codes: 0 ok; 1 a step failed (fix the cause, then rerun the same command);
2 refused, nothing was changed: bad usage or config, a refused run, or a check
  in steps 1-2 that a rerun as it is cannot pass (unknown SSH host key, ...);
3 status or metrics found no state file at --state (sdr never ran there).`,
		Writer:          stdout,
		ErrWriter:       stderr,
		HideHelpCommand: true,
		ExitErrHandler:  func(*cli.Context, error) {}, // Run maps errors to exit codes
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, EnvVars: []string{"SDR_CONFIG"}, Usage: "DR pair config `FILE` (see docs/config.md)"},
			&cli.StringFlag{Name: "state", EnvVars: []string{"SDR_STATE"}, Value: "sdr-state.db", Usage: "checkpoint `FILE` of this side (bbolt, mode 0600)"},
			&cli.StringFlag{Name: "log-file", EnvVars: []string{"SDR_LOG_FILE"}, Usage: "append JSON log lines to `FILE`"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "show debug lines on the console"},
		},
		Commands: []*cli.Command{startCommand(), stopCommand(), failoverCommand(), switchoverCommand(), planCommand(), statusCommand(d), metricsCommand(d)},
	}
	app.Commands = append(app.Commands, extraCommands()...)
	return app
}

// errNoConfig is returned when a command needs --config and has none.
var errNoConfig = errors.New("no config file: give --config FILE or set SDR_CONFIG")

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
