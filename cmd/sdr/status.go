package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/steps"
	"github.com/pgsdr/sdr/store"
	"github.com/pgsdr/sdr/workflow"
)

// StatusJSONVersion is the version of the `status --json` document.
// Fields are only ever added within a version. See docs/status.md.
const StatusJSONVersion = 1

// StatusDoc is the `sdr status --json` document.
type StatusDoc struct {
	Version   int           `json:"version"`
	Pair      string        `json:"pair"`
	StateFile string        `json:"state_file"`
	Schema    int           `json:"schema"`
	Role      workflow.Role `json:"role"` // the side the state file belongs to; "" before its first run
	// Cluster is the cluster the state file belongs to (its name in the
	// config's clusters:), whatever role it plays now; "" in a file that
	// no run with clusters: has stamped.
	Cluster   string               `json:"cluster"`
	Sides     []workflow.Side      `json:"sides"`
	Workflows []workflow.Record    `json:"workflows"`
	History   []store.HistoryEntry `json:"history"`
	Lock      *store.Holder        `json:"lock"`
	Nodes     []steps.NodeStatus   `json:"nodes"`
	Live      string               `json:"live"` // "ok" (nodes were asked) or "no config"
	// Progress is what the running step of the run holding the lock
	// reported last (a pg_basebackup's bytes, rate, time left); null when
	// no live run reports any.
	Progress *workflow.ProgressReport `json:"progress"`
	// Stale explains, with live facts, that this side's state is out of
	// date: it says archive, but the primary moved to the other cluster
	// (a later timeline). Empty when nothing is stale or without --config.
	Stale string `json:"stale"`
	// Primaries are the nodes of the pair that answered as primaries (out
	// of recovery), with --config; more than one is a split brain.
	Primaries []string `json:"primaries"`

	gone *store.Holder // the run the lock file names that no live process holds (text only)
}

// markInterrupted sets Interrupted on every started step whose run is
// gone: no live run holds the state file's lock, or the live run is not
// the one that started the step (it has not yet recorded the interruption
// itself). A live holder with no run id is taken to be the step's run.
func markInterrupted(recs []workflow.Record, lock *store.Holder) {
	for i := range recs {
		running := lock != nil && (lock.RunID == "" || lock.RunID == recs[i].RunID)
		for j := range recs[i].Steps {
			sr := &recs[i].Steps[j]
			sr.Interrupted = sr.Status == workflow.StatusStarted && !running
		}
	}
}

