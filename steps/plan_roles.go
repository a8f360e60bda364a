package steps

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

// Plans of the failover and switchover steps that change something
// first (workflow.Step.Plan). They probe as their steps do and call the
// same decisions; they change nothing.

// planFence: what 3_fence would do with each old-primary node (decideFence
// on the step's own probe).
func (e *Env) planFence(ctx context.Context, rc *workflow.RunContext) (workflow.PlanEntry, error) {
	nodes := e.primaryNodes()
	items := make([][]workflow.PlanItem, len(nodes))
	err := forEach(ctx, nodes, func(ctx context.Context, n *cluster.Node) error {
		_, _, o, perr := e.observeFence(ctx, n)
		items[indexOf(nodes, n)] = []workflow.PlanItem{fenceItem(n, decideFence(o), perr)}
		return nil
	})
	if err != nil {
		return workflow.PlanEntry{}, err
	}
	entry := entryOf(items, "fence every old-primary node sdr can reach, so that it cannot start as a primary")
	for _, l := range items {
		if l[0].Action == "none" {
			entry.Notes = append(entry.Notes, l[0].Node+" cannot be fenced: make sure it stays down until it is re-protected")
		}
	}
	return entry, nil
}

// fenceItem describes decideFence's action on old-primary node n.
func fenceItem(n *cluster.Node, act fenceAction, sshErr error) workflow.PlanItem {
	it := workflow.PlanItem{Kind: "node", Node: n.Name, Name: n.DataDir}
	mark := "write standby.signal and sdr's " + fenceMarkerName + " marker into " + n.DataDir + ": whatever starts it starts a standby"
	switch act {
	case fenceUnreach:
		it.Action, it.What = "none", "cannot be reached over SSH, so it is NOT fenced"
		if sshErr != nil {
			it.Why = sshErr.Error()
		}
	case fenceNone:
		it.Action, it.What = "keep", "already fenced and down"
	case fenceStop:
		it.Action, it.What = "fence", "stop it (pg_ctl stop -m fast, then -m immediate, then SIGKILL of a postmaster that does not answer), then "+mark
	default:
		it.Action, it.What = "fence", "down: "+mark
	}
	return it
}

// planPromoteMain: what 4_promote would do (promotedAlready on the main
// standby now), with the data-loss window 2_check_cluster recorded.
func (e *Env) planPromoteMain(ctx context.Context, rc *workflow.RunContext) (workflow.PlanEntry, error) {
	main, _ := e.mainStandby()
	if promo, err := e.promotion(ctx, rc); err != nil || promo != nil {
		if err != nil {
			return workflow.PlanEntry{}, err
		}
		return workflow.PlanEntry{Summary: fmt.Sprintf("the promotion of %s is recorded (timeline %d): not promoted again", promo.Node, promo.Timeline), NoChange: true}, nil
	}
	var f drNodeFacts
	if err := e.withAdmin(ctx, main, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, drFactsSQL).Scan(&f.InRecovery, &f.SystemID, &f.Timeline)
	}); err != nil {
		return workflow.PlanEntry{}, fmt.Errorf("while reading the main standby %s before promoting it: %w", main.Name, err)
	}
	intent, _, err := rc.Value(ctx, valFailoverIntent)
	if err != nil {
		return workflow.PlanEntry{}, err
	}
	intentSys, intentTLI := parseIntent(intent)
	done, err := promotedAlready(main.Name, f.InRecovery, f.SystemID, f.Timeline, intentSys, intentTLI)
	if err != nil {
		return workflow.PlanEntry{}, err
	}
	it := workflow.PlanItem{Kind: "node", Action: "promote", Node: main.Name,
		What: fmt.Sprintf("promote %s (pg_promote, waiting), now on timeline %d, then CHECKPOINT and record the promotion (system identifier %s, new timeline, switch point)",
			main.Name, f.Timeline, f.SystemID),
		Why: "sdr promotes only the main standby, and only once"}
	if done {
		it.Action, it.What = "keep", main.Name+" is promoted already by this failover: the promotion is recorded"
	}
	entry := workflow.PlanEntry{Summary: it.What, Items: []workflow.PlanItem{it}}
	if raw, ok, err := rc.Value(ctx, valFailoverWindow); err != nil {
		return workflow.PlanEntry{}, err
	} else if ok {
		var w lossWindow
		if json.Unmarshal([]byte(raw), &w) == nil {
			entry.Items = append(entry.Items, workflow.PlanItem{Kind: "wal", Action: "none", Node: main.Name, Name: "data-loss window",
				What: "data-loss window: " + w.String()})
		}
	}
	return entry, nil
}

