package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
)

// Tables of the failover and switchover sections.

func writeIndentedJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (r *failoverReport) writeJSON(w io.Writer) error   { return writeIndentedJSON(w, r) }
func (r *switchoverReport) writeJSON(w io.Writer) error { return writeIndentedJSON(w, r) }

func writeMachine(bw io.Writer, title, date string, m machine, start, end [3]float64) {
	fmt.Fprintf(bw, "sdr-bench %s %s\n", title, date)
	fmt.Fprintf(bw, "machine: %d CPUs (%s), memory %s, kernel %s, PostgreSQL %s, %s\n",
		m.CPUs, m.CPUModel, m.MemTotal, m.Kernel, m.PostgreSQL, m.Go)
	fmt.Fprintf(bw, "load average: %.2f %.2f %.2f at start, %.2f %.2f %.2f at end\n", start[0], start[1], start[2], end[0], end[1], end[2])
}

// fmtStats prints median, min and max, or dashes when nothing was measured.
func fmtStats(s Stats) string {
	if s.N == 0 {
		return "-\t-\t-"
	}
	return fmt.Sprintf("%.3f\t%.3f\t%.3f", s.Median, s.Min, s.Max)
}

// fmtSec prints a figure that may be unknown (-1).
func fmtSec(v float64) string {
	if v < 0 {
		return "-"
	}
	return fmt.Sprintf("%.3f", v)
}

// failoverGoal is issue 10's target: at most 0.5 s more than pg_promote alone.
const failoverGoal = 0.5

// switchoverGoal is issue 11's: a window under 2 s.
const switchoverGoal = 2.0

func kindLabel(kind, bin string) string {
	switch kind {
	case kindPromote:
		return "pg_promote alone (connect, pg_promote(true, 60))"
	case kindBare:
		return "bare: pg_ctl stop -m fast, then pg_promote"
	}
	return fmt.Sprintf("%s (%s)", kind, bin)
}

func (r *failoverReport) writeTable(w io.Writer) error {
	bw := bufio.NewWriter(w)
	writeMachine(bw, "failover", r.Date, r.Machine, r.Load.Start, r.Load.End)
	fmt.Fprintf(bw, "data: pgbench scale %d, %d MiB in all databases of the primary; a fresh DR pair for every run (both sdr starts took %.1f s median)\n",
		r.Scale, r.DBBytes>>20, r.Setup.Median)
	fmt.Fprintf(bw, "runs: %d of each kind, alternately; data centre 1 lost, the action %.1f s later; "+
		"a client retries an INSERT on the main standby every %.0f ms\n", r.Runs, r.Settle, r.RetryMS)
	fmt.Fprintln(bw, "  kill: its PostgreSQL servers get SIGKILL and its sshd goes away (connections to it are refused at once)")
	fmt.Fprintf(bw, "  freeze: its PostgreSQL servers and sshd get SIGSTOP (connections to it hang until the client's timeout; sdr's timeouts.connect: %s)\n", r.Connect)
	fmt.Fprintln(bw)

	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "failover: start of the action to the first write accepted (seconds)\tmedian\tmin\tmax\tgoal")
	for _, k := range r.Kinds {
		fmt.Fprintf(tw, "%s: %s\t%s\t\n", k.Scenario, kindLabel(k.Kind, k.Binary), fmtStats(k.FirstWrite))
		if k.Kind != kindPromote {
			g := goal{fmt.Sprintf("<= %.3f", failoverGoal), k.Diff <= failoverGoal}
			fmt.Fprintf(tw, "  more than pg_promote alone (medians)\t%.3f\t\t\t%s\n", k.Diff, g)
			fmt.Fprintf(tw, "  pg_promote called (from sdr's log)\t%s\t\n", fmtStats(k.PromoteCall))
			fmt.Fprintf(tw, "  pg_promote took\t%s\t\n", fmtStats(k.PromoteTook))
			fmt.Fprintf(tw, "  sdr exited (cascade followed, promotion recorded)\t%s\t\n", fmtStats(k.Done))
			fmt.Fprintf(tw, "  peak RSS\t%.1f MiB\t\t\t\n", float64(k.PeakRSSKiB)/1024)
		} else {
			fmt.Fprintf(tw, "  pg_promote called (after connecting)\t%s\t\n", fmtStats(k.PromoteCall))
			fmt.Fprintf(tw, "  pg_promote took\t%s\t\n", fmtStats(k.PromoteTook))
		}
	}
	tw.Flush()
	for _, k := range r.Kinds {
		if len(k.Steps) == 0 {
			continue
		}
		fmt.Fprintln(bw)
		tw = tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "%s: %s: steps (seconds after the start)\tstarted median\tmin\tmax\ttook median\tmin\tmax\n", k.Scenario, k.Kind)
		for _, s := range k.Steps {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Name, fmtStats(s.Start), fmtStats(s.Took))
		}
		tw.Flush()
	}
	fmt.Fprintln(bw)
	tw = tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "each run\tfirst write\tpg_promote called\tpg_promote took\tdone\twrite attempts\tload1\tCPUs busy before\twaited\tCPUs busy during")
	for i, d := range r.Details {
		fmt.Fprintf(tw, "%d %s %s\t%.3f\t%s\t%s\t%.3f\t%d\t%.2f\t%.2f\t%.0f s\t%.2f\n", i+1, d.Scenario, d.Kind, d.FirstWrite, fmtSec(d.PromoteCall), fmtSec(d.PromoteTook),
			d.Done, d.Attempts, d.Env.Load1, d.Env.BusyBefore, d.Env.WaitedQuiet, d.Env.BusyDuring)
	}
	tw.Flush()
	return bw.Flush()
}

