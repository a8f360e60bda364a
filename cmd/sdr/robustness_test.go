//go:build failpoints

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pgsdr/sdr/workflow"
)

var selftestSteps = []string{"1_one", "2_two", "3_three", "4_four", "5_five"}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	binDir    string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// failpointBinary builds sdr with the failpoints tag once per test binary.
func failpointBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "sdr-fp-"); buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "sdr-failpoints")
		out, err := exec.Command("go", "build", "-tags", "failpoints", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = errors.New(string(out) + err.Error())
		}
	})
	if buildErr != nil {
		t.Fatalf("building the failpoints binary: %v", buildErr)
	}
	return binPath
}

type proc struct {
	code           int
	signal         syscall.Signal // set when killed by a signal
	stdout, stderr string
}

func runBin(t *testing.T, failpoint string, args ...string) proc {
	t.Helper()
	cmd := exec.Command(failpointBinary(t), args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SDR_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if failpoint != "" {
		cmd.Env = append(cmd.Env, workflow.FailpointEnv+"="+failpoint)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	p := proc{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		ws := ee.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			p.signal, p.code = ws.Signal(), -1
		} else {
			p.code = ws.ExitStatus()
		}
	default:
		t.Fatalf("running sdr: %v", err)
	}
	return p
}

func journalCounts(t *testing.T, path string) map[string]int {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, l := range strings.Fields(string(raw)) {
		out[l]++
	}
	return out
}

func statusDoc(t *testing.T, state string) StatusDoc {
	t.Helper()
	p := runBin(t, "", "--state", state, "status", "--json")
	if p.code != 0 {
		t.Fatalf("status --json: exit %d %s", p.code, p.stderr)
	}
	var doc StatusDoc
	if err := json.Unmarshal([]byte(p.stdout), &doc); err != nil {
		t.Fatalf("status --json: %v\n%s", err, p.stdout)
	}
	return doc
}

func checkComplete(t *testing.T, state string) {
	t.Helper()
	doc := statusDoc(t, state)
	if len(doc.Workflows) != 1 || doc.Workflows[0].Workflow != "selftest/primary" {
		t.Fatalf("workflows %+v", doc.Workflows)
	}
	w := doc.Workflows[0]
	if !w.Complete || len(w.Steps) != len(selftestSteps) {
		t.Errorf("workflow complete=%v with %d steps", w.Complete, len(w.Steps))
	}
	for _, s := range w.Steps {
		if s.Status != workflow.StatusDone || s.Error != nil {
			t.Errorf("step %s = %s (%+v), want done", s.Name, s.Status, s.Error)
		}
	}
	if len(doc.Sides) != 1 || doc.Sides[0].State != workflow.StateRecovery {
		t.Errorf("sides %+v, want recovery", doc.Sides)
	}
	if doc.Lock != nil {
		t.Errorf("lock still shown after the run: %+v", doc.Lock)
	}
}

func TestSelftestSurvivesKillAtEveryFailpoint(t *testing.T) {
	points := []workflow.FailpointName{workflow.FailBefore, workflow.FailAfterEffects, workflow.FailAfterCheckpoint}
	for _, step := range selftestSteps {
		for _, point := range points {
			t.Run(step+":"+string(point), func(t *testing.T) {
				t.Parallel()
				dir := t.TempDir()
				state, journal := filepath.Join(dir, "state.db"), filepath.Join(dir, "journal")
				args := []string{"--state", state, "selftest", "--journal", journal}

				p := runBin(t, step+":"+string(point)+":kill", args...)
				if p.signal != syscall.SIGKILL {
					t.Fatalf("killed run: exit %d signal %v, want SIGKILL\n%s", p.code, p.signal, p.stderr)
				}
				p = runBin(t, "", args...)
				if p.code != 0 {
					t.Fatalf("rerun: exit %d\n%s%s", p.code, p.stdout, p.stderr)
				}
				checkComplete(t, state)
				counts := journalCounts(t, journal)
				for _, s := range selftestSteps {
					want := 1
					if s == step && point == workflow.FailAfterEffects {
						want = 2 // the effect happened, its checkpoint did not
					}
					if counts[s] != want {
						t.Errorf("journal has %s %d times, want %d", s, counts[s], want)
					}
				}
				if len(counts) != len(selftestSteps) {
					t.Errorf("journal %v", counts)
				}
				// A third run changes nothing.
				p = runBin(t, "", args...)
				if p.code != 0 || !strings.Contains(p.stdout, "already complete") {
					t.Errorf("third run: exit %d %s", p.code, p.stdout)
				}
				if again := journalCounts(t, journal); len(again) != len(counts) || again[step] != counts[step] {
					t.Errorf("third run added side effects: %v", again)
				}
			})
		}
	}
}

func TestSelftestStepFailureExitsOneAndResumes(t *testing.T) {
	tests := []struct {
		name      string
		failpoint string
		step      string
	}{
		{"panic before", "3_three:before:panic", "3_three"},
		{"error after effects", "2_two:after-effects:error", "2_two"},
		{"error by default", "5_five:before", "5_five"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			state, journal := filepath.Join(dir, "state.db"), filepath.Join(dir, "journal")
			args := []string{"--state", state, "selftest", "--journal", journal}
			p := runBin(t, tc.failpoint, args...)
			if p.code != ExitStepFailed || !strings.Contains(p.stdout, "failed at "+tc.step) {
				t.Fatalf("failed run: exit %d, want %d\n%s%s", p.code, ExitStepFailed, p.stdout, p.stderr)
			}
			doc := statusDoc(t, state)
			sr := doc.Workflows[0].Step(tc.step)
			if sr == nil || sr.Status != workflow.StatusFailed || sr.Error == nil {
				t.Fatalf("recorded %+v, want failed", sr)
			}
			if strings.HasSuffix(tc.failpoint, "panic") && sr.Error.Type != "panic" {
				t.Errorf("error type %q, want panic", sr.Error.Type)
			}
			if p := runBin(t, "", args...); p.code != 0 {
				t.Fatalf("rerun: exit %d\n%s", p.code, p.stderr)
			}
			checkComplete(t, state)
			counts := journalCounts(t, journal)
			for _, s := range selftestSteps {
				want := 1
				if s == tc.step && strings.Contains(tc.failpoint, "after-effects") {
					want = 2
				}
				if counts[s] != want {
					t.Errorf("journal has %s %d times, want %d", s, counts[s], want)
				}
			}
		})
	}
}

