package main

import (
	"strings"
	"testing"
	"time"

	"github.com/pgsdr/sdr/e2e/benchcalls"
)

func TestSummarise(t *testing.T) {
	s := time.Second
	tests := []struct {
		name string
		in   []time.Duration
		want Stats
	}{
		{name: "empty", in: nil, want: Stats{}},
		{name: "one", in: []time.Duration{2 * s}, want: Stats{N: 1, Median: 2, Min: 2, Max: 2}},
		{name: "odd count, unsorted", in: []time.Duration{3 * s, 1 * s, 2 * s}, want: Stats{N: 3, Median: 2, Min: 1, Max: 3}},
		{name: "even count averages the middle two", in: []time.Duration{4 * s, 1 * s, 2 * s, 3 * s}, want: Stats{N: 4, Median: 2.5, Min: 1, Max: 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := summarise(tt.in); got != tt.want {
				t.Errorf("summarise(%v) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestUnionWithin(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	iv := func(a, b int) interval { return interval{at(a), at(b)} }
	tests := []struct {
		name     string
		ivs      []interval
		from, to int
		want     time.Duration
	}{
		{name: "none", from: 0, to: 1000, want: 0},
		{name: "one inside", ivs: []interval{iv(100, 300)}, from: 0, to: 1000, want: 200 * time.Millisecond},
		{name: "disjoint add up", ivs: []interval{iv(100, 300), iv(500, 600)}, from: 0, to: 1000, want: 300 * time.Millisecond},
		{name: "overlapping count once", ivs: []interval{iv(100, 300), iv(200, 400)}, from: 0, to: 1000, want: 300 * time.Millisecond},
		{name: "nested count once", ivs: []interval{iv(100, 500), iv(200, 300)}, from: 0, to: 1000, want: 400 * time.Millisecond},
		{name: "touching merge", ivs: []interval{iv(100, 200), iv(200, 300)}, from: 0, to: 1000, want: 200 * time.Millisecond},
		{name: "unsorted input", ivs: []interval{iv(500, 600), iv(100, 300), iv(250, 350)}, from: 0, to: 1000, want: 350 * time.Millisecond},
		{name: "clipped to the window", ivs: []interval{iv(-100, 100), iv(900, 1200)}, from: 0, to: 1000, want: 200 * time.Millisecond},
		{name: "outside the window", ivs: []interval{iv(-300, -100), iv(1100, 1200)}, from: 0, to: 1000, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := unionWithin(tt.ivs, at(tt.from), at(tt.to)); got != tt.want {
				t.Errorf("unionWithin = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestToolTimeSeparatesStatusProbes(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	calls := []benchcalls.Record{
		{Prog: "pg_ctl", Mode: "stop", Start: at(0), End: at(100)},
		{Prog: "pg_ctl", Mode: "status", Start: at(150), End: at(160)},
		{Prog: "pg_basebackup", Mode: "-", Start: at(200), End: at(2200)},
		{Prog: "pg_ctl", Mode: "start", Start: at(2300), End: at(2500)},
		{Prog: "pg_ctl", Mode: "status", Start: at(2600), End: at(2605)},
	}
	work, probes, nw, np := toolTime(calls, at(0), at(3000))
	if work != 2300*time.Millisecond || probes != 15*time.Millisecond || nw != 3 || np != 2 {
		t.Errorf("toolTime = %s (%d calls), %s (%d calls); want 2.3s (3), 15ms (2)", work, nw, probes, np)
	}
}

func TestPairedDiff(t *testing.T) {
	// Round 3 is slow for both: the difference of the medians (1.0 - 1.1)
	// hides what every round shows.
	a := []float64{1.0, 0.9, 3.0, 1.0, 1.2}
	b := []float64{1.1, 1.0, 3.2, 1.1, 1.1}
	s, lower := pairedDiff(a, b)
	round := func(x float64) float64 { return float64(int(x*1000+0.5*sign(x))) / 1000 }
	if s.N != 5 || round(s.Median) != -0.1 || round(s.Min) != -0.2 || round(s.Max) != 0.1 || lower != 4 {
		t.Fatalf("got %+v, lower in %d", s, lower)
	}
	if s, lower := pairedDiff([]float64{1, 2, 3}, []float64{2}); s.N != 1 || lower != 1 {
		t.Fatalf("uneven: %+v, %d", s, lower)
	}
}

func sign(x float64) float64 {
	if x < 0 {
		return -1
	}
	return 1
}

func TestWritePaired(t *testing.T) {
	run := func(wall, own, step2 float64) sdrRun {
		return sdrRun{Wall: wall, Own: own, Steps: map[string][]stepTime{"standby": {{Name: "2_check_cluster", Own: step2}}}}
	}
	a := &sdrSummary{Runs: []sdrRun{run(5.0, 1.0, 0.30), run(6.0, 1.1, 0.25)}}
	b := &sdrSummary{Runs: []sdrRun{run(5.2, 1.2, 0.35), run(5.9, 1.3, 0.30)}}
	var out strings.Builder
	writePaired(&out, a, b)
	for _, want := range []string{"start, both roles at once", "+0.100", "1 of 2", "own time", "-0.200", "2 of 2", "2_check_cluster, own", "-0.050"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in\n%s", want, out.String())
		}
	}
}
