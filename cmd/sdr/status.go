package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"go.uber.org/zap"

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
	Version   int                  `json:"version"`
	Pair      string               `json:"pair"`
	StateFile string               `json:"state_file"`
	Schema    int                  `json:"schema"`
	Role      workflow.Role        `json:"role"` // the side the state file belongs to; "" before its first run
	Sides     []workflow.Side      `json:"sides"`
	Workflows []workflow.Record    `json:"workflows"`
	History   []store.HistoryEntry `json:"history"`
	Lock      *store.Holder        `json:"lock"`
	Nodes     []steps.NodeStatus   `json:"nodes"`
	Live      string               `json:"live"` // "ok" (nodes were asked) or "no config"

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

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show this side's DR state, the recorded steps and, with --config, live replication facts",
		UsageText: "sdr --state FILE [--config FILE] status [--json] [--history N]",
		Description: `Reads the state file only (it works with no PostgreSQL reachable, and while a run
holds the lock). With --config it also asks every node for its role, its upstream,
pg_stat_replication / pg_stat_wal_receiver and lag; an unreachable node is shown as such.
The --json document is described in docs/status.md.
Exit codes: 0; 3 when there is no state file at --state (nothing is created);
2 when the state file or the config cannot be used.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print the status as one JSON document"},
			&cli.IntFlag{Name: "history", Value: 20, Usage: "show the last `N` state transitions (0: all)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("status takes no arguments, got %q", c.Args().Slice())
			}
			return runStatus(c, readGlobals(c), c.Bool("json"), c.Int("history"))
		},
	}
}

func runStatus(c *cli.Context, g globals, asJSON bool, history int) error {
	var cfg *cluster.Config
	if g.config != "" {
		var err error
		if cfg, err = loadConfig(g); err != nil {
			return err
		}
	}
	pair := ""
	if cfg != nil {
		pair = cfg.Name
	}
	db, err := store.Open(g.state, store.Options{ReadOnly: true, Pair: pair})
	if errors.Is(err, fs.ErrNotExist) {
		return &codedError{code: ExitNoState, err: fmt.Errorf("no state file at %s: sdr has not run on this side with this --state (status creates nothing)", g.state)}
	}
	if err != nil {
		return usageErr(err)
	}
	snap, err := db.Snapshot(history)
	if err != nil {
		return usageErr(err)
	}
	doc := StatusDoc{Version: StatusJSONVersion, Pair: snap.Pair, StateFile: snap.Path, Schema: snap.Schema, Role: snap.Role, Sides: snap.Sides,
		Workflows: snap.Workflows, History: snap.History, Lock: snap.Lock, Nodes: []steps.NodeStatus{}, Live: "no config", gone: snap.Gone}
	markInterrupted(doc.Workflows, doc.Lock)
	if cfg != nil {
		pool := cluster.Open(c.Context, cfg, zap.NewNop())
		defer pool.Close()
		doc.Nodes = steps.Probe(c.Context, &steps.Env{Config: cfg, Pool: pool})
		doc.Live = "ok"
	}
	if asJSON {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(doc)
	}
	printStatus(c.App.Writer, doc)
	return nil
}

func fmtTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func printStatus(w io.Writer, d StatusDoc) {
	fmt.Fprintf(w, "DR pair %s (state file %s)\n", orDash(d.Pair), d.StateFile)
	if d.Lock != nil {
		fmt.Fprintf(w, "running now: %s (pid %d on %s, started %s, run %s)\n", d.Lock.Command, d.Lock.PID, d.Lock.Host, fmtTime(&d.Lock.Started), d.Lock.RunID)
	}
	if len(d.Sides) == 0 {
		fmt.Fprintln(w, "no DR state recorded yet: this side has not run sdr start")
	}
	for _, s := range d.Sides {
		fmt.Fprintf(w, "side %s: state %s since %s", s.Role, strings.ToUpper(string(s.State)), fmtTime(&s.Since))
		if s.Step != "" {
			fmt.Fprintf(w, " (set by %s, run %s)", s.Step, s.RunID)
		}
		if interruptedStep(d.Workflows, s.Role, s.Step) {
			fmt.Fprintf(w, "; INTERRUPTED: the run that set it is gone")
		}
		fmt.Fprintln(w)
	}
	for _, r := range d.Workflows {
		status := "in progress"
		if r.Complete {
			status = "complete, finished " + fmtTime(r.Finished)
		}
		fmt.Fprintf(w, "\nworkflow %s: %s (last run %s, runs: %d)\n", r.Workflow, status, r.RunID, r.Runs)
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  STEP\tSTATUS\tATTEMPTS\tSTARTED\tENDED\tERROR")
		var interrupted []string
		for _, s := range r.Steps {
			errText := ""
			if s.Error != nil {
				errText = s.Error.Message
			}
			st := string(s.Status)
			if s.Interrupted {
				st = "INTERRUPTED"
				interrupted = append(interrupted, s.Name)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\t%s\t%s\n", s.Name, st, s.Attempts, fmtTime(s.Started), fmtTime(s.Ended), errText)
		}
		tw.Flush()
		for _, name := range interrupted {
			who := "run " + r.RunID
			if d.gone != nil && d.gone.RunID == r.RunID {
				who += fmt.Sprintf(" (pid %d on %s)", d.gone.PID, d.gone.Host)
			}
			if d.Lock == nil {
				fmt.Fprintf(w, "  interrupted: %s is recorded as started, but %s is gone (killed, or its terminal closed) and no sdr run holds the state file.\n"+
					"  Run the same command again: it records the interruption (with the step's failure state) and resumes at %s.\n", name, who, name)
			} else {
				fmt.Fprintf(w, "  interrupted: %s is recorded as started by %s, which is gone; run %s, now holding the state file, records the interruption and resumes.\n",
					name, who, d.Lock.RunID)
			}
		}
	}
	if len(d.Nodes) > 0 {
		fmt.Fprintln(w, "\nnodes (live):")
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  NODE\tSIDE\tROLE\tUPSTREAM\tRECEIVER\tLAG BYTES\tLAG S\tDOWNSTREAM")
		for _, n := range d.Nodes {
			if !n.Reachable {
				fmt.Fprintf(tw, "  %s\t%s\tUNREACHABLE\t-\t-\t-\t-\t%s\n", n.Name, n.Cluster, oneLineStr(n.Error))
				continue
			}
			recv, lagB, lagS := "-", "-", "-"
			if n.WalReceiver != nil {
				recv = n.WalReceiver.Status
				lagB, lagS = fmt.Sprint(n.WalReceiver.LagBytes), fmt.Sprintf("%.1f", n.WalReceiver.LagSeconds)
			}
			var down []string
			for _, r := range n.Replication {
				down = append(down, fmt.Sprintf("%s %s lag %dB/%.1fs", r.ApplicationName, r.State, r.LagBytes, r.LagSeconds))
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.Cluster, n.Role, orDash(n.Upstream), recv, lagB, lagS, orDash(strings.Join(down, "; ")))
		}
		tw.Flush()
	} else if d.Live != "ok" {
		fmt.Fprintln(w, "\n(no live facts: give --config to ask the nodes)")
	}
	if len(d.History) > 0 {
		fmt.Fprintln(w, "\nstate history:")
		for _, h := range d.History {
			t := h.Time
			fmt.Fprintf(w, "  %s  %s: %s -> %s  (%s, run %s)\n", fmtTime(&t), h.Role, orDash(string(h.From)), h.To, orDash(h.Step), h.RunID)
		}
	}
}

func oneLineStr(s string) string { return strings.Join(strings.Fields(s), " ") }

// interruptedStep reports whether step of role's workflows is marked interrupted.
func interruptedStep(recs []workflow.Record, role workflow.Role, step string) bool {
	for _, r := range recs {
		if r.Role != role {
			continue
		}
		if sr := r.Step(step); sr != nil && sr.Interrupted {
			return true
		}
	}
	return false
}
