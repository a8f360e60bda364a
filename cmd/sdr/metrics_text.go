package main

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/pgsdr/sdr/steps"
	"github.com/pgsdr/sdr/workflow"
)

// The Prometheus text exposition format (version 0.0.4), as
// node_exporter's textfile collector and every Prometheus server read it.
// docs/metrics.md describes each family.

// label is one label of a sample, in the order written.
type label struct{ name, value string }

// sample is one line of a family.
type sample struct {
	labels []label
	value  float64
}

// family is one metric family: HELP, TYPE, then its samples.
type family struct {
	name, help, typ string
	samples         []sample
}

func (f *family) add(value float64, labels ...label) {
	f.samples = append(f.samples, sample{labels: labels, value: value})
}

// writeFamilies writes every family that has samples, with its HELP and
// TYPE lines, in the order given. No sample carries a timestamp.
func writeFamilies(w io.Writer, fams []*family) error {
	var b strings.Builder
	for _, f := range fams {
		if len(f.samples) == 0 {
			continue
		}
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", f.name, escapeHelp(f.help), f.name, f.typ)
		for _, s := range f.samples {
			b.WriteString(f.name)
			if len(s.labels) > 0 {
				b.WriteByte('{')
				for i, l := range s.labels {
					if i > 0 {
						b.WriteByte(',')
					}
					fmt.Fprintf(&b, "%s=\"%s\"", l.name, escapeLabel(l.value))
				}
				b.WriteByte('}')
			}
			b.WriteByte(' ')
			b.WriteString(formatValue(s.value))
			b.WriteByte('\n')
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

func escapeHelp(s string) string  { return helpEscaper.Replace(s) }
func escapeLabel(s string) string { return labelEscaper.Replace(s) }

// formatValue writes integers without a fraction or an exponent.
func formatValue(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case v == math.Trunc(v) && math.Abs(v) < 1<<53:
		return strconv.FormatInt(int64(v), 10)
	default:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
}

// unixSeconds is t as Unix time in seconds, to the microsecond.
func unixSeconds(t time.Time) float64 { return float64(t.UnixMicro()) / 1e6 }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Results of sdr_last_operation_timestamp_seconds.
const (
	resultSuccess     = "success"
	resultFailed      = "failed"
	resultInterrupted = "interrupted"
)

// buildMetrics turns what `sdr status` knows into metric families. It is
// pure: the status document holds every fact, read once.
func buildMetrics(d StatusDoc, version string) []*family {
	side := string(d.Role)
	// file_cluster tells two state files apart once roles have moved: each
	// then holds a state for both sides (its cluster's, as it was when the
	// cluster played each role), and side alone would repeat a series.
	base := []label{{"pair", d.Pair}, {"side", side}, {"file_cluster", d.Cluster}}
	with := func(extra ...label) []label { return append(append([]label{}, base...), extra...) }

	info := &family{name: "sdr_info", typ: "gauge", help: "Always 1: the sdr version, the DR pair and the side the state file belongs to; live is true when the nodes were asked (--config)."}
	info.add(1, with(label{"version", version}, label{"state_file", d.StateFile}, label{"live", strconv.FormatBool(d.Live == "ok")})...)

	state := &family{name: "sdr_dr_state", typ: "gauge", help: "DR state of the side: one series per state the side can be in, 1 on the current one."}
	since := &family{name: "sdr_dr_state_since_timestamp_seconds", typ: "gauge", help: "When the side entered its current DR state (Unix time)."}
	sides := d.Sides
	if len(sides) == 0 && d.Role != "" {
		sides = []workflow.Side{{Role: d.Role, State: workflow.StateNormal}} // a side never written is normal
	}
	for _, s := range sides {
		states := workflow.SideStates(s.Role)
		known := false
		for _, st := range states {
			known = known || st == s.State
		}
		if !known {
			states = append(states, s.State)
		}
		for _, st := range states {
			state.add(b2f(st == s.State), label{"pair", d.Pair}, label{"side", string(s.Role)}, label{"file_cluster", d.Cluster}, label{"state", string(st)})
		}
		if !s.Since.IsZero() {
			since.add(unixSeconds(s.Since), label{"pair", d.Pair}, label{"side", string(s.Role)}, label{"file_cluster", d.Cluster})
		}
	}

	inProgress := &family{name: "sdr_operation_in_progress", typ: "gauge", help: "1 while an sdr run of this side holds the state file, with its operation and running step (step is empty between steps); 0 with empty labels otherwise."}
	stepStarted := &family{name: "sdr_operation_step_started_timestamp_seconds", typ: "gauge", help: "When the running step of the running operation started (Unix time)."}
	progDone := &family{name: "sdr_operation_progress_done_bytes", typ: "gauge", help: "Bytes the running step has done for a part (for 7_build_standby: copied by pg_basebackup to the node)."}
	progTotal := &family{name: "sdr_operation_progress_total_bytes", typ: "gauge", help: "Bytes the running step expects in all for a part (pg_basebackup's estimate). Absent when unknown."}
	progLeft := &family{name: "sdr_operation_progress_remaining_seconds", typ: "gauge", help: "Estimated seconds until the part is done, at the rate of the last 10 s. Absent when unknown."}
	running := map[string]bool{} // workflows of the running run
	if d.Lock != nil {
		op, step := strings.SplitN(d.Lock.Command+" ", " ", 2)[0], ""
		if r, s := runningStep(d); r != nil {
			op, step = r.Action, s.Name
			running[r.Workflow] = true
			stepStarted.add(unixSeconds(*s.Started), with(label{"op", op}, label{"step", step})...)
		}
		for _, r := range d.Workflows {
			if r.RunID == d.Lock.RunID && d.Lock.RunID != "" {
				running[r.Workflow] = true
			}
		}
		inProgress.add(1, with(label{"op", op}, label{"step", step})...)
		if p := d.Progress; p != nil && p.Step == step {
			for _, part := range p.Parts {
				l := with(label{"op", op}, label{"step", step}, label{"part", part.Part})
				progDone.add(float64(part.Done), l...)
				if part.Total > 0 {
					progTotal.add(float64(part.Total), l...)
				}
				if part.Remaining != nil {
					progLeft.add(*part.Remaining, l...)
				}
			}
		}
	} else {
		inProgress.add(0, with(label{"op", ""}, label{"step", ""})...)
	}

	last := &family{name: "sdr_last_operation_timestamp_seconds", typ: "gauge", help: "When the last run of an operation that is not running now ended (Unix time), by result: success (the operation completed), failed, or interrupted (stopped by a signal, or killed: then the time of its last record)."}
	runs := &family{name: "sdr_operation_runs_total", typ: "counter", help: "Runs of an operation recorded in the state file (kept by --restart)."}
	for _, r := range d.Workflows {
		// role: the two halves of a switchover are two operations.
		l := []label{{"op", r.Action}, {"role", string(r.Role)}}
		runs.add(float64(r.Runs), with(l...)...)
		if running[r.Workflow] {
			continue
		}
		if res, at, ok := lastResult(r); ok {
			last.add(unixSeconds(at), with(append(l, label{"result", res})...)...)
		}
	}

	fams := []*family{info, state, since, inProgress, stepStarted, progDone, progTotal, progLeft, last, runs}
	if d.Live == "ok" {
		fams = append(fams, nodeMetrics(d, base)...)
	}
	return fams
}

// lastResult is how the last run of r ended and when: success at its
// finish; failed or interrupted at the failed step's end, or at the last
// write of the record when the run was killed (its end is unknown).
// ok is false for a workflow that has not run a step.
func lastResult(r workflow.Record) (result string, at time.Time, ok bool) {
	if r.Complete && r.Finished != nil {
		return resultSuccess, *r.Finished, true
	}
	for i := len(r.Steps) - 1; i >= 0; i-- {
		s := r.Steps[i]
		switch {
		case s.Interrupted:
			return resultInterrupted, r.Updated, true
		case s.Status == workflow.StatusFailed:
			res := resultFailed
			if s.Error != nil && s.Error.Type == "interrupted" {
				res = resultInterrupted
			}
			if s.Ended != nil {
				return res, *s.Ended, true
			}
			return res, r.Updated, true
		}
	}
	return "", time.Time{}, false
}

// nodeMetrics are the live facts of every node, from the same probe as
// `sdr status --config`. An unknown figure is an absent sample, never 0.
func nodeMetrics(d StatusDoc, base []label) []*family {
	reach := &family{name: "sdr_node_reachable", typ: "gauge", help: "1 when sdr could connect to the node's PostgreSQL and read its state, else 0."}
	inRec := &family{name: "sdr_node_in_recovery", typ: "gauge", help: "1 when the node is a standby (in recovery), 0 when it is a primary."}
	streaming := &family{name: "sdr_dr_streaming", typ: "gauge", help: "1 when the standby's WAL receiver streams, 0 when it does not. Absent for a primary and for a node that could not be asked."}
	lagBytes := &family{name: "sdr_dr_lag_bytes", typ: "gauge", help: "Bytes the standby has not replayed yet: the primary's current WAL position minus the standby's replay position. Absent when unknown (not streaming, or the primary not asked), never 0 then."}
	lagSec := &family{name: "sdr_dr_lag_seconds", typ: "gauge", help: "Seconds the standby is behind the primary (0 when it replayed all the primary had; else the age of its last message or replayed transaction, at least its upstream's). Absent when unknown."}
	recvBytes := &family{name: "sdr_dr_receive_lag_bytes", typ: "gauge", help: "Bytes of WAL the standby has not received yet: what a failover now would lose. Absent when unknown."}
	timeline := &family{name: "sdr_dr_timeline", typ: "gauge", help: "The node's timeline: on a primary the one it writes WAL on; on a standby that of the last WAL received, else of its last restartpoint."}
	recvLSN := &family{name: "sdr_dr_receive_lsn_bytes", typ: "gauge", help: "The standby's last received WAL position (pg_last_wal_receive_lsn) as bytes."}
	replayLSN := &family{name: "sdr_dr_replay_lsn_bytes", typ: "gauge", help: "The standby's last replayed WAL position (pg_last_wal_replay_lsn) as bytes."}
	currentLSN := &family{name: "sdr_dr_current_lsn_bytes", typ: "gauge", help: "The primary's current WAL position (pg_current_wal_lsn) as bytes, the last reading of it (on the primary node)."}
	refLSN := &family{name: "sdr_dr_lag_reference_lsn_bytes", typ: "gauge", help: "The primary's WAL position this standby's lag is measured against, read right after the standby's own positions: sdr_dr_lag_bytes is it minus sdr_dr_replay_lsn_bytes."}
	primaryCount := &family{name: "sdr_primaries", typ: "gauge", help: "How many nodes of the pair answered as primaries (out of recovery): 1 normally; more than 1 is a split brain."}
	nPrimaries := len(pairPrimaries(d.Nodes))
	if len(d.Nodes) > 0 {
		primaryCount.add(float64(nPrimaries), base...)
	}
	slotActive := &family{name: "sdr_slot_active", typ: "gauge", help: "1 when a standby streams through the pair's replication slot, 0 when nothing does (the slot then keeps WAL on its node)."}
	slotKeeps := &family{name: "sdr_slot_retained_bytes", typ: "gauge", help: "WAL the pair's replication slot keeps on its node: the node's current position minus the slot's restart_lsn. Absent when the slot has none yet."}
	primaries := map[string]string{}
	for _, n := range d.Nodes {
		l := append(append([]label{}, base...), label{"node", n.Name}, label{"cluster", n.Cluster})
		for _, sl := range n.Slots {
			sll := append(append([]label{}, l...), label{"slot", sl.Name})
			slotActive.add(b2f(sl.Active), sll...)
			if sl.RetainedBytes != nil {
				slotKeeps.add(float64(*sl.RetainedBytes), sll...)
			}
		}
		reach.add(b2f(n.Reachable), l...)
		if n.Reachable && n.Role != "" {
			inRec.add(b2f(n.Role == "standby"), l...)
		}
		if n.Timeline != nil {
			timeline.add(float64(*n.Timeline), l...)
		}
		if w := n.WalReceiver; w != nil {
			if v, err := steps.ParseLSN(w.ReceivedLSN); err == nil {
				recvLSN.add(float64(v), l...)
			}
			if v, err := steps.ParseLSN(w.ReplayLSN); err == nil {
				replayLSN.add(float64(v), l...)
			}
		}
		g := n.Lag
		if g == nil {
			continue
		}
		if g.Primary != "" && g.PrimaryLSN != "" {
			if v, err := steps.ParseLSN(g.PrimaryLSN); err == nil {
				refLSN.add(float64(v), l...)
				if was, ok := primaries[g.Primary]; !ok || lsnAfter(g.PrimaryLSN, was) {
					primaries[g.Primary] = g.PrimaryLSN
				}
			}
		}
		if g.State == steps.LagUnknown {
			continue
		}
		streaming.add(b2f(g.State == steps.LagStreaming), l...)
		if g.Bytes != nil {
			lagBytes.add(float64(*g.Bytes), l...)
		}
		if g.ReceiveBytes != nil {
			recvBytes.add(float64(*g.ReceiveBytes), l...)
		}
		if g.Seconds != nil {
			lagSec.add(*g.Seconds, l...)
		}
	}
	for _, n := range d.Nodes {
		if lsn, ok := primaries[n.Name]; ok {
			if v, err := steps.ParseLSN(lsn); err == nil {
				currentLSN.add(float64(v), append(append([]label{}, base...), label{"node", n.Name}, label{"cluster", n.Cluster})...)
			}
		}
	}
	return []*family{reach, inRec, streaming, lagBytes, lagSec, recvBytes, timeline, recvLSN, replayLSN, currentLSN, refLSN, slotActive, slotKeeps, primaryCount}
}

// lsnAfter tells whether LSN a is past LSN b (both parseable).
func lsnAfter(a, b string) bool {
	x, errA := steps.ParseLSN(a)
	y, errB := steps.ParseLSN(b)
	return errA == nil && errB == nil && x > y
}
