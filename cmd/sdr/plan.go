package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/steps"
	"github.com/pgsdr/sdr/store"
	"github.com/pgsdr/sdr/workflow"
)

// PlanJSONVersion is the version of the `plan --json` document. Fields
// are only ever added within a version. See docs/plan.md.
const PlanJSONVersion = 1

// PlanDoc is the `sdr plan ... --json` document: the run's plan
// (workflow.Plan, inlined) and where it was made.
type PlanDoc struct {
	Version int    `json:"version"`
	Pair    string `json:"pair"`
	// Command is the command the plan is for, e.g. "start --role standby".
	Command   string `json:"command"`
	Config    string `json:"config"`
	StateFile string `json:"state_file"`
	// StateFileExists: false when sdr never ran with this --state; the
	// plan then starts at step 1, and nothing is created.
	StateFileExists bool `json:"state_file_exists"`
	// State is this side's DR state now ("" when the state file holds none).
	State workflow.State `json:"state"`
	// Lock is the live run that holds the state file now, if any: a run
	// now would be refused.
	Lock *store.Holder `json:"lock"`
	*workflow.Plan
}

// planOpts are what a plan needs beyond the config: the flags of the
// action, and how to build its workflow.
type planOpts struct {
	action  string
	role    workflow.Role
	command string // for people: "start --role standby --restart"
	asJSON  bool
	timeout time.Duration
	rate    float64
	// password: the action logs in as replication.user (start, failover,
	// switchover); stop does not need the password.
	password bool
	run      workflow.Options
	inputs   map[string]string // added to the config's inputs, as the action adds them
	env      func(e *steps.Env)
	build    func(e *steps.Env) workflow.Workflow
	// validate checks the flags against the config (bad usage).
	validate func(cfg *cluster.Config) error
	// precheck says why the action would refuse to run, before any step,
	// from the state file (db is nil when there is none).
	precheck func(ctx context.Context, g globals, cfg *cluster.Config, db *store.DB) error
}

// defaultPlanTimeout bounds a check that waits (the standby side's wait
// for the primary to accept the replication user) in a plan.
const defaultPlanTimeout = 10 * time.Second

func planFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "json", Usage: "print the plan as one JSON document (docs/plan.md)"},
		&cli.DurationFlag{Name: "timeout", Value: defaultPlanTimeout, Usage: "how long a check that waits (the standby side waits for the primary " +
			"to accept the replication user) waits in the plan; a run waits its own --timeout"},
		&cli.StringFlag{Name: "copy-rate", Value: "100MiB", Usage: "the copy rate per second a plan assumes for pg_basebackup when the state file " +
			"records no earlier copy of the node (B, KiB, MiB, GiB; KB, MB, GB)"},
	}
}

func planCommand() *cli.Command {
	return &cli.Command{
		Name:      "plan",
		Usage:     "say what start, stop, failover or switchover would do now, step by step, without changing anything",
		UsageText: "sdr --config FILE --state FILE plan start|stop|failover|switchover --role primary|standby [--json] [the action's flags]",
		Description: `Runs every check of the action's workflow against the live nodes (steps 1-2, the
same code a run uses), then asks every later step what it would do, computed by
the same probes and decisions the step runs: the nodes it would stop and rebuild
and why each may be replaced, slots, the exact pg_hba.conf lines and where they go,
settings with their value now and after, the bytes to copy and an estimate of the
time. A step that has already finished in the recorded run is shown as done; the
plan starts where a run would resume, and stops where a run would stop.

It changes nothing: no node is written to (nodes are reached through a read-only
access that refuses writes, and PostgreSQL sessions are read-only), nothing is
recorded, no lock is taken, and a missing state file is not created.

Exit codes: 0 the run would go ahead; 2 it would be refused, or a check did not
pass now (the output names the step and why; the check of the standby side that
waits for the primary is given --timeout, 10s); also 2 for bad usage, config or
state file; 1 interrupted. --json: docs/plan.md.`,
		Subcommands: []*cli.Command{planStartCommand(), planStopCommand(), planFailoverCommand(), planSwitchoverCommand()},
	}
}

