package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/steps"
	"github.com/pgsdr/sdr/store"
	"github.com/pgsdr/sdr/workflow"
)

func TestMarkInterrupted(t *testing.T) {
	started := func(run string) []workflow.Record {
		return []workflow.Record{{Workflow: "start/standby", RunID: run, Steps: []workflow.StepRecord{
			{Name: "6_set_guc", Status: workflow.StatusDone},
			{Name: "7_build_standby", Status: workflow.StatusStarted},
			{Name: "8_start_cluster", Status: workflow.StatusPending},
		}}}
	}
	tests := []struct {
		name string
		recs []workflow.Record
		lock *store.Holder
		want bool // 7_build_standby marked
	}{
		{"no live run", started("r1"), nil, true},
		{"the run that started it is live", started("r1"), &store.Holder{PID: 1, RunID: "r1"}, false},
		{"another run holds the lock", started("r1"), &store.Holder{PID: 1, RunID: "r2"}, true},
		{"live holder without a run id", started("r1"), &store.Holder{PID: 1}, false},
		{"failed, not started", []workflow.Record{{RunID: "r1", Steps: []workflow.StepRecord{{Name: "7_build_standby", Status: workflow.StatusFailed}}}}, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			markInterrupted(tc.recs, tc.lock)
			sr := tc.recs[0].Step("7_build_standby")
			if sr.Interrupted != tc.want {
				t.Errorf("interrupted = %v, want %v", sr.Interrupted, tc.want)
			}
			for _, s := range tc.recs[0].Steps {
				if s.Name != "7_build_standby" && s.Interrupted {
					t.Errorf("%s (%s) marked interrupted", s.Name, s.Status)
				}
			}
		})
	}
}

