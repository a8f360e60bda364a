package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pgsdr/sdr/workflow"
)

func TestConsoleKeepsProgressLineBelowLogLines(t *testing.T) {
	tests := []struct {
		name string
		tty  bool
		do   func(c *console)
		want string
	}{
		{"a log line alone", true, func(c *console) { _, _ = c.Write([]byte("log 1\n")) }, "log 1\n"},
		{
			"a progress line, redrawn, then erased", true,
			func(c *console) { c.setLine("copy 10%"); c.setLine("copy 20%"); c.clear(); c.clear() },
			"\r\x1b[Kcopy 10%\r\x1b[Kcopy 20%\r\x1b[K",
		},
		{
			"a log line goes above the progress line", true,
			func(c *console) { c.setLine("copy 10%"); _, _ = c.Write([]byte("log 1\n")); c.setLine("copy 20%") },
			"\r\x1b[Kcopy 10%\r\x1b[Klog 1\ncopy 10%\r\x1b[Kcopy 20%",
		},
		{"the same line is not drawn again", true, func(c *console) { c.setLine("a"); c.setLine("a") }, "\r\x1b[Ka"},
		{"cut to the width", true, func(c *console) { c.setLine(strings.Repeat("x", 100)) }, "\r\x1b[K" + strings.Repeat("x", 79)},
		{
			"not a terminal: no progress line at all", false,
			func(c *console) { c.setLine("copy 10%"); _, _ = c.Write([]byte("log 1\n")); c.clear() },
			"log 1\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			c := &console{w: &buf, tty: tc.tty, fd: -1}
			tc.do(c)
			if buf.String() != tc.want {
				t.Errorf("wrote %q, want %q", buf.String(), tc.want)
			}
		})
	}
}

func TestProgressLineFitsTheWidth(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	r := workflow.ProgressReport{Step: "7_build_standby", Parts: []workflow.PartProgress{
		{Part: "dc2-a", Done: 120 << 20, Total: 800 << 20, Rate: 40 << 20, Remaining: f(17)},
		{Part: "dc2-b", Done: 3 << 20, Rate: 1 << 20},
	}}
	tests := []struct {
		name  string
		width int
		want  string
	}{
		{"wide: in full", 200, "7_build_standby  dc2-a: 120.0 MiB of 800.0 MiB (15%), 40.0 MiB/s, 17s left | dc2-b: 3.0 MiB, 1.0 MiB/s"},
		{"narrow: in short", 79, "7_build_standby  dc2-a 15% 17s left | dc2-b 3.0 MiB"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := progressLine(r, tc.width); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	if got := progressLine(workflow.ProgressReport{Step: "7_build_standby"}, 80); got != "" {
		t.Errorf("nothing in progress: %q, want no line", got)
	}
}

func TestFmtPart(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	tests := []struct {
		name string
		p    workflow.PartProgress
		want string
	}{
		{"everything known", workflow.PartProgress{Part: "dc2-a", Done: 120 << 20, Total: 800 << 20, Rate: 40 << 20, Remaining: f(17)},
			"dc2-a: 120.0 MiB of 800.0 MiB (15%), 40.0 MiB/s, 17s left"},
		{"no rate yet", workflow.PartProgress{Part: "dc2-a", Done: 1 << 20, Total: 800 << 20}, "dc2-a: 1.0 MiB of 800.0 MiB (0%)"},
		{"no total", workflow.PartProgress{Part: "dc2-b", Done: 3 << 30, Rate: 1 << 30}, "dc2-b: 3.0 GiB, 1.0 GiB/s"},
		{"long", workflow.PartProgress{Part: "x", Done: 1, Total: 2, Rate: 1, Remaining: f(3725)}, "x: 1 B of 2 B (50%), 1 B/s, 1h02m left"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := fmtPart(tc.p); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestConsoleProgress: on a terminal the progress line follows every
// report and is erased when nothing is in progress; every 10 s per part a
// log entry is written, which the console shows only when it is not a
// terminal, and the log file always keeps.
func TestConsoleProgress(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.Local)
	rep := func(parts ...int64) workflow.ProgressReport {
		r := workflow.ProgressReport{RunID: "run-1", Step: "7_build_standby", Parts: []workflow.PartProgress{}}
		for i, d := range parts {
			r.Parts = append(r.Parts, workflow.PartProgress{Part: []string{"dc2-a", "dc2-b"}[i], Done: d << 20, Total: 100 << 20})
		}
		return r
	}
	type ev struct {
		at time.Duration
		r  workflow.ProgressReport
	}
	evs := []ev{
		{0, rep(1)}, {time.Second, rep(2, 1)}, {9 * time.Second, rep(9, 5)},
		{10 * time.Second, rep(10, 6)}, {12 * time.Second, rep(12, 7)}, {20 * time.Second, rep(20, 11)}, {21 * time.Second, rep()},
	}
	// Lines logged: dc2-a at 10 s and 20 s, dc2-b (first seen at 1 s) at 12 s.
	wantLogged := []string{"progress dc2-a: 10.0 MiB of 100.0 MiB (10%)", "progress dc2-b: 7.0 MiB of 100.0 MiB (7%)", "progress dc2-a: 20.0 MiB of 100.0 MiB (20%)"}
	for _, tty := range []bool{false, true} {
		t.Run(map[bool]string{false: "not a terminal", true: "terminal"}[tty], func(t *testing.T) {
			var buf bytes.Buffer
			logFile := t.TempDir() + "/sdr.log"
			out, err := newOutputOn(&console{w: &buf, tty: tty, fd: -1}, logFile, false)
			if err != nil {
				t.Fatal(err)
			}
			p := newConsoleProgress(out.con, out.log)
			var now time.Time
			p.now = func() time.Time { return now }
			for _, e := range evs {
				now = t0.Add(e.at)
				if err := p.ReportProgress(e.r); err != nil {
					t.Fatal(err)
				}
			}
			out.close()
			got := buf.String()
			for _, l := range wantLogged {
				if strings.Contains(got, l) == tty {
					t.Errorf("console shows %q: %v, want %v:\n%q", l, !tty, !tty, got)
				}
			}
			if tty {
				// One part fits in full in 80 columns; two only in short.
				for _, l := range []string{"\r\x1b[K7_build_standby  dc2-a: 1.0 MiB of 100.0 MiB (1%)\r", "\r\x1b[K7_build_standby  dc2-a 20% | dc2-b 11%\r"} {
					if !strings.Contains(got, l) {
						t.Errorf("terminal never showed %q:\n%q", l, got)
					}
				}
				if !strings.HasSuffix(got, "\r\x1b[K") {
					t.Errorf("the progress line is not erased at the end:\n%q", got)
				}
			} else if strings.Contains(got, "\r") || strings.Count(got, "\n") != len(wantLogged) {
				t.Errorf("not a terminal: want exactly the %d plain lines:\n%q", len(wantLogged), got)
			}
			file, err := os.ReadFile(logFile)
			if err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(string(file), `"progress":{`); n != len(wantLogged) {
				t.Errorf("log file has %d progress entries, want %d:\n%s", n, len(wantLogged), file)
			}
		})
	}
}