func planStartCommand() *cli.Command {
	return &cli.Command{
		Name:        "start",
		Usage:       "plan sdr start --role R",
		Description: "The steps of sdr start, which the plan goes through:\n" + steps.StartHelp(),
		UsageText:   "sdr --config FILE --state FILE plan start --role primary|standby [--json] [--restart] [--replace-diverged NODE] [--reset-replication-password]",
		Flags: append(planFlags(),
			&cli.StringFlag{Name: "role", Required: true, Usage: "`primary` or standby, as for sdr start"},
			&cli.BoolFlag{Name: "restart", Usage: "plan sdr start --restart (from step 1)"},
			&cli.StringSliceFlag{Name: "replace-diverged", Usage: "standby role: as for sdr start (`NODE`)"},
			&cli.BoolFlag{Name: "reset-replication-password", Usage: "primary side: as for sdr start"},
		),
		Action: func(c *cli.Context) error {
			role, err := planArgs(c)
			if err != nil {
				return err
			}
			named := c.StringSlice("replace-diverged")
			if len(named) > 0 && role != workflow.RoleStandby {
				return usagef("--replace-diverged applies to --role standby only")
			}
			o := planOpts{action: "start", role: role, password: true, run: workflow.Options{Restart: c.Bool("restart")},
				command: "start --role " + string(role) + flagsText(c, "restart", "reset-replication-password", "replace-diverged"),
				env: func(e *steps.Env) {
					e.ReplaceDiverged, e.ResetReplicationPassword = named, c.Bool("reset-replication-password")
				},
				build: func(e *steps.Env) workflow.Workflow { return steps.Start(role, e) },
				validate: func(cfg *cluster.Config) error {
					for _, n := range named {
						if _, ok := cfg.Node(n); !ok || cfg.IsPrimaryNode(n) {
							return usagef("--replace-diverged %s: not a node of the standby cluster in %s", n, cfg.Path)
						}
					}
					return nil
				},
				precheck: func(ctx context.Context, g globals, cfg *cluster.Config, db *store.DB) error {
					if db == nil {
						return nil
					}
					return checkNotPromoted(ctx, db, cfg, role)
				}}
			return runPlan(c, readGlobals(c), o)
		},
	}
}

func planStopCommand() *cli.Command {
	return &cli.Command{
		Name:        "stop",
		Usage:       "plan sdr stop --role R",
		Description: "The steps of sdr stop, which the plan goes through:\n" + steps.StopHelp(),
		UsageText:   "sdr --config FILE --state FILE plan stop --role primary|standby [--json] [--drop-role] [--restart] [--no-start-record]",
		Flags: append(planFlags(),
			&cli.StringFlag{Name: "role", Required: true, Usage: "`primary` or standby, as for sdr stop"},
			&cli.BoolFlag{Name: "drop-role", Usage: "primary side: as for sdr stop"},
			&cli.BoolFlag{Name: "restart", Usage: "plan sdr stop --restart (from step 1)"},
			&cli.BoolFlag{Name: "no-start-record", Usage: "as for sdr stop"},
		),
		Action: func(c *cli.Context) error {
			role, err := planArgs(c)
			if err != nil {
				return err
			}
			if c.Bool("drop-role") && role != workflow.RolePrimary {
				return usagef("--drop-role applies to --role primary only: the replication role lives on the primary")
			}
			opts := steps.StopOptions{DropRole: c.Bool("drop-role")}
			o := planOpts{action: "stop", role: role, run: workflow.Options{Restart: c.Bool("restart")},
				command: "stop --role " + string(role) + flagsText(c, "drop-role", "restart", "no-start-record"),
				inputs:  map[string]string{"drop_role": strconv.FormatBool(opts.DropRole)},
				build:   func(e *steps.Env) workflow.Workflow { return steps.Stop(role, e, opts) },
				precheck: func(ctx context.Context, g globals, cfg *cluster.Config, _ *store.DB) error {
					if c.Bool("no-start-record") {
						return nil
					}
					return checkSomethingToStop(ctx, g, cfg.Name, role, cfg.ClusterOf(string(role)))
				}}
			return runPlan(c, readGlobals(c), o)
		},
	}
}

func planFailoverCommand() *cli.Command {
	return &cli.Command{
		Name:        "failover",
		Usage:       "plan sdr failover (on the DR side)",
		Description: "The steps of sdr failover, which the plan goes through:\n" + steps.FailoverHelp(),
		UsageText:   "sdr --config FILE --state FILE plan failover [--role standby] [--json] [--accept-data-loss]",
		Flags: append(planFlags(),
			&cli.StringFlag{Name: "role", Value: "standby", Usage: "`standby`: a failover runs on the DR side only"},
			&cli.BoolFlag{Name: "accept-data-loss", Usage: "as for sdr failover"},
		),
		Action: func(c *cli.Context) error {
			role, err := planArgs(c)
			if err != nil {
				return err
			}
			if role != workflow.RoleStandby {
				return usagef("--role %s: a failover runs on the DR side: --role standby", role)
			}
			o := planOpts{action: "failover", role: role, password: true,
				command: "failover" + flagsText(c, "accept-data-loss"),
				env:     func(e *steps.Env) { e.AcceptDataLoss = c.Bool("accept-data-loss") },
				build:   func(e *steps.Env) workflow.Workflow { return steps.Failover(e) }}
			return runPlan(c, readGlobals(c), o)
		},
	}
}

