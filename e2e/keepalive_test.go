package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pgsdr/sdr/e2e/bed"
)

// sshdProcesses returns the pids of the sshd processes below pid (the
// listener's per-connection processes), pid included.
func sshdProcesses(t *testing.T, pid int) []int {
	t.Helper()
	parent := map[int]int{}
	name := map[int]string{}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		s := string(raw)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < open {
			continue
		}
		p, _ := strconv.Atoi(strings.TrimSpace(s[:open]))
		fields := strings.Fields(s[closing+1:])
		if len(fields) < 2 {
			continue
		}
		pp, _ := strconv.Atoi(fields[1])
		parent[p], name[p] = pp, s[open+1:closing]
	}
	out := []int{pid}
	for changed := true; changed; {
		changed = false
		for p, pp := range parent {
			if name[p] != "sshd" || contains(out, p) || !contains(out, pp) {
				continue
			}
			out, changed = append(out, p), true
		}
	}
	return out
}

func contains(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// TestFrozenSSHLinkFailsTheRunEarly: dc2's sshd freezes (every process of
// it stopped) while the main standby's copy runs. The run fails after
// timeouts.keepalive × 4, saying the SSH connection stopped answering,
// instead of waiting for --timeout; once thawed, the rerun resumes.
func TestFrozenSSHLinkFailsTheRunEarly(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := startedBed(t, bed.Options{}, 1)
	cfg, err := b.WriteConfig(func(m *map[string]any) {
		(*m)["copy"] = map[string]any{"max_rate": "2M"}
		tm, _ := (*m)["timeouts"].(map[string]any)
		if tm == nil {
			tm = map[string]any{}
		}
		tm["keepalive"] = "1s"
		(*m)["timeouts"] = tm
	})
	if err != nil {
		t.Fatal(err)
	}
	sd := standbySide(b)
	cmd := exec.Command(sdrBin, "--config", cfg, "--state", sd.state, "--log-file", sd.log, "start", "--role", "standby", "--restart", "--timeout", "3m")
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	eventually(t, 60*time.Second, "the main standby's copy runs", func() (bool, string) {
		return strings.Contains(out.String(), "pg_basebackup started"), ""
	})
	raw, err := os.ReadFile(b.SSHPidFileDC2)
	if err != nil {
		t.Fatal(err)
	}
	lpid, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
	frozen := sshdProcesses(t, lpid)
	for _, p := range frozen {
		_ = syscall.Kill(p, syscall.SIGSTOP)
	}
	thaw := func() {
		for _, p := range frozen {
			_ = syscall.Kill(p, syscall.SIGCONT)
		}
	}
	defer thaw()
	start := time.Now()
	select {
	case <-done:
	case <-time.After(90 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("the run went on for 90 s with dc2's sshd frozen (%d processes):\n%s", len(frozen), out.String())
	}
	took := time.Since(start)
	if code := cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(out.String(), "stopped answering") {
		t.Fatalf("exit %d after %s, want 1 naming the connection that stopped answering:\n%s", code, took, out.String())
	}
	t.Logf("the run failed %s after dc2's sshd froze", took.Round(100*time.Millisecond))
	thaw()
	if r := startWith(t, sdrBin, nil, cfg, sd, "--timeout", "3m"); r.Code != 0 {
		t.Fatalf("rerun after the thaw: %s", r)
	}
	if got := sql(t, b, bed.DC2A, "SELECT pg_is_in_recovery()"); got != "t" {
		t.Fatalf("dc2-a: %s", got)
	}
}

// lockedBuffer is a bytes.Buffer a running command writes to while the
// test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