// planDemote: what the demote half's 3_demote would do (demoteTarget).
func (e *Env) planDemote(ctx context.Context, rc *workflow.RunContext) (workflow.PlanEntry, error) {
	if t, err := e.token(ctx, rc); err != nil || t != nil {
		if err != nil {
			return workflow.PlanEntry{}, err
		}
		return workflow.PlanEntry{Summary: "the primary " + t.Node + " is demoted already: its token is recorded", NoChange: true}, nil
	}
	p, err := e.demoteTarget(ctx)
	if err != nil {
		return workflow.PlanEntry{}, err
	}
	running, err := e.pgRunning(ctx, p, p.DataDir)
	if err != nil {
		return workflow.PlanEntry{}, err
	}
	it := workflow.PlanItem{Kind: "node", Action: "stop", Node: p.Name, Name: p.DataDir,
		What: "stop the primary with a fast shutdown (pg_ctl stop -m fast, never immediate), check that pg_control says \"shut down\", and record the token " +
			"(system identifier, timeline, shutdown checkpoint and REDO)",
		Why: "the main standby then receives everything up to the shutdown checkpoint; nothing committed is lost"}
	if !running {
		it.Action, it.What = "none", "the primary is stopped already: read its pg_control, check it says \"shut down\", and record the token"
	}
	return workflow.PlanEntry{Summary: it.What, Items: []workflow.PlanItem{it}}, nil
}

// planWaitShutdownReplayed is the plan of the promote half's
// 3_wait_primary, which waits; a token given on the command line is
// checked now, as the step checks it.
func (e *Env) planWaitShutdownReplayed(tokenText string) func(context.Context, *workflow.RunContext) (workflow.PlanEntry, error) {
	return func(ctx context.Context, rc *workflow.RunContext) (workflow.PlanEntry, error) {
		return e.planWaitReplay(ctx, rc, tokenText)
	}
}

func (e *Env) planWaitReplay(ctx context.Context, rc *workflow.RunContext, tokenText string) (workflow.PlanEntry, error) {
	if p, err := e.promotion(ctx, rc); err != nil || p != nil {
		if err != nil {
			return workflow.PlanEntry{}, err
		}
		return workflow.PlanEntry{Summary: "the promotion is recorded: nothing to wait for", NoChange: true}, nil
	}
	how := "checked against what PostgreSQL proves: no WAL receiver streams, everything received is replayed, and the last checkpoint replayed is a shutdown checkpoint"
	if tokenText != "" {
		t, err := decodeToken(tokenText)
		if err != nil {
			return workflow.PlanEntry{}, permanent(err)
		}
		how = fmt.Sprintf("checked against the token of %s (system identifier %s, timeline %d, checkpoint %s)", t.Node, t.SystemID, t.TimeLineID, t.CheckpointLSN)
	}
	main, _ := e.mainStandby()
	it := workflow.PlanItem{Kind: "node", Action: "wait", Node: main.Name,
		What: fmt.Sprintf("hold %s's node lock and wait up to %s until it has replayed the old primary's shutdown checkpoint, %s", main.Name, e.runWait(), how)}
	return workflow.PlanEntry{Summary: it.What, Items: []workflow.PlanItem{it},
		Notes: []string{"the demote half (switchover --role primary on the other side) stops the old primary; this half waits for it"}}, nil
}