func (r *switchoverReport) writeTable(w io.Writer) error {
	bw := bufio.NewWriter(w)
	writeMachine(bw, "switchover", r.Date, r.Machine, r.Load.Start, r.Load.End)
	fmt.Fprintf(bw, "data: pgbench scale %d, %d MiB in all databases of the primary (pgbench -i took %.1f s); one DR pair for all runs\n",
		r.Scale, r.Setup.DBBytes>>20, r.Setup.LoadSeconds)
	fmt.Fprintf(bw, "runs: %d rounds, each kind switching there and back in every round (%d windows per kind); "+
		"a client writes one row per transaction, pausing %.0f ms after each\n\n", r.Runs, 2*r.Runs, r.RetryMS)

	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "switchover: last write accepted on the old primary to the first on the new (seconds)\tmedian\tmin\tmax\tgoal")
	for _, k := range r.Kinds {
		g := goal{}
		if k.Kind != kindBare {
			g = goal{fmt.Sprintf("< %.3f", switchoverGoal), k.Window.N > 0 && k.Window.Median < switchoverGoal}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", kindLabel(k.Kind, k.Binary), fmtStats(k.Window), g)
		if k.Kind != kindBare {
			fmt.Fprintf(tw, "  more than bare (medians)\t%.3f\t\t\t\n", k.Diff)
		}
	}
	tw.Flush()

	fmt.Fprintln(bw)
	tw = tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	header := "where the window goes (seconds after the last write on the old primary, medians)"
	for _, k := range r.Kinds {
		header += "\t" + k.Kind
	}
	fmt.Fprintln(tw, header)
	row := func(name string, get func(k switchKind) Stats) {
		line := name
		for _, k := range r.Kinds {
			s := get(k)
			if s.N == 0 {
				line += "\t-"
			} else {
				line += fmt.Sprintf("\t%.3f", s.Median)
			}
		}
		fmt.Fprintln(tw, line)
	}
	row("pg_ctl stop -m fast returned", func(k switchKind) Stats { return k.StopReturned })
	row("the promote half saw the shutdown checkpoint replayed", func(k switchKind) Stats { return k.ReplaySeen })
	row("pg_promote called", func(k switchKind) Stats { return k.PromoteCalled })
	row("pg_promote returned", func(k switchKind) Stats { return k.PromoteReturned })
	row("first write accepted on the new primary", func(k switchKind) Stats { return k.Window })
	fmt.Fprintln(tw, "(seconds after the start)")
	row("last write accepted on the old primary", func(k switchKind) Stats { return k.LastOld })
	row("demote half exited", func(k switchKind) Stats { return k.DemoteExit })
	row("promote half exited", func(k switchKind) Stats { return k.PromoteExit })
	line := "acknowledged writes, lost"
	for _, k := range r.Kinds {
		line += fmt.Sprintf("\t%d, %d", k.Acks, k.Lost)
	}
	fmt.Fprintln(tw, line)
	tw.Flush()

	for _, k := range r.Kinds {
		for _, half := range []struct {
			name  string
			steps []stepOffsetStats
		}{{"demote half", k.DemoteSteps}, {"promote half", k.PromoteSteps}} {
			if len(half.steps) == 0 {
				continue
			}
			fmt.Fprintln(bw)
			tw = tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
			fmt.Fprintf(tw, "%s, %s: steps (seconds after the start)\tstarted median\tmin\tmax\ttook median\tmin\tmax\n", k.Kind, half.name)
			for _, s := range half.steps {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Name, fmtStats(s.Start), fmtStats(s.Took))
			}
			tw.Flush()
		}
	}

	fmt.Fprintln(bw)
	tw = tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "each run\twindow\tstop returned\treplay seen\tpg_promote called\tpg_promote returned\tlast old write\tdone\tacked\tlost\tload1\tCPUs busy before\tCPUs busy during")
	for i, d := range r.Details {
		fmt.Fprintf(tw, "%d %s %s\t%.3f\t%s\t%s\t%s\t%s\t%.3f\t%.3f\t%d\t%d\t%.2f\t%.2f\t%.2f\n", i+1, d.Kind, d.Direction, d.Window,
			fmtSec(d.StopReturned), fmtSec(d.ReplaySeen), fmtSec(d.PromoteCalled), fmtSec(d.PromoteReturned), d.LastOld, d.Done,
			d.Acks, d.Lost, d.Env.Load1, d.Env.BusyBefore, d.Env.BusyDuring)
	}
	tw.Flush()
	return bw.Flush()
}