func planSwitchoverCommand() *cli.Command {
	return &cli.Command{
		Name:        "switchover",
		Usage:       "plan one half of sdr switchover",
		Description: "The steps of sdr switchover, which the plan goes through:\n" + steps.SwitchoverHelp(),
		UsageText:   "sdr --config FILE --state FILE plan switchover --role primary|standby [--json] [--max-lag BYTES] [--token T] [--abort]",
		Flags: append(planFlags(),
			&cli.StringFlag{Name: "role", Required: true, Usage: "`primary` (the demote half) or standby (the promote half)"},
			&cli.Int64Flag{Name: "max-lag", Value: 16 << 20, Usage: "as for sdr switchover (`BYTES`)"},
			&cli.StringFlag{Name: "token", Usage: "as for sdr switchover"},
			&cli.BoolFlag{Name: "abort", Usage: "as for sdr switchover"},
		),
		Action: func(c *cli.Context) error {
			role, err := planArgs(c)
			if err != nil {
				return err
			}
			switch {
			case c.Bool("abort") && role != workflow.RolePrimary:
				return usagef("--abort applies to the demote half (--role primary) only")
			case c.String("token") != "" && role != workflow.RoleStandby:
				return usagef("--token applies to the promote half (--role standby) only")
			case c.Int64("max-lag") < 0:
				return usagef("--max-lag must not be negative")
			}
			o := planOpts{action: "switchover", role: role, password: true, run: workflow.Options{NewIfComplete: true},
				command: "switchover --role " + string(role) + flagsText(c, "max-lag", "token", "abort"),
				build: func(e *steps.Env) workflow.Workflow {
					if c.Bool("abort") {
						return steps.SwitchoverAbort(e)
					}
					return steps.Switchover(role, e, steps.SwitchoverOptions{MaxLag: c.Int64("max-lag"), Token: c.String("token")})
				}}
			return runPlan(c, readGlobals(c), o)
		},
	}
}

// planArgs checks what every plan subcommand takes.
func planArgs(c *cli.Context) (workflow.Role, error) {
	if c.NArg() > 0 {
		return "", usagef("plan %s takes no arguments, got %q", c.Command.Name, c.Args().Slice())
	}
	role, err := workflow.ParseRole(c.String("role"))
	if err != nil {
		return "", usagef("--role: %w", err)
	}
	if c.Duration("timeout") <= 0 {
		return "", usagef("--timeout must be positive, got %s", c.Duration("timeout"))
	}
	if _, err := parseRate(c.String("copy-rate")); err != nil {
		return "", usagef("--copy-rate: %w", err)
	}
	return role, nil
}

// flagsText repeats the action's flags that were given, for the command line shown.
func flagsText(c *cli.Context, names ...string) string {
	var b strings.Builder
	for _, n := range names {
		if !c.IsSet(n) {
			continue
		}
		switch v := c.Value(n).(type) {
		case bool:
			if v {
				b.WriteString(" --" + n)
			}
		case cli.StringSlice:
			for _, s := range v.Value() {
				b.WriteString(" --" + n + " " + s)
			}
		case string:
			if n == "token" {
				v = "..." // long, and of no use in a headline
			}
			b.WriteString(" --" + n + " " + v)
		default:
			fmt.Fprintf(&b, " --%s %v", n, v)
		}
	}
	return b.String()
}

// parseRate reads a rate in bytes per second: a number with an optional
// unit (B, KiB, MiB, GiB, TiB; KB, MB, GB, TB) and an optional "/s".
func parseRate(s string) (float64, error) {
	t := strings.TrimSuffix(strings.TrimSpace(s), "/s")
	units := []struct {
		suffix string
		mult   float64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}
	mult := 1.0
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v <= 0 || v*mult < 1 {
		return 0, fmt.Errorf("%q is not a rate such as 100MiB or 1GB (per second)", s)
	}
	return v * mult, nil
}

// emptyStore is the store of a side whose state file does not exist: it
// holds nothing, and a plan never writes.
type emptyStore struct{}

func (emptyStore) Load(context.Context, string) (*workflow.Record, error) { return nil, nil }
func (emptyStore) LoadSide(_ context.Context, role workflow.Role) (workflow.Side, error) {
	return workflow.Side{Role: role}, nil
}
func (emptyStore) Update(context.Context, string, workflow.Role, func(**workflow.Record, *workflow.Side) error) error {
	return errors.New("a plan writes no state file")
}

// errPlanRefused is wrapped by the error of a plan whose run would not go ahead.
var errPlanRefused = errors.New("the run would not go ahead")

