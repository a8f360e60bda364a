package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

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
			timeout, err := timeoutFlag(c)
			if err != nil {
				return err
			}
			return runFailover(c, readGlobals(c), c.Bool("accept-data-loss"), timeout)
		},
	}
}

func runFailover(c *cli.Context, g globals, acceptLoss bool, timeout time.Duration) error {
	ctx := c.Context
	cfg, password, timeout, err := runConfig(g, timeout, true)
	if err != nil {
		return err
	}
	role := workflow.RoleStandby
	s, err := openSession(c, g, cfg, role, cfg.StandbyName, "failover", nil)
	if err != nil {
		return err
	}
	defer s.close()
	env := &steps.Env{Config: cfg, Pool: s.pool, Password: password, Timeout: timeout, AcceptDataLoss: acceptLoss}
	defer env.Close()
	wf := steps.Failover(env)
	res, err := s.run(c, cfg, wf, nil, workflow.Options{BeforeSteps: s.holdSide(env, wf)})
	db := s.db
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
