package main

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseSections(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
		wantErr  bool
	}{
		{name: "default", in: "start", want: []string{"start"}},
		{name: "one other", in: "failover", want: []string{"failover"}},
		{name: "in the fixed order, once each", in: "switchover, start,switchover", want: []string{"start", "switchover"}},
		{name: "all", in: "all", want: []string{"start", "failover", "switchover"}},
		{name: "unknown", in: "start,stop", wantErr: true},
		{name: "empty", in: " , ", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseSections(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParseLosses(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
		wantErr  bool
	}{
		{name: "kill", in: "kill", want: []string{"kill"}},
		{name: "both, in the given order", in: "freeze,kill,freeze", want: []string{"freeze", "kill"}},
		{name: "unknown", in: "unplug", wantErr: true},
		{name: "empty", in: "", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseLosses(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestScaleFor(t *testing.T) {
	tests := []struct {
		name    string
		scale   int
		section string
		want    int
	}{
		{name: "start default", section: sectionStart, want: 50},
		{name: "failover default is small", section: sectionFailover, want: 10},
		{name: "switchover default", section: sectionSwitchover, want: 50},
		{name: "given scale wins", scale: 200, section: sectionFailover, want: 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := options{scale: tc.scale}
			if got := o.scaleFor(tc.section); got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
}

func TestRoundOrder(t *testing.T) {
	kinds := []string{"a", "b", "c"}
	tests := []struct {
		name  string
		round int
		want  []string
	}{
		{name: "first round as given", round: 0, want: []string{"a", "b", "c"}},
		{name: "second round reversed", round: 1, want: []string{"c", "b", "a"}},
		{name: "third round as given", round: 2, want: []string{"a", "b", "c"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := roundOrder(kinds, tc.round); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	if !reflect.DeepEqual(kinds, []string{"a", "b", "c"}) {
		t.Errorf("roundOrder changed its argument: %v", kinds)
	}
}

func TestLogEvents(t *testing.T) {
	log := `{"level":"info","time":"2026-11-21T12:00:00.100Z","msg":"stopped","node":"dc1-a"}
not json
{"level":"warn","time":"2026-11-21T12:00:01.250Z","msg":"main standby promoted","node":"dc2-a","took":"105.5ms"}
{"level":"warn","time":"bad","msg":"main standby promoted","took":"1s"}
`
	evs, err := parseLogEvents(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 {
		t.Fatalf("got %d events, want 2 (lines that are not JSON or lack a time are skipped): %+v", len(evs), evs)
	}
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name string
		evs  []logEvent
		msg  string
		want time.Time
		ok   bool
	}{
		{name: "found", evs: evs, msg: "stopped", want: at("2026-11-21T12:00:00.100Z"), ok: true},
		{name: "exact message only", evs: evs, msg: "stop", ok: false},
		{name: "none", evs: nil, msg: "stopped", ok: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := firstEvent(tc.evs, tc.msg)
			if ok != tc.ok || !got.Equal(tc.want) {
				t.Errorf("got %v %v, want %v %v", got, ok, tc.want, tc.ok)
			}
		})
	}
	called, returned, ok := promotedEvent(evs)
	if !ok || !returned.Equal(at("2026-11-21T12:00:01.250Z")) || !called.Equal(at("2026-11-21T12:00:01.1445Z")) {
		t.Errorf("promotedEvent = %v %v %v", called, returned, ok)
	}
	if _, _, ok := promotedEvent(evs[:1]); ok {
		t.Errorf("promotedEvent found a promotion in a log without one")
	}
}

func TestSummariseSteps(t *testing.T) {
	runs := [][]stepOffset{
		{{Name: "1_prepare", Start: 0.01, Took: 0.001}, {Name: "2_check_cluster", Start: 0.02, Took: 0.1}},
		{{Name: "1_prepare", Start: 0.03, Took: 0.003}, {Name: "2_check_cluster", Start: 0.04, Took: 0.3}, {Name: "3_fence", Start: 0.4, Took: 0.01}},
		{{Name: "1_prepare", Start: 0.02, Took: 0.002}},
	}
	got := summariseSteps(runs)
	if len(got) != 3 || got[0].Name != "1_prepare" || got[1].Name != "2_check_cluster" || got[2].Name != "3_fence" {
		t.Fatalf("steps %+v, want them in the order they first appear", got)
	}
	if got[0].Start.N != 3 || got[0].Start.Median != 0.02 || got[0].Took.Median != 0.002 {
		t.Errorf("1_prepare: %+v", got[0])
	}
	if got[1].Took.N != 2 || got[1].Took.Median != 0.2 || got[1].Took.Max != 0.3 {
		t.Errorf("2_check_cluster: %+v", got[1])
	}
}

func TestWriterResult(t *testing.T) {
	t0 := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	r := writerResult{Acks: []writeAck{{0, 1, at(1)}, {0, 2, at(5)}, {1, 3, at(900)}, {1, 4, at(905)}}}
	tests := []struct {
		name      string
		last      bool
		target    int
		wantID    int64
		wantFound bool
	}{
		{name: "last on the old primary", last: true, target: 0, wantID: 2, wantFound: true},
		{name: "first on the new primary", target: 1, wantID: 3, wantFound: true},
		{name: "first on the old primary", target: 0, wantID: 1, wantFound: true},
		{name: "none on a third target", target: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var a writeAck
			var ok bool
			if tc.last {
				a, ok = r.lastOn(tc.target)
			} else {
				a, ok = r.firstOn(tc.target)
			}
			if ok != tc.wantFound || a.ID != tc.wantID {
				t.Errorf("got %+v %v, want id %d %v", a, ok, tc.wantID, tc.wantFound)
			}
		})
	}
}

func sampleFailoverReport() *failoverReport {
	r := &failoverReport{Version: 1, Scale: 10, Runs: 3, RetryMS: 2, Settle: 1}
	r.Kinds = []failoverKind{
		{Scenario: lossKill, Kind: kindPromote, FirstWrite: Stats{N: 3, Median: 0.09, Min: 0.07, Max: 0.1}},
		{Scenario: lossKill, Kind: kindSDR, Binary: "bin/sdr", FirstWrite: Stats{N: 3, Median: 0.15, Min: 0.14, Max: 0.2}, Diff: 0.06,
			Steps: []stepOffsetStats{{Name: "2_check_cluster", Start: Stats{N: 3, Median: 0.014}, Took: Stats{N: 3, Median: 0.096}}}},
		{Scenario: lossFreeze, Kind: kindSDR, Binary: "bin/sdr", FirstWrite: Stats{N: 3, Median: 30.3}, Diff: 30.2},
	}
	r.Details = []failoverRun{{Scenario: lossKill, Kind: kindSDR, FirstWrite: 0.15, PromoteCall: 0.119, PromoteTook: -1}}
	return r
}

func TestFailoverTable(t *testing.T) {
	var buf bytes.Buffer
	if err := sampleFailoverReport().writeTable(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"kill: pg_promote alone",
		"kill: sdr (bin/sdr)",
		"<= 0.500 (met)",
		"<= 0.500 (NOT met)",
		"kill: sdr: steps (seconds after the start)",
		"2_check_cluster",
		"1 kill sdr",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	var doc map[string]any
	buf.Reset()
	if err := sampleFailoverReport().writeJSON(&buf); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil || doc["kinds"] == nil {
		t.Fatalf("JSON: %v\n%s", err, buf.String())
	}
}

func TestSwitchoverTable(t *testing.T) {
	r := &switchoverReport{Version: 1, Scale: 50, Runs: 3, RetryMS: 2, Kinds: []switchKind{
		{Kind: kindBare, Window: Stats{N: 6, Median: 0.3}, StopReturned: Stats{N: 6, Median: 0.2}, Acks: 100},
		{Kind: kindSDR, Binary: "bin/sdr", Window: Stats{N: 6, Median: 1.2}, Diff: 0.9, ReplaySeen: Stats{N: 6, Median: 0.7}, Acks: 120, Lost: 0,
			PromoteSteps: []stepOffsetStats{{Name: "3_wait_primary", Took: Stats{N: 6, Median: 0.5}}}},
		{Kind: kindBaseline, Binary: "old/sdr", Window: Stats{N: 6, Median: 2.5}},
	}}
	var buf bytes.Buffer
	if err := r.writeTable(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"bare: pg_ctl stop -m fast, then pg_promote",
		"sdr (bin/sdr)",
		"< 2.000 (met)",
		"< 2.000 (NOT met)",
		"the promote half saw the shutdown checkpoint replayed",
		"sdr, promote half: steps",
		"3_wait_primary",
		"120, 0",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestResultsOutput(t *testing.T) {
	start := sampleReport()
	tests := []struct {
		name     string
		res      results
		wantJSON string // a key the JSON document must have at its top
	}{
		{name: "start alone prints the start report as before", res: results{Start: start}, wantJSON: "floor"},
		{name: "another section alone: a member named after it", res: results{Failover: sampleFailoverReport()}, wantJSON: "failover"},
		{name: "several sections, one member each", res: results{Start: start, Failover: sampleFailoverReport()}, wantJSON: "failover"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := tc.res.writeJSON(&buf); err != nil {
				t.Fatal(err)
			}
			var doc map[string]any
			if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
				t.Fatal(err)
			}
			if _, ok := doc[tc.wantJSON]; !ok {
				t.Errorf("JSON lacks %q at its top: %s", tc.wantJSON, buf.String()[:min(buf.Len(), 300)])
			}
			buf.Reset()
			if err := tc.res.writeTable(&buf); err != nil || buf.Len() == 0 {
				t.Errorf("table: %v, %d bytes", err, buf.Len())
			}
		})
	}
}
