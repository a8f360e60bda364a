package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/steps"
	"github.com/pgsdr/sdr/store"
	"github.com/pgsdr/sdr/workflow"
)

// runningState leaves path as a standby-side run leaves it while it
// copies in 7_build_standby: the step started by run-live, which holds
// the lock (until the test ends) and reported its progress.
func runningState(t *testing.T, path string, started time.Time) {
	t.Helper()
	db, err := store.Open(path, store.Options{Pair: "dc1_dc2", Role: workflow.RoleStandby})
	if err != nil {
		t.Fatal(err)
	}
	sb := []workflow.Role{workflow.RoleStandby}
	wf := workflow.Workflow{Action: "start", Role: workflow.RoleStandby, Steps: []workflow.Step{
		{Num: 6, Name: "6_set_guc", Roles: sb},
		{Num: 7, Name: "7_build_standby", Roles: sb, OnStart: workflow.StateRestore},
	}}
	r := &workflow.Runner{Store: db, NewRunID: func() string { return "run-live" }, Now: func() time.Time { return started },
		Failpoint: func(step string, p workflow.FailpointName) error {
			if step == "7_build_standby" && p == workflow.FailBefore {
				return context.Canceled // stands for "still running": the record is rewritten below
			}
			return nil
		}}
	_, _ = r.Run(context.Background(), wf, map[string]string{"a": "1"}, workflow.Options{})
	// Put the step back to started, as the live run has it.
	if err := db.Update(context.Background(), wf.Key(), workflow.RoleStandby, func(rec **workflow.Record, _ *workflow.Side) error {
		sr := (*rec).Step("7_build_standby")
		sr.Status, sr.Ended, sr.Error = workflow.StatusStarted, nil, nil
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	l, err := store.Acquire(path, store.Holder{PID: os.Getpid(), Host: "here", Started: started, RunID: "run-live", Command: "start --role standby"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Release() })
	left := 60.0
	if err := store.NewProgressFile(path).ReportProgress(workflow.ProgressReport{RunID: "run-live", Step: "7_build_standby", Updated: started,
		Parts: []workflow.PartProgress{
			{Part: "dc2-a", Done: 200 << 20, Total: 800 << 20, Rate: 10 << 20, Remaining: &left, Started: started, Updated: started.Add(38 * time.Second)},
			{Part: "dc2-b", Done: 5 << 20, Started: started, Updated: started},
		}}); err != nil {
		t.Fatal(err)
	}
}

func TestStatusShowsRunningStepAndProgress(t *testing.T) {
	clearEnv(t)
	state := filepath.Join(t.TempDir(), "state.db")
	started := time.Date(2026, 11, 21, 6, 0, 0, 0, time.UTC)
	runningState(t, state, started)
	now := started.Add(40 * time.Second)
	d := deps{now: func() time.Time { return now }, probe: func(context.Context, *cluster.Config) []steps.NodeStatus { return nil }}
	code, stdout, stderr := runWith(t, d, "--state", state, "status")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, re := range []string{
		`running now: start --role standby \(pid \d+ on here, .*run run-live\)\nrunning step: start/standby 7_build_standby, for 40s; progress:\n`,
		`\n  dc2-a: 200\.0 MiB of 800\.0 MiB \(25%\), 10\.0 MiB/s, 1m00s left\n`,
		`\n  dc2-b: 5\.0 MiB \(reported 40s ago\)\n`,
	} {
		if !regexp.MustCompile(re).MatchString(stdout) {
			t.Errorf("status does not match %s:\n%s", re, stdout)
		}
	}
	code, stdout, _ = runWith(t, d, "--state", state, "status", "--json")
	if code != ExitOK || !strings.Contains(stdout, `"progress": {`) || !strings.Contains(stdout, `"done_bytes": 209715200`) {
		t.Errorf("status --json has no progress:\n%s", stdout)
	}
}

func TestStatusWatchNotATerminal(t *testing.T) {
	clearEnv(t)
	state := filepath.Join(t.TempDir(), "state.db")
	writeState(t, state, workflow.RoleStandby, true)
	start := time.Now()
	code, stdout, stderr := run(t, "--state", state, "status", "--watch", "--interval", "100ms", "--count", "3")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if took := time.Since(start); took < 200*time.Millisecond || took > 10*time.Second {
		t.Errorf("3 refreshes 100ms apart took %s", took)
	}
	seps := regexp.MustCompile(`(?m)^=== \d{4}-\d\d-\d\d \d\d:\d\d:\d\d: refresh (\d), sdr status, every 100ms \(Ctrl-C ends\) ===$`).FindAllStringSubmatch(stdout, -1)
	if len(seps) != 3 || seps[0][1] != "1" || seps[2][1] != "3" {
		t.Errorf("separators %v, want refresh 1..3:\n%s", seps, stdout)
	}
	if n := strings.Count(stdout, "side standby: state BACKUP_FAIL"); n != 3 {
		t.Errorf("the status is shown %d times, want 3", n)
	}
	if strings.Contains(stdout, "\x1b[") {
		t.Errorf("terminal control sequences on a pipe:\n%q", stdout)
	}
}

func TestStatusWatchEndsWithTheContext(t *testing.T) {
	clearEnv(t)
	state := filepath.Join(t.TempDir(), "state.db")
	writeState(t, state, workflow.RoleStandby, false)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var stdout, stderr bytes.Buffer
	done := make(chan int)
	go func() {
		done <- Run(ctx, []string{"sdr", "--state", state, "status", "-w", "--interval", "100ms"}, &stdout, &stderr)
	}()
	select {
	case code := <-done:
		if code != ExitOK {
			t.Errorf("exit %d after the context ended, want 0: %s", code, stderr.String())
		}
		if n := strings.Count(stdout.String(), "=== "); n < 2 {
			t.Errorf("%d refreshes before the end, want at least 2", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("status --watch did not end with its context")
	}
}

func TestStatusWatchUsage(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	state := filepath.Join(dir, "state.db")
	writeState(t, state, workflow.RoleStandby, false)
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"json and watch", []string{"status", "--watch", "--json"}, ExitUsage},
		{"interval without watch", []string{"status", "--interval", "1s"}, ExitUsage},
		{"count without watch", []string{"status", "--count", "1"}, ExitUsage},
		{"interval too short", []string{"status", "-w", "--interval", "1ms"}, ExitUsage},
		{"negative count", []string{"status", "-w", "--count", "-1"}, ExitUsage},
		{"negative history", []string{"status", "--history", "-1"}, ExitUsage},
		{"negative history with watch", []string{"status", "-w", "--history", "-1"}, ExitUsage},
		{"no state file", []string{"--state", filepath.Join(dir, "none.db"), "status", "-w", "--count", "2"}, ExitNoState},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if args[0] == "status" {
				args = append([]string{"--state", state}, args...)
			}
			code, stdout, stderr := run(t, args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d: %s", code, tc.code, stderr)
			}
			if tc.code == ExitNoState && stdout != "" {
				t.Errorf("printed %q with no state file", stdout)
			}
		})
	}
}