func TestSelftestChangedInputsAndRestart(t *testing.T) {
	dir := t.TempDir()
	state, journal := filepath.Join(dir, "state.db"), filepath.Join(dir, "journal")
	base := []string{"--state", state, "selftest", "--journal", journal}
	if p := runBin(t, "", append(base, "--input", "a")...); p.code != 0 {
		t.Fatalf("first run: %d %s", p.code, p.stderr)
	}
	p := runBin(t, "", append(base, "--input", "b")...)
	if p.code != ExitUsage || !strings.Contains(p.stderr, "input") || !strings.Contains(p.stderr, "--restart") {
		t.Fatalf("changed input: exit %d, want %d naming the input\n%s", p.code, ExitUsage, p.stderr)
	}
	if p := runBin(t, "", append(base, "--input", "b", "--restart")...); p.code != 0 {
		t.Fatalf("restart: %d %s", p.code, p.stderr)
	}
	for s, n := range journalCounts(t, journal) {
		if n != 2 {
			t.Errorf("journal has %s %d times after a restart, want 2", s, n)
		}
	}
	checkComplete(t, state)
}

// TestSelftestSignalsStopTheRun: Ctrl-C, SIGTERM and a closed terminal
// (SIGHUP) each stop the step at its next safe point; the step is recorded
// failed (interrupted) with its failure state, and the exit code is 1.
func TestSelftestSignalsStopTheRun(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			state, journal := filepath.Join(dir, "state.db"), filepath.Join(dir, "journal")
			// Every step sleeps: the signal arrives while 1_one runs.
			cmd := exec.Command(failpointBinary(t), "--state", state, "selftest", "--journal", journal, "--step-sleep", "60s")
			cmd.Env = append(cleanEnv(), workflow.FailpointEnv+"=")
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			deadline := time.Now().Add(30 * time.Second)
			for journalCounts(t, journal)["1_one"] == 0 {
				if time.Now().After(deadline) {
					t.Fatalf("1_one never ran:\n%s", out.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
			sent := time.Now()
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			err := cmd.Wait()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != ExitStepFailed {
				t.Fatalf("after %s: %v, want exit %d\n%s", sig, err, ExitStepFailed, out.String())
			}
			if took := time.Since(sent); took > 10*time.Second {
				t.Errorf("took %s to stop after %s", took, sig)
			}
			sr := statusDoc(t, state).Workflows[0].Step("1_one")
			if sr == nil || sr.Status != workflow.StatusFailed || sr.Error == nil || sr.Error.Type != "interrupted" {
				t.Errorf("1_one after %s: %+v, want failed, interrupted", sig, sr)
			}
		})
	}
}

