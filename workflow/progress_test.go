package workflow

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordingSink keeps every report it is handed.
type recordingSink struct {
	mu      sync.Mutex
	reports []ProgressReport
	err     error
}

func (s *recordingSink) ReportProgress(r ProgressReport) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reports = append(s.reports, r)
	return s.err
}

// brief renders a report as "part done/total" items, for comparisons.
func brief(r ProgressReport) string {
	var parts []string
	for _, p := range r.Parts {
		parts = append(parts, fmt.Sprintf("%s %d/%d", p.Part, p.Done, p.Total))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func TestProgressTrackerSends(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	type ev struct {
		at         time.Duration
		part       string
		done, tot  int64
		end, close bool
	}
	tests := []struct {
		name string
		evs  []ev
		want []string // the reports the sink got, in order
	}{
		{name: "nothing reported: close says nothing", evs: []ev{{close: true}}},
		{
			name: "a new part at once, then at most every second",
			evs: []ev{
				{at: 0, part: "a", done: 1, tot: 10},
				{at: 300 * time.Millisecond, part: "a", done: 2, tot: 10},
				{at: 999 * time.Millisecond, part: "a", done: 3, tot: 10},
				{at: time.Second, part: "a", done: 4, tot: 10},
				{at: 1500 * time.Millisecond, part: "a", done: 5, tot: 10},
				{at: 2100 * time.Millisecond, part: "a", done: 6, tot: 10},
			},
			want: []string{"[a 1/10]", "[a 4/10]", "[a 6/10]"},
		},
		{
			name: "a second part is sent at once with the first",
			evs: []ev{
				{at: 0, part: "b", done: 1, tot: 10},
				{at: 100 * time.Millisecond, part: "a", done: 5, tot: 50},
				{at: 200 * time.Millisecond, part: "b", done: 2, tot: 10},
			},
			want: []string{"[b 1/10]", "[a 5/50, b 1/10]"},
		},
		{
			name: "an ended part is dropped at once; close sends an empty report",
			evs: []ev{
				{at: 0, part: "a", done: 1, tot: 10},
				{at: 0, part: "b", done: 1, tot: 10},
				{at: 100 * time.Millisecond, part: "a", done: 10, tot: 10},
				{at: 200 * time.Millisecond, part: "a", end: true},
				{at: 300 * time.Millisecond, part: "a", end: true},
				{at: 400 * time.Millisecond, close: true},
			},
			want: []string{"[a 1/10]", "[a 1/10, b 1/10]", "[b 1/10]", "[]"},
		},
		{
			name: "negative figures are taken as 0",
			evs:  []ev{{at: 0, part: "a", done: -5, tot: -1}},
			want: []string{"[a 0/0]"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var now time.Time
			sink := &recordingSink{}
			tr := newProgressTracker("run-1", "7_build_standby", time.Second, func() time.Time { return now }, sink, nil)
			for _, e := range tc.evs {
				now = t0.Add(e.at)
				switch {
				case e.close:
					tr.close()
				case e.end:
					tr.end(e.part)
				default:
					tr.update(e.part, e.done, e.tot)
				}
			}
			var got []string
			for _, r := range sink.reports {
				if r.RunID != "run-1" || r.Step != "7_build_standby" {
					t.Errorf("report names run %q step %q", r.RunID, r.Step)
				}
				got = append(got, brief(r))
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("sent %q, want %q", got, tc.want)
			}
		})
	}
}

func TestProgressRate(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	type rep struct {
		at   time.Duration
		done int64
	}
	tests := []struct {
		name      string
		total     int64
		reps      []rep
		rate      float64
		remaining float64 // -1: unknown
	}{
		{"one report: unknown", 100, []rep{{0, 10}}, 0, -1},
		{"reports too close: unknown", 100, []rep{{0, 10}, {400 * time.Millisecond, 20}}, 0, -1},
		{"steady 10 B/s", 100, []rep{{0, 0}, {time.Second, 10}, {2 * time.Second, 20}}, 10, 8},
		{"unknown total: a rate, no time left", 0, []rep{{0, 0}, {2 * time.Second, 40}}, 20, -1},
		{
			// 0..5 s at 100 B/s, then 5..20 s at 10 B/s: the rate is
			// measured over the last 10 s only (10..20 s: 10 B/s).
			"the rate follows the last 10 seconds", 10000,
			[]rep{{0, 0}, {5 * time.Second, 500}, {10 * time.Second, 550}, {15 * time.Second, 600}, {20 * time.Second, 650}},
			10, (10000 - 650) / 10.0,
		},
		{"done beyond the estimate: nothing left", 100, []rep{{0, 50}, {time.Second, 120}}, 70, 0},
		{"stalled: rate 0, time left unknown", 100, []rep{{0, 50}, {5 * time.Second, 50}}, 0, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var now time.Time
			sink := &recordingSink{}
			tr := newProgressTracker("r", "s", time.Nanosecond, func() time.Time { return now }, sink, nil)
			for _, r := range tc.reps {
				now = t0.Add(r.at)
				tr.update("a", r.done, tc.total)
			}
			last := sink.reports[len(sink.reports)-1].Parts[0]
			if math.Abs(last.Rate-tc.rate) > 1e-9 {
				t.Errorf("rate %v, want %v", last.Rate, tc.rate)
			}
			switch {
			case tc.remaining < 0 && last.Remaining != nil:
				t.Errorf("remaining %v, want unknown", *last.Remaining)
			case tc.remaining >= 0 && (last.Remaining == nil || math.Abs(*last.Remaining-tc.remaining) > 1e-9):
				t.Errorf("remaining %v, want %v", last.Remaining, tc.remaining)
			}
			if !last.Started.Equal(t0) || !last.Updated.Equal(now) {
				t.Errorf("started %v updated %v, want %v and %v", last.Started, last.Updated, t0, now)
			}
		})
	}
}

func TestPartPercent(t *testing.T) {
	tests := []struct {
		name        string
		done, total int64
		want        float64
	}{
		{"unknown total", 5, 0, -1},
		{"half", 50, 100, 50},
		{"beyond the estimate", 150, 100, 100},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := (PartProgress{Done: tc.done, Total: tc.total}).Percent(); got != tc.want {
				t.Errorf("Percent() = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestRunnerHandsProgressToSink: a step's reports reach the sink with the
// run and step; the step's end clears them; a failing sink is logged once
// and does not fail the step; without a sink, Progress does nothing.
func TestRunnerHandsProgressToSink(t *testing.T) {
	tests := []struct {
		name    string
		sinkErr error
		noSink  bool
	}{
		{name: "sink takes the reports"},
		{name: "a failing sink does not fail the step", sinkErr: errors.New("disk full")},
		{name: "no sink", noSink: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fx := &effects{}
			wf := fiveSteps(fx, map[string]stepFn{
				"3_three": func(_ context.Context, rc *RunContext, _ int) error {
					rc.Progress("dc2-a", 10, 100)
					rc.Progress("dc2-b", 20, 100)
					rc.EndProgress("dc2-b")
					return nil
				},
			})
			sink := &recordingSink{err: tc.sinkErr}
			r := &Runner{Store: newFakeStore(), NewRunID: func() string { return "run-9" }, Failpoint: func(string, FailpointName) error { return nil }}
			if !tc.noSink {
				r.Progress = sink
			}
			if _, err := r.Run(context.Background(), wf, map[string]string{"a": "1"}, Options{}); err != nil {
				t.Fatalf("run failed: %v", err)
			}
			if tc.noSink {
				return
			}
			var got []string
			for _, rep := range sink.reports {
				if rep.RunID != "run-9" || rep.Step != "3_three" {
					t.Errorf("report of run %q step %q", rep.RunID, rep.Step)
				}
				got = append(got, brief(rep))
			}
			want := []string{"[dc2-a 10/100]", "[dc2-a 10/100, dc2-b 20/100]", "[dc2-a 10/100]", "[]"}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("sink got %q, want %q", got, want)
			}
		})
	}
}
