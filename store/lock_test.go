package store

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func me(t *testing.T) Holder {
	t.Helper()
	host, _ := os.Hostname()
	return Holder{PID: os.Getpid(), Host: host, Started: time.Now().UTC(), RunID: "run-" + t.Name(), Command: "test"}
}

func TestAcquireTwiceInOneProcessIsRefused(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state.db")
	first, err := Acquire(state, me(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Release()
	if fi, err := os.Stat(LockPath(state)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("lock file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	for _, wait := range []time.Duration{0, 300 * time.Millisecond} {
		t.Run("wait "+wait.String(), func(t *testing.T) {
			start := time.Now()
			l, err := Acquire(state, me(t), wait)
			took := time.Since(start)
			var le *LockedError
			if !errors.As(err, &le) {
				l.Release()
				t.Fatalf("second Acquire = %v, want *LockedError", err)
			}
			if !errors.Is(err, ErrLocked) || le.Holder == nil || le.Holder.PID != os.Getpid() || le.Holder.Host != me(t).Host {
				t.Errorf("LockedError %+v holder %+v, want this process", le, le.Holder)
			}
			if took < wait || took > wait+3*time.Second {
				t.Errorf("refused after %s, want about %s", took, wait)
			}
		})
	}
	if err := first.Release(); err != nil {
		t.Fatal(err)
	}
	if h, err := ReadHolder(state); err != nil || h != nil {
		t.Errorf("holder after Release: %+v, %v", h, err)
	}
	again, err := Acquire(state, me(t), 0)
	if err != nil || again.TookOver != nil {
		t.Fatalf("Acquire after Release: %+v, %v; want a clean lock", again, err)
	}
	again.Release()
}

// deadPID returns the pid of a process that has exited and been reaped.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("cannot run true: %v", err)
	}
	return cmd.Process.Pid
}

func TestAcquireTakesOverStaleLock(t *testing.T) {
	host, _ := os.Hostname()
	tests := []struct {
		name     string
		content  func(t *testing.T) []byte
		tookOver bool
	}{
		{"dead holder", func(t *testing.T) []byte {
			raw, _ := json.Marshal(Holder{PID: deadPID(t), Host: host, Started: time.Now().Add(-time.Hour).UTC(), RunID: "old"})
			return raw
		}, true},
		{"empty lock file", func(*testing.T) []byte { return nil }, false},
		{"garbage in lock file", func(*testing.T) []byte { return []byte("{half") }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			state := filepath.Join(t.TempDir(), "state.db")
			content := tc.content(t)
			if err := os.WriteFile(LockPath(state), content, 0o600); err != nil {
				t.Fatal(err)
			}
			l, err := Acquire(state, me(t), time.Second)
			if err != nil {
				t.Fatalf("Acquire over a stale lock: %v", err)
			}
			defer l.Release()
			if (l.TookOver != nil) != tc.tookOver {
				t.Fatalf("TookOver = %+v, want %v", l.TookOver, tc.tookOver)
			}
			if tc.tookOver {
				var old Holder
				_ = json.Unmarshal(content, &old)
				if l.TookOver.PID != old.PID || l.TookOver.RunID != "old" || l.TookOver.Alive() {
					t.Errorf("TookOver %+v, want dead pid %d", l.TookOver, old.PID)
				}
			}
			if h, err := ReadHolder(state); err != nil || h == nil || h.PID != os.Getpid() {
				t.Errorf("holder now %+v, %v; want this process", h, err)
			}
		})
	}
}

