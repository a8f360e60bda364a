package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

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