func TestDrawScreen(t *testing.T) {
	body := "line 1\n" + strings.Repeat("y", 50) + "\nline 3\nline 4\nline 5\n"
	head := "head" + strings.Repeat(" ", 39-4-16) + "2026-11-21 06:00" // the time on the right of 39 columns
	tests := []struct {
		name       string
		cols, rows int
		first      bool
		want       []string // the lines drawn after the control prefix
	}{
		{"fits", 40, 10, false, []string{head, "", "line 1", strings.Repeat("y", 39), "line 3", "line 4", "line 5"}},
		{"too short: the rest is named", 40, 7, true, []string{head, "", "line 1", strings.Repeat("y", 39), "line 3", "... 2 more lines: a taller window shows"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			drawScreen(&buf, "head", "2026-11-21 06:00", body, tc.cols, tc.rows, tc.first)
			s := buf.String()
			prefix := termHome
			if tc.first {
				prefix = termHome + termClear + termHome
			}
			if !strings.HasPrefix(s, prefix) || !strings.HasSuffix(s, termEraseBelow) {
				t.Fatalf("not a redraw in place: %q", s)
			}
			s = strings.TrimSuffix(strings.TrimPrefix(s, prefix), termEraseBelow)
			lines := strings.Split(strings.TrimSuffix(s, termEraseToEOL+"\n"), termEraseToEOL+"\n")
			if strings.Join(lines, "|") != strings.Join(tc.want, "|") {
				t.Errorf("drew\n%q\nwant\n%q", lines, tc.want)
			}
			if len(lines) > tc.rows-1 {
				t.Errorf("%d lines on a %d-row screen: it scrolls", len(lines), tc.rows)
			}
		})
	}
}
