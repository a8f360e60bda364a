package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func sampleReport() *report {
	st := func(name string, s, own float64) stepTime { return stepTime{Name: name, Seconds: s, Own: own} }
	first := sdrRun{Wall: 9, Steps: map[string][]stepTime{
		"standby": {st("1_prepare", 0.001, 0.001), st("2_check_cluster", 1.2, 1.2), st("5_stop_cluster", 0.3, 0.1), st("(outside the steps)", 0.04, 0.04)},
		"primary": {st("1_prepare", 0.002, 0.002), st("4_retain_wal", 0.05, 0.05), st("5_open_access", 0.03, 0.03)},
	}}
	r := &report{Version: 1, Scale: 50, Runs: 3, Reps: 10,
		Floor: Stats{N: 3, Median: 6, Min: 5, Max: 7},
		SDR: sdrSummary{Binary: "bin/sdr", Wall: Stats{N: 3, Median: 7.2, Min: 7, Max: 8}, Ratio: 1.2,
			Own: Stats{N: 3, Median: 0.25}, Runs: []sdrRun{{Wall: 7.2}}},
		Short:      []shortStats{{Name: "rerun of a finished start, standby", Stats: Stats{N: 10, Median: 0.04}, MaxRSSKiB: 20 * 1024}},
		FloorRuns:  []floorRun{{Wall: 6}},
		FirstStart: &first,
	}
	return r
}

func TestWriteTable(t *testing.T) {
	var buf bytes.Buffer
	if err := sampleReport().writeTable(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	// The ratio row carries the value and the verdict; column widths follow the widest label.
	if !rowHas(out, "ratio to the floor (medians)", "1.20", "<= 1.10 (NOT met)") {
		t.Errorf("table lacks the ratio row with 1.20 and its verdict:\n%s", out)
	}
	for _, want := range []string{
		"<= 0.300 (met)",
		"rerun of a finished start, standby",
		"5_stop_cluster / 5_open_access",
		"4_retain_wal",
		"(outside the steps)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	// Steps line up by number: 4_retain_wal (primary only) comes between 2 and 5.
	if i, j := strings.Index(out, "4_retain_wal"), strings.Index(out, "5_stop_cluster / 5_open_access"); i < 0 || j < 0 || i > j {
		t.Errorf("first-start steps out of order:\n%s", out)
	}
}

// rowHas reports whether one line of out holds every field, in order.
func rowHas(out string, fields ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		rest, ok := line, true
		for _, f := range fields {
			i := strings.Index(rest, f)
			if i < 0 {
				ok = false
				break
			}
			rest = rest[i+len(f):]
		}
		if ok {
			return true
		}
	}
	return false
}

func TestWriteJSON(t *testing.T) {
	var buf bytes.Buffer
	if err := sampleReport().writeJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("not one JSON document: %v", err)
	}
	for _, k := range []string{"version", "floor", "sdr", "short", "first_start", "machine"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	if _, ok := doc["baseline"]; ok {
		t.Error("JSON has baseline without -baseline")
	}
}
