package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pgsdr/sdr/steps"
	"github.com/pgsdr/sdr/workflow"
)

// printStatus writes the human status (docs/status.md, "Text output").
// now is the clock for durations of running steps and ages.
func printStatus(w io.Writer, d StatusDoc, now time.Time) {
	fmt.Fprintf(w, "DR pair %s (state file %s", orDash(d.Pair), d.StateFile)
	if d.Role != "" {
		fmt.Fprintf(w, ", %s side", d.Role)
	}
	fmt.Fprintln(w, ")")
	if d.Lock != nil {
		fmt.Fprintf(w, "running now: %s (pid %d on %s, started %s, run %s)\n", d.Lock.Command, d.Lock.PID, d.Lock.Host, fmtTime(&d.Lock.Started), d.Lock.RunID)
		printRunning(w, d, now)
	}
	if len(d.Sides) == 0 {
		fmt.Fprintln(w, "no DR state recorded yet: this side has not run sdr start")
	}
	if len(d.Primaries) > 1 {
		fmt.Fprintf(w, "WARNING: %d nodes of the pair answer as primaries (%s): both may take writes. After a failover the old primary "+
			"must stay stopped or fenced; stop the one that is not the primary now (the config's primary: names its cluster), then re-protect "+
			"(docs/runbook.md, \"Re-protect after a failover\")\n", len(d.Primaries), strings.Join(d.Primaries, ", "))
	}
	if d.Stale != "" {
		fmt.Fprintf(w, "NOTE: %s\n", d.Stale)
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
		printWorkflow(w, d, r, now)
	}
	switch {
	case len(d.Nodes) > 0:
		printNodes(w, d, now)
	case d.Live != "ok":
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

// runningStep returns the workflow and step that the run holding the
// lock has started and not ended; nil when there is none (the run is
// between steps, or holds no run id).
func runningStep(d StatusDoc) (*workflow.Record, *workflow.StepRecord) {
	if d.Lock == nil || d.Lock.RunID == "" {
		return nil, nil
	}
	for i := range d.Workflows {
		r := &d.Workflows[i]
		if r.RunID != d.Lock.RunID {
			continue
		}
		for j := range r.Steps {
			if s := &r.Steps[j]; s.Status == workflow.StatusStarted && !s.Interrupted {
				return r, s
			}
		}
	}
	return nil, nil
}

// progressStale is the age past which a part's last report is named.
const progressStale = 5 * time.Second

// printRunning shows the running step of the live run and what it
// reported of its progress.
func printRunning(w io.Writer, d StatusDoc, now time.Time) {
	r, s := runningStep(d)
	if s == nil {
		return
	}
	fmt.Fprintf(w, "running step: %s %s, for %s", r.Workflow, s.Name, fmtDur(now.Sub(*s.Started)))
	p := d.Progress
	if p == nil || p.Step != s.Name || len(p.Parts) == 0 {
		fmt.Fprintln(w)
		return
	}
	fmt.Fprintln(w, "; progress:")
	for _, part := range p.Parts {
		fmt.Fprintf(w, "  %s", fmtPart(part))
		if age := now.Sub(part.Updated); age > progressStale {
			fmt.Fprintf(w, " (reported %s ago)", fmtDur(age))
		}
		fmt.Fprintln(w)
	}
}

func printWorkflow(w io.Writer, d StatusDoc, r workflow.Record, now time.Time) {
	status := "in progress"
	if step := refusedCheck(r); step != "" {
		status = "refused at " + step + ", nothing was changed (fix what its error names, then run the same command again)"
	}
	if r.Complete {
		status = "complete, finished " + fmtTime(r.Finished)
	}
	for _, sd := range d.Sides {
		if by := r.SupersededBy(sd); sd.Role == r.Role && by != "" {
			status += "; superseded by a later " + by + ": its next run starts at step 1"
		}
	}
	fmt.Fprintf(w, "\nworkflow %s: %s (last run %s, runs: %d)\n", r.Workflow, status, r.RunID, r.Runs)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  STEP\tSTATUS\tATTEMPTS\tSTARTED\tENDED\tDURATION\tERROR")
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
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\t%s\t%s\t%s\n", s.Name, st, s.Attempts, fmtTime(s.Started), fmtTime(s.Ended), stepDuration(s, now), errText)
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

// stepDuration is how long the step's last attempt took: "-" when it did
// not run, "running 12s" while its run is live, "?" when its end is
// unknown (its run was killed).
func stepDuration(s workflow.StepRecord, now time.Time) string {
	switch {
	case s.Started == nil:
		return "-"
	case s.Ended != nil:
		return fmtDur(s.Ended.Sub(*s.Started))
	case s.Status == workflow.StatusStarted && !s.Interrupted:
		return "running " + fmtDur(now.Sub(*s.Started))
	default:
		return "?"
	}
}

func printNodes(w io.Writer, d StatusDoc, now time.Time) {
	ref := ""
	// Each standby's reference is read right after its own positions.
	var refs []string
	for _, n := range d.Nodes {
		if l := n.Lag; l != nil && l.PrimaryLSN != "" && !slices.Contains(refs, l.PrimaryLSN) {
			refs = append(refs, l.PrimaryLSN)
		}
	}
	slices.SortFunc(refs, func(a, b string) int {
		switch {
		case lsnAfter(a, b):
			return 1
		case lsnAfter(b, a):
			return -1
		}
		return 0
	})
	for _, n := range d.Nodes {
		switch l := n.Lag; {
		case l == nil:
		case l.PrimaryLSN != "" && len(refs) > 1:
			ref = fmt.Sprintf("; BEHIND PRIMARY is against %s's WAL position read right after each standby's own, %s to %s",
				l.Primary, refs[0], refs[len(refs)-1])
		case l.PrimaryLSN != "":
			ref = fmt.Sprintf("; BEHIND PRIMARY is against %s's WAL position %s when asked", l.Primary, l.PrimaryLSN)
		case ref != "":
		case l.Primary != "":
			ref = fmt.Sprintf("; BEHIND PRIMARY bytes are unknown: the primary %s did not give its WAL position", l.Primary)
		default:
			ref = "; BEHIND PRIMARY bytes are unknown: no single primary answered"
		}
	}
	fmt.Fprintf(w, "\nnodes (live%s):\n", ref)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  NODE\tSIDE\tROLE\tUPSTREAM\tRECEIVER\tBEHIND PRIMARY\tSINCE\tDOWNSTREAM")
	for _, n := range d.Nodes {
		if !n.Reachable {
			fmt.Fprintf(tw, "  %s\t%s\tUNREACHABLE\t-\t-\t%s\t-\t%s\n", n.Name, n.Cluster, fmtBehind(n.Lag), oneLineStr(n.Error))
			continue
		}
		recv := "-"
		if n.WalReceiver != nil {
			recv = n.WalReceiver.Status
		}
		var down []string
		for _, r := range n.Replication {
			down = append(down, fmt.Sprintf("%s %s lag %s/%.1f s", r.ApplicationName, r.State, fmtBytes(r.LagBytes), r.LagSeconds))
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.Cluster, n.Role, orDash(n.Upstream), recv, fmtBehind(n.Lag),
			since(n, d.Sides, now), orDash(strings.Join(down, "; ")))
	}
	tw.Flush()
	for _, n := range d.Nodes {
		if n.RunLock != "" {
			fmt.Fprintf(w, "\nDR side run lock (on %s): held by %s; another start, stop, failover or switchover of the DR side is refused until that run ends\n",
				n.Name, n.RunLock)
		}
	}
	printSlots(w, d)
}

// printSlots lists the pair's replication slots and the WAL each keeps:
// an inactive slot keeps WAL on its node until its standby streams again.
func printSlots(w io.Writer, d StatusDoc) {
	var some bool
	for _, n := range d.Nodes {
		some = some || len(n.Slots) > 0
	}
	if !some {
		return
	}
	fmt.Fprintf(w, "\nslots of the pair (live; an INACTIVE slot keeps WAL on its node until its standby streams again):\n")
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  NODE\tSLOT\tACTIVE\tKEEPS WAL\tWAL_STATUS")
	for _, n := range d.Nodes {
		for _, sl := range n.Slots {
			active, keeps := "INACTIVE", "-"
			if sl.Active {
				active = "active"
			}
			if sl.RetainedBytes != nil {
				keeps = fmtBytes(*sl.RetainedBytes)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", n.Name, sl.Name, active, keeps, orDash(sl.WalStatus))
		}
	}
	tw.Flush()
}

// refusedCheck returns the check step (1_prepare, 2_check_cluster: the
// steps that only look) at which the record's last run was refused with a
// permanent error, nothing after it having started; "" otherwise. Such a
// run changed nothing: it is not "in progress".
func refusedCheck(r workflow.Record) string {
	if r.Complete {
		return ""
	}
	check := map[string]bool{"1_prepare": true, "2_check_cluster": true}
	refused := ""
	for _, s := range r.Steps {
		switch {
		case refused != "":
			if s.Status != workflow.StatusPending {
				return ""
			}
		case s.Status == workflow.StatusFailed:
			if !check[s.Name] || s.Error == nil || !s.Error.Permanent || s.Interrupted {
				return ""
			}
			refused = s.Name
		case s.Status != workflow.StatusDone || !check[s.Name]:
			return ""
		}
	}
	return refused
}

// since says since when a standby has been streaming or not streaming:
// from its WAL receiver, else from its last replayed transaction, else
// from the last state change of its side recorded in this state file.
func since(n steps.NodeStatus, sides []workflow.Side, now time.Time) string {
	l := n.Lag
	switch {
	case l == nil || l.State == steps.LagUnknown:
		return "-"
	case l.State == steps.LagStreaming && l.Since != nil:
		return fmt.Sprintf("streaming since %s (%s)", fmtTime(l.Since), fmtDur(now.Sub(*l.Since)))
	case l.State == steps.LagStreaming:
		return "streaming"
	case l.LastMessage != nil:
		return fmt.Sprintf("NOT STREAMING; last message %s (%s ago)", fmtTime(l.LastMessage), fmtDur(now.Sub(*l.LastMessage)))
	case l.LastReplay != nil:
		return fmt.Sprintf("NOT STREAMING; last replayed transaction %s (%s ago)", fmtTime(l.LastReplay), fmtDur(now.Sub(*l.LastReplay)))
	}
	for _, s := range sides {
		if string(s.Role) == n.Cluster {
			return fmt.Sprintf("NOT STREAMING; no receiver facts; state file: %s %s since %s", s.Role, strings.ToUpper(string(s.State)), fmtTime(&s.Since))
		}
	}
	return "NOT STREAMING"
}

func fmtTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

// fmtDur prints a duration for people: "0.4s", "12s", "3m05s", "2h03m", "3d04h".
func fmtDur(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
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

// fmtBehind shows how far a node is behind the primary: "1.5 MiB, 0.4 s",
// with "?" for a figure that is unknown; "-" for a node without lag (a
// primary); "unknown" when nothing is known.
func fmtBehind(l *steps.Lag) string {
	if l == nil {
		return "-"
	}
	if l.Bytes == nil && l.Seconds == nil {
		return "unknown"
	}
	b, s := "?", "?"
	if l.Bytes != nil {
		b = fmtBytes(*l.Bytes)
	}
	if l.Seconds != nil {
		s = fmt.Sprintf("%.1f s", *l.Seconds)
	}
	return b + ", " + s
}

// fmtBytes prints a byte count in B, KiB, MiB or GiB.
func fmtBytes(n int64) string {
	const k = 1024
	switch {
	case n < k:
		return fmt.Sprintf("%d B", n)
	case n < k*k:
		return fmt.Sprintf("%.1f KiB", float64(n)/k)
	case n < k*k*k:
		return fmt.Sprintf("%.1f MiB", float64(n)/(k*k))
	default:
		return fmt.Sprintf("%.1f GiB", float64(n)/(k*k*k))
	}
}
