package main

import (
	"context"
	"encoding/json"
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

func failoverCommand() *cli.Command {
	return &cli.Command{
		Name:      "failover",
		Usage:     "promote the DR cluster when the primary data centre is lost (run on the DR side; resumable)",
		UsageText: "sdr --config FILE --state FILE failover [--accept-data-loss] [--timeout D]",
		Description: `Promotes the DR cluster's main standby, once, after checking that the old
primary cluster does not run as a primary. Steps:
` + steps.FailoverHelp() + `
The old primary cluster is probed over every path sdr has (from the main standby as
the replication user, and over SSH). If any node answers as a primary, the failover
is refused: that is a switchover or a link problem. Unless the old primary provably
shut down cleanly and its WAL was replayed, the failover needs --accept-data-loss;
the data-loss window (what the main standby received and replayed, and when it last
heard from the primary) is printed before anything is changed.

Old-primary nodes sdr can reach over SSH are stopped and fenced: standby.signal and
an sdr_fenced marker in their data directory, so that whatever starts them starts a
standby. Nodes it cannot reach are printed: keep them down.

At the end, set primary: to the DR cluster's name in the config, as sdr says. A rerun
after a kill resumes; it never promotes twice, and never promotes another node.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "accept-data-loss", Usage: "promote although the old primary cannot be shown to have lost nothing: transactions the DR side did not receive are LOST"},
			&cli.DurationFlag{Name: "timeout", Usage: "bound for pg_promote and for the cascades to follow; default timeouts.wait from the config"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("failover takes no arguments, got %q", c.Args().Slice())
			}
			return runFailover(c, readGlobals(c), c.Bool("accept-data-loss"), c.Duration("timeout"))
		},
	}
}

func runFailover(c *cli.Context, g globals, acceptLoss bool, timeout time.Duration) error {
	ctx := c.Context
	if timeout < 0 {
		return usagef("--timeout must be positive, got %s", timeout)
	}
	cfg, err := loadConfig(g)
	if err != nil {
		return err
	}
	// The failover reads PostgreSQL as the replication user from the main
	// standby, as the standby side does.
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
	role := workflow.RoleStandby
	db, err := openStore(g, cfg.Name, role, cfg.StandbyName)
	if err != nil {
		return err
	}
	now := time.Now()
	runID := newRunID(now)
	cmdLog := log.With(zap.String("run_id", runID), zap.String("step", "-"))
	host, _ := os.Hostname()
	lock, err := store.Acquire(db.Path(), store.Holder{PID: os.Getpid(), Host: host, Started: now.UTC(), RunID: runID,
		Command: "failover"}, 2*time.Second)
	if err != nil {
		return usageErr(err)
	}
	defer lock.Release()
	if cfg.SSH.InsecureIgnoreHostKey {
		cmdLog.Warn("ssh.insecure_ignore_host_key is set: SSH host keys are NOT verified")
	}
	pool := cluster.Open(ctx, cfg, cmdLog)
	defer pool.Close()
	env := &steps.Env{Config: cfg, Pool: pool, Password: password, Timeout: timeout, AcceptDataLoss: acceptLoss}
	wf := steps.Failover(env)
	inputs := cfg.Inputs()
	inputs["action"], inputs["role"] = wf.Action, string(role)
	runner := &workflow.Runner{Store: db, Log: log, NewRunID: func() string { return runID }}
	cmdLog.Info(fmt.Sprintf("sdr failover of DR pair %s: cluster %s takes over from %s (state file %s)", cfg.Name, cfg.StandbyName, cfg.PrimaryName, db.Path()))
	res, err := runner.Run(ctx, wf, inputs, workflow.Options{})
	if rerr := reportRun(c, wf, cfg.Name, res, err); rerr != nil {
		return rerr
	}
	if p := recordedPromotion(ctx, db, wf.Key()); p != nil {
		fmt.Fprintf(c.App.Writer, "Cluster %s is the primary now (node %s, timeline %d, switch point %s). Change the config on both sides: primary: %s\n",
			p.Cluster, p.Node, p.Timeline, p.SwitchPoint, p.Cluster)
	}
	return nil
}

// promotionInfo is the part of the failover's promotion record the CLI shows.
type promotionInfo struct {
	Node        string    `json:"node"`
	Cluster     string    `json:"cluster"`
	Timeline    int       `json:"timeline"`
	SwitchPoint string    `json:"switch_point"`
	At          time.Time `json:"at"`
}

// recordedPromotion reads the promotion a failover recorded under key, or nil.
func recordedPromotion(ctx context.Context, db *store.DB, key string) *promotionInfo {
	rec, err := db.Load(ctx, key)
	if err != nil || rec == nil {
		return nil
	}
	raw, ok := rec.Values["failover.promotion"]
	if !ok {
		return nil
	}
	var p promotionInfo
	if json.Unmarshal([]byte(raw), &p) != nil {
		return nil
	}
	return &p
}

// checkNotPromoted refuses to run role on a cluster that sdr failover
// promoted while the config still names the other cluster as primary.
func checkNotPromoted(ctx context.Context, db *store.DB, cfg *cluster.Config, role workflow.Role) error {
	if role != workflow.RoleStandby {
		return nil
	}
	p := recordedPromotion(ctx, db, "failover/standby")
	if p == nil || p.Cluster != cfg.StandbyName {
		return nil
	}
	return usagef("config %s: primary: says %s, but cluster %s was promoted by sdr failover at %s (node %s, timeline %d) and is the primary now; "+
		"set \"primary: %s\" in the config. Nothing was changed", cfg.Path, cfg.PrimaryName, p.Cluster, p.At.Format(time.RFC3339), p.Node, p.Timeline, p.Cluster)
}