func statusCommand(d deps) *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show this side's DR state, the recorded steps and, with --config, live replication facts",
		UsageText: "sdr --state FILE [--config FILE] status [--json] [--history N] [--watch [--interval D] [--count N]]",
		Description: `Reads the state file only (it works with no PostgreSQL reachable, and while a run
holds the lock). With --config it also asks every node for its role, its upstream,
pg_stat_replication / pg_stat_wal_receiver and lag; an unreachable node is shown as such.
While a run holds the lock, the running step is shown with its progress (for a
pg_basebackup: bytes copied out of the total, the rate, and the time left).
--watch (-w) shows the status again every --interval, in place on a terminal (like
watch or patronictl list -W), else after a separator line; Ctrl-C ends it (exit 0).
The --json document is described in docs/status.md.
Exit codes: 0; 3 when there is no state file at --state (nothing is created);
2 when the state file or the config cannot be used.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print the status as one JSON document"},
			&cli.IntFlag{Name: "history", Value: 20, Usage: "show the last `N` state transitions (0: all)"},
			&cli.BoolFlag{Name: "watch", Aliases: []string{"w"}, Usage: "show the status again every --interval until Ctrl-C (or --count refreshes)"},
			&cli.DurationFlag{Name: "interval", Value: 2 * time.Second, Usage: "with --watch: time `D` between refreshes"},
			&cli.IntFlag{Name: "count", Usage: "with --watch: stop after `N` refreshes (0: until Ctrl-C or SIGTERM)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("status takes no arguments, got %q", c.Args().Slice())
			}
			g := readGlobals(c)
			if h := c.Int("history"); h < 0 {
				return usagef("--history must not be negative, got %d (0 shows all)", h)
			}
			if !c.Bool("watch") {
				for _, f := range []string{"interval", "count"} {
					if c.IsSet(f) {
						return usagef("--%s needs --watch", f)
					}
				}
				return runStatus(c, d, g, c.Bool("json"), c.Int("history"))
			}
			w := watchOpts{interval: c.Duration("interval"), count: c.Int("count"), history: c.Int("history")}
			switch {
			case c.Bool("json"):
				return usagef("--watch shows text; for JSON run status --json repeatedly")
			case w.interval < 100*time.Millisecond:
				return usagef("--interval must be at least 100ms, got %s", w.interval)
			case w.count < 0:
				return usagef("--count must not be negative, got %d", w.count)
			}
			return runWatch(c, d, g, w)
		},
	}
}

// loadStatus reads the state file, and with a config the live facts of
// every node: what status, status --watch and metrics show. A config
// that cannot be used and a state file that cannot be read are usage
// errors; a missing state file is ExitNoState.
func loadStatus(c *cli.Context, d deps, g globals, history int) (StatusDoc, error) {
	var cfg *cluster.Config
	if g.config != "" {
		var err error
		if cfg, err = loadConfig(g); err != nil {
			return StatusDoc{}, err
		}
	}
	pair := ""
	if cfg != nil {
		pair = cfg.Name
	}
	db, err := store.Open(g.state, store.Options{ReadOnly: true, Pair: pair})
	if errors.Is(err, fs.ErrNotExist) {
		return StatusDoc{}, &codedError{code: ExitNoState, err: fmt.Errorf("no state file at %s: sdr has not run on this side with this --state (status and metrics create nothing)", g.state)}
	}
	if err != nil {
		return StatusDoc{}, usageErr(err)
	}
	snap, err := db.Snapshot(history)
	if err != nil {
		return StatusDoc{}, usageErr(err)
	}
	doc := StatusDoc{Version: StatusJSONVersion, Pair: snap.Pair, StateFile: snap.Path, Schema: snap.Schema, Role: snap.Role, Cluster: snap.Cluster, Sides: snap.Sides,
		Workflows: snap.Workflows, History: snap.History, Lock: snap.Lock, Nodes: []steps.NodeStatus{}, Live: "no config", Primaries: []string{},
		Progress: snap.Progress, gone: snap.Gone}
	markInterrupted(doc.Workflows, doc.Lock)
	if cfg != nil {
		doc.Nodes = d.probe(c.Context, cfg)
		doc.Live = "ok"
		doc.Stale = staleNote(doc)
		doc.Primaries = pairPrimaries(doc.Nodes)
	}
	return doc, nil
}

// pairPrimaries returns the nodes that answered as primaries of the pair's
// system: the system identifier most nodes answered with (a DR node that
// runs another cluster, before the first start or after a stop that made
// it independent, does not count).
func pairPrimaries(nodes []steps.NodeStatus) []string {
	count := map[string]int{}
	for _, n := range nodes {
		if n.Reachable && n.SystemID != "" {
			count[n.SystemID]++
		}
	}
	pair, best := "", 0
	for id, c := range count {
		if c > best || (c == best && id < pair) {
			pair, best = id, c
		}
	}
	out := []string{}
	for _, n := range nodes {
		if n.Reachable && n.Role == "primary" && (n.SystemID == pair || n.SystemID == "") {
			out = append(out, n.Name)
		}
	}
	return out
}

func runStatus(c *cli.Context, d deps, g globals, asJSON bool, history int) error {
	doc, err := loadStatus(c, d, g, history)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(doc)
	}
	printStatus(c.App.Writer, doc, d.now())
	return nil
}

// staleNote is steps.StaleNote for the primary side recorded in doc.
func staleNote(doc StatusDoc) string {
	for _, side := range doc.Sides {
		if side.Role != workflow.RolePrimary {
			continue
		}
		for _, r := range doc.Workflows {
			if r.Workflow == "start/primary" {
				return steps.StaleNote(side.State, r.Values[steps.ValPrimaryTimeline], doc.Nodes)
			}
		}
	}
	return ""
}