func TestSnapshotShowsLiveHolderOnly(t *testing.T) {
	db := openTemp(t, "")
	l, err := Acquire(db.Path(), me(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := db.Snapshot(0)
	if err != nil || snap.Lock == nil || snap.Lock.PID != os.Getpid() {
		t.Errorf("snapshot while held: lock %+v, %v", snap.Lock, err)
	}
	l.Release()
	raw, _ := json.Marshal(Holder{PID: deadPID(t), Host: me(t).Host})
	if err := os.WriteFile(LockPath(db.Path()), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if snap, err := db.Snapshot(0); err != nil || snap.Lock != nil || snap.Gone == nil || snap.Gone.PID == os.Getpid() {
		t.Errorf("snapshot with a dead holder: lock %+v gone %+v, %v; want no lock and the dead holder as gone", snap.Lock, snap.Gone, err)
	}
}

const helperEnv = "SDR_TEST_LOCK_HOLDER"

// TestHelperLockHolder is not a test: TestLockAcrossProcesses runs the test
// binary again with it, as a second process that holds the lock.
func TestHelperLockHolder(t *testing.T) {
	state := os.Getenv(helperEnv)
	if state == "" {
		t.Skip("helper process for TestLockAcrossProcesses")
	}
	host, _ := os.Hostname()
	if _, err := Acquire(state, Holder{PID: os.Getpid(), Host: host, Started: time.Now().UTC(), RunID: "child"}, 0); err != nil {
		os.Stdout.WriteString("ERROR " + err.Error() + "\n")
		os.Exit(3)
	}
	os.Stdout.WriteString("LOCKED " + strconv.Itoa(os.Getpid()) + "\n")
	time.Sleep(time.Minute) // until the parent kills us
	os.Exit(4)
}

func TestLockAcrossProcesses(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperLockHolder$")
	cmd.Env = append(os.Environ(), helperEnv+"="+state)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	child := cmd.Process.Pid
	killed := false
	defer func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "LOCKED ") || strings.HasPrefix(line, "ERROR ") {
				ready <- line
				return
			}
		}
		ready <- "EOF"
	}()
	select {
	case line := <-ready:
		if line != "LOCKED "+strconv.Itoa(child) {
			t.Fatalf("child: %s", line)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("child did not take the lock")
	}

	if p, err := ProbeLock(state); err != nil || !p.Held || p.Holder == nil || p.Holder.PID != child {
		t.Errorf("ProbeLock while the child holds the lock = %+v, %v; want held by %d", p, err, child)
	}
	start := time.Now()
	l, err := Acquire(state, me(t), 500*time.Millisecond)
	var le *LockedError
	if !errors.As(err, &le) {
		l.Release()
		t.Fatalf("Acquire while the child holds the lock = %v, want *LockedError", err)
	}
	if le.Holder == nil || le.Holder.PID != child || le.Holder.RunID != "child" {
		t.Errorf("LockedError names %+v, want the child pid %d", le.Holder, child)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Acquire took %s to refuse", took)
	}

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killed = true
	if p, err := ProbeLock(state); err != nil || p.Held || p.Holder == nil || p.Holder.PID != child {
		t.Errorf("ProbeLock after the holder was killed = %+v, %v; want not held, last holder %d", p, err, child)
	}
	l, err = Acquire(state, me(t), 2*time.Second)
	if err != nil {
		t.Fatalf("Acquire after the holder was killed: %v", err)
	}
	defer l.Release()
	if l.TookOver == nil || l.TookOver.PID != child {
		t.Errorf("TookOver = %+v, want the killed child %d", l.TookOver, child)
	}
}

func TestProbeLock(t *testing.T) {
	host, _ := os.Hostname()
	dead := func(t *testing.T) []byte {
		raw, _ := json.Marshal(Holder{PID: deadPID(t), Host: host, RunID: "killed"})
		return raw
	}
	tests := []struct {
		name       string
		setup      func(t *testing.T, state string) func() // returns a cleanup
		wantHeld   bool
		wantHolder string // RunID of the recorded holder, "" for none
	}{
		{"no lock file", func(*testing.T, string) func() { return func() {} }, false, ""},
		{"released lock", func(t *testing.T, state string) func() {
			l, err := Acquire(state, me(t), 0)
			if err != nil {
				t.Fatal(err)
			}
			l.Release()
			return func() {}
		}, false, ""},
		{"held by a run of this process", func(t *testing.T, state string) func() {
			l, err := Acquire(state, Holder{PID: os.Getpid(), Host: host, RunID: "live"}, 0)
			if err != nil {
				t.Fatal(err)
			}
			return func() { l.Release() }
		}, true, "live"},
		{"left by a killed run", func(t *testing.T, state string) func() {
			if err := os.WriteFile(LockPath(state), dead(t), 0o600); err != nil {
				t.Fatal(err)
			}
			return func() {}
		}, false, "killed"},
		{"left by a run on another host", func(t *testing.T, state string) func() {
			raw, _ := json.Marshal(Holder{PID: 1, Host: host + "-elsewhere", RunID: "remote"})
			if err := os.WriteFile(LockPath(state), raw, 0o600); err != nil {
				t.Fatal(err)
			}
			return func() {}
		}, true, "remote"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			state := filepath.Join(t.TempDir(), "state.db")
			defer tc.setup(t, state)()
			_, statErr := os.Stat(LockPath(state))
			p, err := ProbeLock(state)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(LockPath(state)); os.IsNotExist(statErr) && !os.IsNotExist(err) {
				t.Errorf("ProbeLock created the lock file")
			}
			got := ""
			if p.Holder != nil {
				got = p.Holder.RunID
			}
			if p.Held != tc.wantHeld || got != tc.wantHolder {
				t.Errorf("ProbeLock = held %v holder %q, want %v %q", p.Held, got, tc.wantHeld, tc.wantHolder)
			}
			if _, err := os.Stat(state); !os.IsNotExist(err) {
				t.Errorf("ProbeLock created the state file")
			}
			// The probe never keeps the lock: a run can take it at once.
			if !p.Held {
				l, err := Acquire(state, me(t), 0)
				if err != nil {
					t.Fatalf("Acquire after the probe: %v", err)
				}
				l.Release()
			}
		})
	}
}