func runPlan(c *cli.Context, g globals, o planOpts) error {
	ctx := c.Context
	cfg, err := loadConfig(g)
	if err != nil {
		return err
	}
	if o.validate != nil {
		if err := o.validate(cfg); err != nil {
			return err
		}
	}
	var password string
	if o.password {
		if password, err = cfg.Password(); err != nil {
			return usageErr(err)
		}
	}
	rate, _ := parseRate(c.String("copy-rate"))
	doc := PlanDoc{Version: PlanJSONVersion, Pair: cfg.Name, Command: o.command, Config: cfg.Path, StateFile: g.state}
	// The state file is only read, as status reads it: a missing one is
	// not created, and the run lock is probed, not taken.
	var db *store.DB
	var st workflow.Store = emptyStore{}
	db, err = store.Open(g.state, store.Options{ReadOnly: true, Pair: cfg.Name, Role: o.role, Cluster: cfg.ClusterOf(string(o.role))})
	switch {
	case errors.Is(err, fs.ErrNotExist):
		db = nil
	case err != nil:
		return usageErr(err)
	default:
		doc.StateFileExists, st = true, db
		if side, err := db.LoadSide(ctx, o.role); err == nil {
			doc.State = side.State
		}
	}
	out, err := newOutput(c.App.ErrWriter, g.logFile, g.verbose)
	if err != nil {
		return err
	}
	defer out.close()
	log := out.log
	if !g.verbose {
		// The plan is the output; the checks' log lines only when asked (-v).
		log = log.WithOptions(zap.IncreaseLevel(zapcore.WarnLevel))
	}
	if cfg.SSH.InsecureIgnoreHostKey {
		log.Warn("ssh.insecure_ignore_host_key is set: SSH host keys are NOT verified")
	}
	pool := cluster.Open(ctx, cfg, log)
	defer pool.Close()
	env := &steps.Env{Config: cfg, Pool: pool, Password: password, Timeout: c.Duration("timeout"), ReadOnly: true, CopyRate: rate}
	defer env.Close()
	if o.env != nil {
		o.env(env)
	}
	wf := o.build(env)
	if probe, err := store.ProbeLock(g.state); err == nil && probe.Held {
		doc.Lock = probe.Holder
		if doc.Lock == nil {
			doc.Lock = &store.Holder{}
		}
		doc.Plan = workflow.RefusedPlan(wf, "lock", &store.LockedError{Path: g.state, Holder: probe.Holder})
		return reportPlan(c, doc, o)
	}
	if o.precheck != nil {
		if err := o.precheck(ctx, g, cfg, db); err != nil {
			doc.Plan = workflow.RefusedPlan(wf, "state file", err)
			return reportPlan(c, doc, o)
		}
	}
	inputs := cfg.Inputs()
	inputs["action"], inputs["role"] = wf.Action, string(o.role)
	for k, v := range o.inputs {
		inputs[k] = v
	}
	runner := &workflow.Runner{Store: st, Log: log, InputPath: cfg.InputPath}
	// A run of the DR side that would run steps is refused while another
	// run holds the side's run lock (its checks are not run then).
	if wf.Role == workflow.RoleStandby {
		if _, runs, err := runner.FirstToRun(ctx, wf, inputs, o.run); err == nil && runs {
			if node, holder := env.SideHolder(ctx); holder != "" {
				doc.Plan = workflow.RefusedPlan(wf, "side lock", fmt.Errorf("%w (cluster %s): the run lock on %s is held by %s; let that run finish, or stop it",
					steps.ErrSideLocked, cfg.StandbyName, node, holder))
				return reportPlan(c, doc, o)
			}
		}
	}
	p, err := runner.Plan(ctx, wf, inputs, o.run)
	if err != nil {
		if errors.Is(err, workflow.ErrInterrupted) {
			return failErr(err)
		}
		return usageErr(err)
	}
	doc.Plan = p
	return reportPlan(c, doc, o)
}

// reportPlan prints the plan and turns a refused one into exit code 2.
func reportPlan(c *cli.Context, doc PlanDoc, o planOpts) error {
	w := c.App.Writer
	if c.Bool("json") {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(doc); err != nil {
			return err
		}
	} else {
		printPlan(w, doc)
	}
	if doc.Allowed {
		return nil
	}
	if !c.Bool("json") {
		// The plan on stdout says why.
		return usageErr(fmt.Errorf("plan: %w: sdr %s would stop at %s", errPlanRefused, o.command, doc.RefusedAt))
	}
	msg := ""
	if doc.Refusal != nil {
		msg = doc.Refusal.Message
	}
	return usageErr(fmt.Errorf("plan: %w: sdr %s would stop at %s: %s", errPlanRefused, o.command, doc.RefusedAt, msg))
}
