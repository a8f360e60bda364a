package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pgsdr/sdr/steps"
	"github.com/pgsdr/sdr/store"
	"github.com/pgsdr/sdr/workflow"
)

// errNothingToStop: the state file shows no start (and no stop) of this
// side, so sdr has nothing of its own to take apart there.
var errNothingToStop = errors.New("sdr start has not run on this side with this state file")

func stopCommand() *cli.Command {
	return &cli.Command{
		Name:      "stop",
		Usage:     "take this side's half of the DR pair apart (resumable: rerun to continue)",
		UsageText: "sdr --config FILE --state FILE stop --role primary|standby [--drop-role] [--timeout D] [--restart] [--no-start-record]",
		Description: "Steps (a step with nothing to do for a role is recorded as skipped):\n" +
			steps.StopHelp() + `
Run it on each side with that side's state file, in either order. The primary
side ends the stream to the DR side; the DR side needs nothing from the primary
side, which may be gone. Each DR node is left an independent read-only standby:
in recovery, with no upstream (standby.signal stays). sdr stop never promotes a
node: that is "sdr failover" or "sdr switchover".

After a switchover or failover, set primary: to the new primary cluster and give
each cluster's own state file with its new role. Step 2 of the primary side refuses,
changing nothing, while the new primary cluster holds a slot sdr made for one of its
own standbys when that cluster was the DR side (docs/runbook.md says what to do);
step 2 of the DR side refuses a DR node that runs as a primary.

The replication role stays on the primary unless --drop-role is given, and then
only if sdr created it for this pair (its comment) and nobody is logged in with it.

State: stop while steps 3-7 run, stop_fail when one fails (rerun the same command),
normal when done. Afterwards "sdr start" on this side runs again from step 1.
A rerun resumes at the step that did not finish; a finished stop says so and exits 0.
Exit codes as for start; 2 also when the state file holds no start of this side
(nor a switchover or failover that made its cluster this side).`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "role", Required: true, Usage: "`primary` (run on the primary side) or standby (run on the DR side)"},
			&cli.DurationFlag{Name: "timeout", Usage: "bound for restarting a DR node that needs it; default timeouts.wait from the config"},
			&cli.BoolFlag{Name: "restart", Usage: "forget recorded step progress and run every step again from step 1"},
			&cli.BoolFlag{Name: "drop-role", Usage: "primary side: also drop replication.user, if sdr created it for this pair and no session of it is open"},
			&cli.BoolFlag{Name: "promote", Usage: "not available: sdr stop never promotes; use sdr failover or sdr switchover (this flag only says so)"},
			&cli.BoolFlag{Name: "no-start-record", Usage: "stop although the state file holds no start of this side (the state file was lost): " +
				"sdr removes what it recognises as its own, but cannot know whether an unfinished start left wal_keep_size raised"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("stop takes no arguments, got %q", c.Args().Slice())
			}
			role, err := workflow.ParseRole(c.String("role"))
			if err != nil {
				return usagef("--role: %w", err)
			}
			if c.Bool("promote") {
				return usagef("--promote: sdr stop never promotes. To make the DR side the primary, run sdr failover on it " +
					"(before stopping: it checks the old primary, fences it and promotes the main standby once), or sdr switchover for a planned move. " +
					"sdr stop --role standby without --promote leaves each DR node a read-only standby without upstream")
			}
			if c.Bool("drop-role") && role != workflow.RolePrimary {
				return usagef("--drop-role applies to --role primary only: the replication role lives on the primary")
			}
			timeout, err := timeoutFlag(c)
			if err != nil {
				return err
			}
			return runStop(c, readGlobals(c), role, timeout, c.Bool("restart"),
				steps.StopOptions{DropRole: c.Bool("drop-role")}, c.Bool("no-start-record"))
		},
	}
}

// stopEvidence are the records that show sdr set up this cluster as the
// role side: a start or stop of role, or a finished switchover or failover
// whose half on the other role moved this cluster into role (the promote
// half makes it the primary side, the demote half the DR side).
func stopEvidence(role workflow.Role) []string {
	keys := []string{"start/" + string(role), "stop/" + string(role)}
	if role == workflow.RolePrimary {
		return append(keys, "switchover/standby", "failover/standby")
	}
	return append(keys, "switchover/primary")
}

// roleMoves are the workflows that move the roles of the pair's clusters.
var roleMoves = []string{"switchover/primary", "switchover/standby", "failover/standby", "switchover-abort/primary"}