// TestSelftestKilledRunIsRecognised: after SIGKILL inside 3_three, status
// says the run was interrupted (text and JSON); the next run records the
// interruption with 3_three's failure state, in the history, and resumes.
func TestSelftestKilledRunIsRecognised(t *testing.T) {
	dir := t.TempDir()
	state, journal := filepath.Join(dir, "state.db"), filepath.Join(dir, "journal")
	args := []string{"--state", state, "selftest", "--journal", journal}
	if p := runBin(t, "3_three:after-effects:kill", args...); p.signal != syscall.SIGKILL {
		t.Fatalf("exit %d signal %v, want SIGKILL", p.code, p.signal)
	}
	doc := statusDoc(t, state)
	sr := doc.Workflows[0].Step("3_three")
	if sr == nil || sr.Status != workflow.StatusStarted || !sr.Interrupted || doc.Lock != nil {
		t.Fatalf("3_three after kill -9: %+v, lock %+v; want started and interrupted", sr, doc.Lock)
	}
	if doc.Sides[0].State != workflow.StateRestore {
		t.Errorf("state %s, want restore", doc.Sides[0].State)
	}
	p := runBin(t, "", "--state", state, "status")
	if p.code != 0 || !strings.Contains(p.stdout, "INTERRUPTED") || !strings.Contains(p.stdout, "is gone") {
		t.Errorf("status text after kill -9 (exit %d) does not say interrupted:\n%s", p.code, p.stdout)
	}

	p = runBin(t, "", args...)
	if p.code != 0 || !strings.Contains(p.stderr, "recorded the step as interrupted") {
		t.Fatalf("rerun: exit %d, want 0 and a warning about the interruption\n%s%s", p.code, p.stdout, p.stderr)
	}
	doc = statusDoc(t, state)
	var transitions []string
	for _, h := range doc.History {
		transitions = append(transitions, fmt.Sprintf("%s>%s@%s", h.From, h.To, h.Step))
	}
	want := "restore>restore_fail@3_three"
	if !strings.Contains(strings.Join(transitions, " "), want) {
		t.Errorf("history %v does not record the interruption %s", transitions, want)
	}
	if sr := doc.Workflows[0].Step("3_three"); sr.Status != workflow.StatusDone || sr.Attempts != 2 || sr.Interrupted {
		t.Errorf("3_three after the rerun: %+v, want done in 2 attempts", sr)
	}
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SDR_") {
			env = append(env, kv)
		}
	}
	return env
}