// killedState leaves path as a run killed inside 3_build leaves it: the
// step started, the side in restore, and the lock file naming a process
// that is gone. It returns the dead pid.
func killedState(t *testing.T, path string) int {
	t.Helper()
	db, err := store.Open(path, store.Options{Pair: "dc1_dc2", Role: workflow.RoleStandby})
	if err != nil {
		t.Fatal(err)
	}
	wf := workflow.Workflow{Action: "start", Role: workflow.RoleStandby, Steps: []workflow.Step{
		{Num: 1, Name: "1_prepare", Roles: []workflow.Role{workflow.RoleStandby}},
		{Num: 3, Name: "3_build", Roles: []workflow.Role{workflow.RoleStandby}, OnStart: workflow.StateRestore, OnFail: workflow.StateRestoreFail},
	}}
	r := &workflow.Runner{Store: db, NewRunID: func() string { return "run-killed" }, Failpoint: func(step string, p workflow.FailpointName) error {
		if step == "3_build" && p == workflow.FailBefore {
			runtime.Goexit() // the process dies here
		}
		return nil
	}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = r.Run(context.Background(), wf, map[string]string{"a": "1"}, workflow.Options{})
	}()
	<-done
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("cannot run true: %v", err)
	}
	host, _ := os.Hostname()
	raw, _ := json.Marshal(store.Holder{PID: cmd.Process.Pid, Host: host, Started: time.Now().UTC(), RunID: "run-killed", Command: "start --role standby"})
	if err := os.WriteFile(store.LockPath(path), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

func TestStatusShowsAKilledRun(t *testing.T) {
	clearEnv(t)
	state := filepath.Join(t.TempDir(), "state.db")
	pid := killedState(t, state)

	code, stdout, stderr := run(t, "--state", state, "status")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		"side standby: state RESTORE", "INTERRUPTED: the run that set it is gone",
		"interrupted: 3_build is recorded as started, but run run-killed",
		"pid " + itoa(pid), "Run the same command again",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("status does not say %q:\n%s", want, stdout)
		}
	}
	if !regexp.MustCompile(`\n\s+3_build\s+INTERRUPTED\s+1\s`).MatchString(stdout) {
		t.Errorf("the step row does not show 3_build INTERRUPTED:\n%s", stdout)
	}
	if strings.Contains(stdout, "running now") {
		t.Errorf("status shows a dead run as running:\n%s", stdout)
	}

	code, stdout, stderr = run(t, "--state", state, "status", "--json")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var doc StatusDoc
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatal(err)
	}
	sr := doc.Workflows[0].Step("3_build")
	if sr == nil || sr.Status != workflow.StatusStarted || !sr.Interrupted || doc.Lock != nil {
		t.Errorf("3_build %+v lock %+v, want started and interrupted, no lock", sr, doc.Lock)
	}
	if !strings.Contains(stdout, `"interrupted": true`) {
		t.Errorf("JSON has no \"interrupted\": true:\n%s", stdout)
	}

	// While the run that started the step holds the lock, it is running.
	l, err := store.Acquire(state, store.Holder{PID: os.Getpid(), Host: "here", RunID: "run-killed", Command: "start --role standby"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	_, stdout, _ = run(t, "--state", state, "status")
	if strings.Contains(stdout, "INTERRUPTED") || !strings.Contains(stdout, "running now") {
		t.Errorf("a live run is shown as interrupted, or not as running:\n%s", stdout)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// runWith drives the real app with d as its outside world.
func runWith(t *testing.T, d deps, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	app := newApp(&stdout, &stderr, d)
	err := app.RunContext(context.Background(), append([]string{"sdr"}, args...))
	if err != nil {
		fmt.Fprintf(&stderr, "sdr: %s\n", oneLine(err))
	}
	return exitCode(err), stdout.String(), stderr.String()
}

func TestStatusTextDurationsAndNodes(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	cfg := localConfig(t, dir)
	state := filepath.Join(dir, "state.db")
	// A standby-side run whose clock moves 90 s at every checkpoint, so
	// each step takes 1m30s.
	db, err := store.Open(state, store.Options{Pair: "dc1_dc2", Role: workflow.RoleStandby})
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2026, 11, 21, 6, 0, 0, 0, time.UTC)
	sb := []workflow.Role{workflow.RoleStandby}
	wf := workflow.Workflow{Action: "start", Role: workflow.RoleStandby, Steps: []workflow.Step{
		{Num: 1, Name: "1_prepare", Roles: sb},
		{Num: 4, Name: "4_retain_wal", Roles: []workflow.Role{workflow.RolePrimary}},
		{Num: 7, Name: "7_build_standby", Roles: sb, OnStart: workflow.StateRestore},
		{Num: 8, Name: "8_start_cluster", Roles: sb, OnDone: workflow.StateRecovery},
	}}
	r := &workflow.Runner{Store: db, NewRunID: func() string { return "run-1" },
		Now:       func() time.Time { clock = clock.Add(90 * time.Second); return clock },
		Failpoint: func(string, workflow.FailpointName) error { return nil }}
	if _, err := r.Run(context.Background(), wf, map[string]string{"a": "1"}, workflow.Options{}); err != nil {
		t.Fatal(err)
	}
	now := clock.Add(time.Hour)
	at := func(ago time.Duration) *time.Time { t := now.Add(-ago); return &t }
	i64 := func(v int64) *int64 { return &v }
	f64 := func(v float64) *float64 { return &v }
	nodes := []steps.NodeStatus{
		{Name: "dc1-a", Cluster: "primary", Reachable: true, Role: "primary", Replication: []steps.ReplicationRow{
			{ApplicationName: "dc1-b", State: "streaming"}, {ApplicationName: "sdr_dc1_dc2_dc2_a", State: "streaming", LagBytes: 2048}}},
		{Name: "dc1-b", Cluster: "primary", Reachable: true, Role: "standby", Upstream: "dc1-a",
			WalReceiver: &steps.WalReceiverStatus{Status: "streaming", SenderHost: "/run/dc1-a", SenderPort: 5501},
			Lag:         &steps.Lag{State: steps.LagStreaming, Primary: "dc1-a", PrimaryLSN: "0/B0405C8", Bytes: i64(0), ReceiveBytes: i64(0), Seconds: f64(0), SecondsFrom: steps.SecondsCaughtUp, Since: at(2 * time.Hour)}},
		{Name: "dc2-a", Cluster: "standby", Reachable: true, Role: "standby", Upstream: "dc1-a", RunLock: "sdr start/standby (pid 42 on dr-admin-2)",
			WalReceiver: &steps.WalReceiverStatus{Status: "waiting"},
			Lag:         &steps.Lag{State: steps.LagNotStreaming, Primary: "dc1-a", PrimaryLSN: "0/B0405C8", LastMessage: at(45 * time.Second), Since: at(45 * time.Second)}},
		{Name: "dc2-b", Cluster: "standby", Reachable: false, Error: "on dc2-b: connection refused",
			Lag: &steps.Lag{State: steps.LagUnknown, Primary: "dc1-a"}},
		{Name: "dc2-c", Cluster: "standby", Reachable: true, Role: "standby", Upstream: "dc2-a",
			WalReceiver: &steps.WalReceiverStatus{Status: "streaming"},
			Lag:         &steps.Lag{State: steps.LagStreaming, Primary: "dc1-a", Bytes: i64(3 << 20), Seconds: f64(12.5), SecondsFrom: steps.SecondsLastMessage, Since: at(10 * time.Minute)}},
	}
	d := deps{now: func() time.Time { return now }, probe: func(context.Context, *cluster.Config) []steps.NodeStatus { return nodes }}

	code, stdout, stderr := runWith(t, d, "--state", state, "--config", cfg, "status")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	rows := map[string]*regexp.Regexp{
		"a duration per step":             regexp.MustCompile(`\n\s+1_prepare\s+done\s+1\s+\S+ \S+\s+\S+ \S+\s+1m30s\s`),
		"7_build_standby took 1m30s":      regexp.MustCompile(`\n\s+7_build_standby\s+done\s+1\s+\S+ \S+\s+\S+ \S+\s+1m30s\s`),
		"a skipped step has no duration":  regexp.MustCompile(`\n\s+4_retain_wal\s+skipped\s+0\s+-\s+\S+ \S+\s+-\s`),
		"the primary the lag is against":  regexp.MustCompile(`nodes \(live; BEHIND PRIMARY is against dc1-a's WAL position 0/B0405C8 when asked\):`),
		"in-cluster upstream by name":     regexp.MustCompile(`\n\s+dc1-b\s+primary\s+standby\s+dc1-a\s+streaming\s+0 B, 0\.0 s\s+streaming since \S+ \S+ \(2h00m\)`),
		"not streaming: unknown, since":   regexp.MustCompile(`\n\s+dc2-a\s+standby\s+standby\s+dc1-a\s+waiting\s+unknown\s+NOT STREAMING; last message \S+ \S+ \(45s ago\)`),
		"unreachable: unknown":            regexp.MustCompile(`\n\s+dc2-b\s+standby\s+UNREACHABLE\s+-\s+-\s+unknown\s+-\s+on dc2-b: connection refused`),
		"behind, streaming since":         regexp.MustCompile(`\n\s+dc2-c\s+standby\s+standby\s+dc2-a\s+streaming\s+3\.0 MiB, 12\.5 s\s+streaming since \S+ \S+ \(10m00s\)`),
		"a primary has no lag":            regexp.MustCompile(`\n\s+dc1-a\s+primary\s+primary\s+-\s+-\s+-\s+-\s+dc1-b streaming`),
		"downstream lag in readable unit": regexp.MustCompile(`sdr_dc1_dc2_dc2_a streaming lag 2\.0 KiB/0\.0 s`),
		"who holds the DR side":           regexp.MustCompile(`\nDR side run lock \(on dc2-a\): held by sdr start/standby \(pid 42 on dr-admin-2\);`),
	}
	for what, re := range rows {
		if !re.MatchString(stdout) {
			t.Errorf("status text does not show %s (%s):\n%s", what, re, stdout)
		}
	}
	if strings.Contains(stdout, "dc2-a  standby  standby  dc1-a  waiting  0 B") {
		t.Errorf("a node that does not stream shows 0 B behind")
	}

	code, stdout, stderr = runWith(t, d, "--state", state, "--config", cfg, "status", "--json")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var doc struct {
		Nodes []struct {
			Name string `json:"name"`
			Lag  *struct {
				State   string   `json:"state"`
				Bytes   *int64   `json:"bytes"`
				Seconds *float64 `json:"seconds"`
			} `json:"lag"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatal(err)
	}
	for _, n := range doc.Nodes {
		if n.Name == "dc2-a" && (n.Lag == nil || n.Lag.State != "not_streaming" || n.Lag.Bytes != nil || n.Lag.Seconds != nil) {
			t.Errorf("dc2-a lag %+v, want not_streaming with null bytes and seconds", n.Lag)
		}
	}
	if !strings.Contains(stdout, `"bytes": null`) {
		t.Errorf("JSON shows no null lag:\n%s", stdout)
	}
}

func TestStepDuration(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { t := t0.Add(d); return &t }
	now := t0.Add(3 * time.Hour)
	tests := []struct {
		name string
		s    workflow.StepRecord
		want string
	}{
		{"pending", workflow.StepRecord{Status: workflow.StatusPending}, "-"},
		{"skipped", workflow.StepRecord{Status: workflow.StatusSkipped, Ended: at(0)}, "-"},
		{"done in 0.4 s", workflow.StepRecord{Status: workflow.StatusDone, Started: at(0), Ended: at(400 * time.Millisecond)}, "0.4s"},
		{"failed after 12 s", workflow.StepRecord{Status: workflow.StatusFailed, Started: at(0), Ended: at(12 * time.Second)}, "12s"},
		{"done in 3m05s", workflow.StepRecord{Status: workflow.StatusDone, Started: at(0), Ended: at(185 * time.Second)}, "3m05s"},
		{"done in 2h03m", workflow.StepRecord{Status: workflow.StatusDone, Started: at(0), Ended: at(123 * time.Minute)}, "2h03m"},
		{"running", workflow.StepRecord{Status: workflow.StatusStarted, Started: at(2 * time.Hour)}, "running 1h00m"},
		{"interrupted", workflow.StepRecord{Status: workflow.StatusStarted, Started: at(0), Interrupted: true}, "?"},
		{"killed, recorded by the next run", workflow.StepRecord{Status: workflow.StatusFailed, Started: at(0)}, "?"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := stepDuration(tc.s, now); got != tc.want {
				t.Errorf("stepDuration = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRefusedCheck(t *testing.T) {
	step := func(name string, st workflow.StepStatus, perm bool) workflow.StepRecord {
		s := workflow.StepRecord{Name: name, Status: st}
		if st == workflow.StatusFailed {
			s.Error = &workflow.ErrorRecord{Message: "x", Permanent: perm}
		}
		return s
	}
	pending := func(name string) workflow.StepRecord { return step(name, workflow.StatusPending, false) }
	for _, tc := range []struct {
		name  string
		steps []workflow.StepRecord
		want  string
	}{
		{"refused in the check", []workflow.StepRecord{step("1_prepare", workflow.StatusDone, false), step("2_check_cluster", workflow.StatusFailed, true), pending("3_fence")}, "2_check_cluster"},
		{"a check that failed for a reason a rerun may pass", []workflow.StepRecord{step("1_prepare", workflow.StatusDone, false), step("2_check_cluster", workflow.StatusFailed, false), pending("3_fence")}, ""},
		{"failed in a step that changes", []workflow.StepRecord{step("1_prepare", workflow.StatusDone, false), step("2_check_cluster", workflow.StatusDone, false), step("3_fence", workflow.StatusFailed, true)}, ""},
		{"in progress", []workflow.StepRecord{step("1_prepare", workflow.StatusDone, false), step("2_check_cluster", workflow.StatusStarted, false), pending("3_fence")}, ""},
	} {
		if got := refusedCheck(workflow.Record{Steps: tc.steps}); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