// unfinishedRoleMove refuses a stop while a switchover, failover or abort
// recorded in the cluster's state file has begun to move roles (its step
// that demotes, fences, promotes or restores began) and not finished, and
// nothing else changed its side since: the nodes are between two setups,
// and stop would take the pair apart there (a DR node's upstream removed
// before the promotion, a demoted primary left down). recs are the
// records of roleMoves that exist, sides the sides they belong to.
func unfinishedRoleMove(recs map[string]*workflow.Record, sides map[workflow.Role]workflow.Side) error {
	finish := map[string]string{
		"switchover/primary":       "rerun sdr switchover --role primary to finish it, or sdr switchover --role primary --abort to bring the old primary back",
		"switchover/standby":       "rerun sdr switchover --role standby to finish it",
		"failover/standby":         "rerun sdr failover to finish it",
		"switchover-abort/primary": "rerun sdr switchover --role primary --abort to finish it",
	}
	// The first step of each that changes the nodes' roles (the steps
	// before it check, wait or prepare).
	firstChange := map[string]string{"switchover/primary": "3_demote", "switchover/standby": "4_promote", "failover/standby": "3_fence",
		"switchover-abort/primary": "3_restore_primary"}
	for _, key := range roleMoves {
		rec := recs[key]
		if rec == nil || rec.Complete || sides[rec.Role].ChangedBy != rec.Workflow {
			continue
		}
		if st := rec.Step(firstChange[key]); st == nil || st.Status == workflow.StatusPending || st.Status == "" {
			continue
		}
		at := ""
		for _, s := range rec.Steps {
			if !s.Status.Finished() {
				at = " at " + s.Name
				break
			}
		}
		how := finish[key]
		if key == "switchover/primary" && rec.Values["switchover.token"] == "" {
			// No token: the demote half did not record the primary's
			// shutdown, and an abort has nothing to go by.
			how = "rerun sdr switchover --role primary to finish it (it recorded no token, so there is nothing to abort; " +
				"if you want the primary back instead, start it through its service manager)"
		}
		return fmt.Errorf("%s is unfinished on this cluster (stopped%s, side state %s): it has changed nodes, and a stop now would take the pair "+
			"apart between two setups. First %s; then stop", key, at, sides[rec.Role].State, how)
	}
	return nil
}

// checkSomethingToStop refuses a stop on a side whose state file shows
// none of stopEvidence(role): sdr never ran there with this file (or it is
// the wrong file). The file is this cluster's (cluster, as the config's
// primary: names it for role) whatever role it played before a
// switchover or failover. It creates and changes nothing.
func checkSomethingToStop(ctx context.Context, g globals, pair string, role workflow.Role, cluster string) error {
	db, err := store.Open(g.state, store.Options{ReadOnly: true, Pair: pair, Role: role, Cluster: cluster})
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no state file at %s: %w. Give the --state file that sdr start --role %s used on this side; "+
			"if it was lost, rerun with --no-start-record", g.state, errNothingToStop, role)
	}
	if err != nil {
		return err
	}
	moves := map[string]*workflow.Record{}
	sides := map[workflow.Role]workflow.Side{}
	for _, key := range roleMoves {
		rec, err := db.Load(ctx, key)
		if err != nil {
			return err
		}
		if rec == nil {
			continue
		}
		moves[key] = rec
		if _, ok := sides[rec.Role]; !ok {
			if sides[rec.Role], err = db.LoadSide(ctx, rec.Role); err != nil {
				return err
			}
		}
	}
	if err := unfinishedRoleMove(moves, sides); err != nil {
		return err
	}
	for _, key := range stopEvidence(role) {
		rec, err := db.Load(ctx, key)
		if err != nil {
			return err
		}
		// A role move counts once it finished: a refused or unfinished
		// switchover or failover did not make this cluster that side.
		if rec != nil && (rec.Complete || rec.Action == "start" || rec.Action == "stop") {
			return nil
		}
	}
	return fmt.Errorf("state file %s holds no start of the %s side, nor a switchover or failover that made this cluster that side: %w. "+
		"Give the --state file that sdr start --role %s used; if it was lost, rerun with --no-start-record", g.state, role, errNothingToStop, role)
}

func runStop(c *cli.Context, g globals, role workflow.Role, timeout time.Duration, restart bool, opts steps.StopOptions, noStartRecord bool) error {
	ctx := c.Context
	cfg, _, timeout, err := runConfig(g, timeout, false)
	if err != nil {
		return err
	}
	if !noStartRecord {
		if err := checkSomethingToStop(ctx, g, cfg.Name, role, cfg.ClusterOf(string(role))); err != nil {
			return usageErr(err)
		}
	}
	s, err := openSession(c, g, cfg, role, cfg.ClusterOf(string(role)), "stop --role "+string(role), nil)
	if err != nil {
		return err
	}
	defer s.close()
	// The replication password is not needed: stop logs in as the admin
	// user only, and removes the password file without reading it.
	env := &steps.Env{Config: cfg, Pool: s.pool, Timeout: timeout}
	defer env.Close()
	wf := steps.Stop(role, env, opts)
	res, err := s.run(c, cfg, wf, map[string]string{"drop_role": strconv.FormatBool(opts.DropRole)}, workflow.Options{Restart: restart, BeforeSteps: s.holdSide(env, wf)})
	return reportRun(c, wf, cfg.Name, res, err)
}
