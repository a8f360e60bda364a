package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/pgsdr/sdr/workflow"
)

// planStatusText is how the text plan names a step's status.
var planStatusText = map[workflow.PlanStatus]string{
	workflow.PlanChecked:     "checked",
	workflow.PlanWouldChange: "would change",
	workflow.PlanNoChange:    "no change",
	workflow.PlanWouldRun:    "would run",
	workflow.PlanDone:        "done",
	workflow.PlanSkipped:     "skipped",
	workflow.PlanRefused:     "REFUSED",
	workflow.PlanNotReached:  "not reached",
}

// printPlan writes the plan for people. Every line it prints comes from
// the document, so the text and --json say the same.
func printPlan(w io.Writer, d PlanDoc) {
	p := d.Plan
	stateFile := d.StateFile
	switch {
	case !d.StateFileExists:
		stateFile += " (none yet: a run creates it)"
	case d.State != "":
		stateFile += fmt.Sprintf(" (this side's state: %s)", d.State)
	}
	fmt.Fprintf(w, "Plan of sdr %s for DR pair %s\nstate file %s\n", d.Command, d.Pair, stateFile)
	fmt.Fprintln(w, "The checks below ran against the live nodes; nothing was changed on any node and nothing was recorded.")
	switch {
	case p.AlreadyComplete:
		fmt.Fprintf(w, "The recorded %s is complete: a run says so and does nothing.\n", p.Workflow)
	case p.SupersededBy != "":
		fmt.Fprintf(w, "The recorded %s was superseded by %s: a run starts at step 1.\n", p.Workflow, p.SupersededBy)
	case p.ResumesAt != "" && p.ResumesAt != firstStep(p):
		fmt.Fprintf(w, "A run resumes at %s (the steps before it are done).\n", p.ResumesAt)
	}
	fmt.Fprintln(w)
	width := 0
	for _, e := range p.Steps {
		width = max(width, len(e.Step))
	}
	for _, e := range p.Steps {
		fmt.Fprintf(w, "%-*s  %-12s  %s\n", width, e.Step, planStatusText[e.Status], e.Short)
		if e.Status == workflow.PlanSkipped || e.Status == workflow.PlanDone || e.Status == workflow.PlanNotReached {
			continue
		}
		ind := strings.Repeat(" ", width+2)
		if showSummary(e) {
			fmt.Fprintf(w, "%s%s\n", ind, e.Summary)
		}
		if st := statesText(e); st != "" {
			fmt.Fprintf(w, "%s%s\n", ind, st)
		}
		for _, it := range e.Items {
			printPlanItem(w, ind, it)
		}
		for _, n := range e.Notes {
			fmt.Fprintf(w, "%snote: %s\n", ind, n)
		}
		if e.Error != nil {
			fmt.Fprintf(w, "%serror: %s\n", ind, oneLineText(e.Error.Message))
		}
	}
	fmt.Fprintln(w)
	switch {
	case p.Allowed && p.AlreadyComplete:
		fmt.Fprintf(w, "Allowed: sdr %s has nothing to do.\n", d.Command)
	case p.Allowed:
		fmt.Fprintf(w, "Allowed: sdr %s would go ahead now, from %s.\n", d.Command, p.ResumesAt)
	default:
		why := ""
		if p.Refusal != nil {
			why = p.Refusal.Message
		}
		fmt.Fprintf(w, "REFUSED at %s: sdr %s would stop there now: %s\n", p.RefusedAt, d.Command, oneLineText(why))
		switch {
		case p.Refusal != nil && !p.Refusal.Permanent && isCheckStep(p, p.RefusedAt):
			fmt.Fprintln(w, "(a run stops there before changing anything. This check may pass once its cause is gone without a change here: "+
				"the standby side's check waits up to the run's --timeout for the primary side's start to create the role and open pg_hba.conf)")
		case isCheckStep(p, p.RefusedAt):
			fmt.Fprintln(w, "(a run stops there before changing anything; fix what the error names, then plan again)")
		}
	}
}

// printPlanItem prints one item of a step, under the step. A setting is
// one line, name: old -> new; the file item before it says where.
func printPlanItem(w io.Writer, ind string, it workflow.PlanItem) {
	who := ""
	if it.Node != "" {
		who = it.Node + ": "
	}
	sub := ind + "    "
	if it.Kind == "setting" && (it.Old != "" || it.New != "") {
		head := fmt.Sprintf("%s: %s -> %s", it.Name, orDash(it.Old), orDash(it.New))
		if it.Action == "keep" || it.Action == "none" {
			head += " (unchanged)"
		}
		fmt.Fprintf(w, "%s- %s%s [%s]\n", ind, who, head, it.Action)
		if it.Why != "" && it.Why != it.What {
			fmt.Fprintf(w, "%swhy: %s\n", sub, it.Why)
		}
		if it.Where != "" && it.Action != "none" && it.Action != "keep" && !strings.HasSuffix(it.Where, "(sdr's block, in the new copy)") {
			fmt.Fprintf(w, "%swhere: %s\n", sub, it.Where)
		}
		return
	}
	fmt.Fprintf(w, "%s- %s%s [%s]\n", ind, who, it.What, it.Action)
	if it.Why != "" {
		fmt.Fprintf(w, "%swhy: %s\n", sub, oneLineText(it.Why))
	}
	if it.Where != "" {
		fmt.Fprintf(w, "%swhere: %s\n", sub, it.Where)
	}
	for _, l := range it.Lines {
		fmt.Fprintf(w, "%s| %s\n", sub, l)
	}
	if it.Bytes > 0 {
		est := "no estimate"
		if it.Seconds > 0 {
			est = "about " + secondsText(it.Seconds)
		}
		fmt.Fprintf(w, "%sbytes to copy: %s (%d bytes), %s\n", sub, fmtBytes(it.Bytes), it.Bytes, est)
	}
	if it.Basis != "" {
		fmt.Fprintf(w, "%sestimate based on: %s\n", sub, it.Basis)
	}
}

// statesText says which DR states the step sets.
func statesText(e workflow.PlanEntry) string {
	var parts []string
	if e.OnStart != "" {
		parts = append(parts, "when it starts: "+string(e.OnStart))
	}
	if e.OnDone != "" {
		parts = append(parts, "when done: "+string(e.OnDone))
	}
	if e.OnFail != "" {
		parts = append(parts, "if it fails: "+string(e.OnFail))
	}
	if len(parts) == 0 {
		return ""
	}
	return "state " + strings.Join(parts, "; ")
}

func firstStep(p *workflow.Plan) string {
	if len(p.Steps) == 0 {
		return ""
	}
	return p.Steps[0].Step
}

func isCheckStep(p *workflow.Plan, step string) bool {
	for _, e := range p.Steps {
		if e.Step == step {
			return e.CheckOnly
		}
	}
	return false
}

// secondsText prints a duration in seconds the way people read it.
func secondsText(s float64) string {
	switch {
	case s < 60:
		return fmt.Sprintf("%.1fs", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", int(s)/60, int(s)%60)
	}
	return fmt.Sprintf("%dh%02dm", int(s)/3600, int(s)%3600/60)
}

// showSummary: the summary adds something to the items under it.
func showSummary(e workflow.PlanEntry) bool {
	if e.Summary == "" || e.Summary == e.Short {
		return false
	}
	for _, it := range e.Items {
		if strings.Contains(e.Summary, it.What) {
			return false
		}
	}
	return true
}

// oneLineText keeps a message on one line.
func oneLineText(s string) string { return strings.Join(strings.Fields(s), " ") }
