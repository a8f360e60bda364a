package cluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes the test binary act as a stand-in for sdr (see
// TestHelperProcess) instead of running tests.
const helperEnv = "SDR_CLUSTER_TEST_HELPER"

// TestHelperProcess is not a test: started by startHelper with helperEnv
// set, it plays an sdr process on a local node that the test then kills.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("a helper process for other tests")
	}
	a := NewLocal(&Node{Name: "dc1-a", Host: "127.0.0.1", Local: true})
	ctx := context.Background()
	arg := os.Getenv(helperEnv + "_ARG")
	switch mode {
	case "runlong":
		fmt.Println("ready")
		_, err := RunLong(ctx, a, "helper-task", arg, RunOpts{})
		fmt.Fprintln(os.Stderr, "RunLong returned:", err)
	case "lock":
		l, err := LockNode(ctx, a, arg, "helper pid "+strconv.Itoa(os.Getpid()), 0)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("ready")
		<-l.Lost()
	}
	time.Sleep(time.Hour)
}

// startHelper starts the test binary as a helper in mode and waits until
// it says it is ready.
func startHelper(t *testing.T, mode, arg string) *exec.Cmd {
	t.Helper()
	c := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	c.Env = append(os.Environ(), helperEnv+"="+mode, helperEnv+"_ARG="+arg)
	c.Stderr = os.Stderr
	out, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("helper said %q, %v", line, err)
	}
	go io.Copy(io.Discard, out)
	return c
}

// pidsIn waits until every file holds a pid and returns them.
func pidsIn(t *testing.T, files ...string) []int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var pids []int
	for _, f := range files {
		for {
			b, _ := os.ReadFile(f)
			if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				pids = append(pids, n)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no pid in %s", f)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return pids
}

// procGone reports whether pid is gone (or a zombie).
func procGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	s = s[strings.LastIndex(s, ")")+1:]
	f := strings.Fields(s)
	return len(f) > 0 && (f[0] == "Z" || f[0] == "X")
}

// waitGone fails the test unless every pid is gone within d.
func waitGone(t *testing.T, d time.Duration, pids ...int) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		var alive []int
		for _, p := range pids {
			if !procGone(p) {
				alive = append(alive, p)
			}
		}
		if len(alive) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, p := range alive {
				syscall.Kill(p, syscall.SIGKILL)
			}
			t.Fatalf("still alive after %v: %v", d, alive)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// groupCmd starts a leader, a child and a grandchild that double-forked
// within the group, writes their pids into dir and sleeps.
func groupCmd(dir string) string {
	q := func(n string) string { return ShellQuote(filepath.Join(dir, n)) }
	// The leader's pid file comes last: once a test sees it, the others are there.
	return "echo \"$SDR_TASK\" >" + q("tag") + "; sleep 300 & echo $! >" + q("child") +
		"; (sleep 300 & echo $! >" + q("grandchild") + ")" +
		"; echo $$ >" + q("leader") + "; wait"
}

func TestRunLongConformance(t *testing.T) {
	runConformance(t, []conformanceCase{
		{"output, exit code, env, stderr and the tag", func(t *testing.T, a Access, dir string) {
			var errBuf syncBuffer
			out, err := RunLong(context.Background(), a, "run1.dc1-a", `printf '%s|%s' "$SDR_TASK" "$X"; echo progress >&2`,
				RunOpts{Env: map[string]string{"X": "y z"}, Stderr: &errBuf})
			if err != nil || string(out) != "SDR_TASK=run1.dc1-a|y z"[len("SDR_TASK="):] || errBuf.String() != "progress\n" {
				t.Fatalf("got %q, %q, %v", out, errBuf.String(), err)
			}
			_, err = RunLong(context.Background(), a, "run1", "echo why >&2; exit 5", RunOpts{})
			var ce *CommandError
			if !errors.As(err, &ce) || ce.ExitCode != 5 || ce.Cmd != "echo why >&2; exit 5" || !strings.Contains(ce.Stderr, "why") {
				t.Fatalf("got %v", err)
			}
		}},
		{"runs in its own session, leftovers of its group end with it", func(t *testing.T, a Access, dir string) {
			out, err := RunLong(context.Background(), a, "run1", "sleep 300 & echo $! >"+ShellQuote(filepath.Join(dir, "child"))+
				`; [ "$(cut -d' ' -f6 /proc/$$/stat)" = $$ ] && echo session leader`, RunOpts{})
			if err != nil || string(out) != "session leader\n" {
				t.Fatalf("got %q, %v", out, err)
			}
			child := pidsIn(t, filepath.Join(dir, "child"))
			waitGone(t, 5*time.Second, child...)
		}},
		{"cancel ends the whole group before returning", func(t *testing.T, a Access, dir string) {
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				_, err := RunLong(ctx, a, "run1", groupCmd(dir), RunOpts{})
				done <- err
			}()
			pids := pidsIn(t, filepath.Join(dir, "leader"), filepath.Join(dir, "child"), filepath.Join(dir, "grandchild"))
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("got %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("RunLong did not return")
			}
			waitGone(t, time.Second, pids...)
		}},
		{"stdout streamed", func(t *testing.T, a Access, dir string) {
			var got syncBuffer
			out, err := RunLong(context.Background(), a, "run1", "seq 1 100000", RunOpts{Stdout: &got})
			want, _ := exec.Command("seq", "1", "100000").Output()
			if err != nil || out != nil || got.String() != string(want) {
				t.Fatalf("got %d bytes streamed (want %d), %d returned, %v", len(got.String()), len(want), len(out), err)
			}
		}},
		{"a fed command reads the stream, carries the tag, ends at EOF", func(t *testing.T, a Access, dir string) {
			out := filepath.Join(dir, "out")
			p, err := StartFed(context.Background(), a, "feed1", `printf '%s\n' "$SDR_TASK" >`+ShellQuote(out+".tag")+"; exec cat >"+ShellQuote(out), RunOpts{})
			if err != nil {
				t.Fatal(err)
			}
			data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
			if _, err := p.Stdin().Write(data); err != nil {
				t.Fatal(err)
			}
			if err := p.Stdin().Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := p.Wait(); err != nil {
				t.Fatal(err)
			}
			got, _ := os.ReadFile(out)
			tag, _ := os.ReadFile(out + ".tag")
			if !bytes.Equal(got, data) || string(tag) != "feed1\n" {
				t.Fatalf("got %d bytes (want %d), tag %q", len(got), len(data), tag)
			}
			if _, err := StartFed(context.Background(), a, "bad tag", "cat", RunOpts{}); err == nil {
				t.Fatal("a bad tag was accepted")
			}
		}},
		{"a fed command ends when ctx ends", func(t *testing.T, a Access, dir string) {
			ctx, cancel := context.WithCancel(context.Background())
			p, err := StartFed(ctx, a, "feed2", "echo $$ >"+ShellQuote(filepath.Join(dir, "pid"))+"; exec cat >/dev/null", RunOpts{})
			if err != nil {
				t.Fatal(err)
			}
			pids := pidsIn(t, filepath.Join(dir, "pid"))
			cancel()
			if _, err := p.Wait(); !errors.Is(err, context.Canceled) {
				t.Fatalf("got %v", err)
			}
			waitGone(t, 8*time.Second, pids...)
		}},
		{"the group dies when sdr's side goes away", func(t *testing.T, a Access, dir string) {
			var pids []int
			if s, ok := a.(*SSH); ok {
				// Drop the connection under a running command.
				done := make(chan error, 1)
				go func() {
					_, err := RunLong(context.Background(), s, "run1", groupCmd(dir), RunOpts{})
					done <- err
				}()
				pids = pidsIn(t, filepath.Join(dir, "leader"), filepath.Join(dir, "child"), filepath.Join(dir, "grandchild"))
				s.client.Conn.Close()
				select {
				case err := <-done:
					if err == nil {
						t.Fatal("RunLong succeeded after losing its connection")
					}
				case <-time.After(10 * time.Second):
					t.Fatal("RunLong did not return")
				}
			} else {
				// A process running RunLong on this machine is killed.
				h := startHelper(t, "runlong", groupCmd(dir))
				pids = pidsIn(t, filepath.Join(dir, "leader"), filepath.Join(dir, "child"), filepath.Join(dir, "grandchild"))
				h.Process.Signal(syscall.SIGKILL)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "tag")); string(b) != "run1\n" && string(b) != "helper-task\n" {
				t.Errorf("SDR_TASK in the command: %q", b)
			}
			waitGone(t, 8*time.Second, pids...)
		}},
		{"bad tag refused", func(t *testing.T, a Access, dir string) {
			for _, tag := range []string{"", "a b", "x;y", "x'y", strings.Repeat("x", 201)} {
				if _, err := RunLong(context.Background(), a, tag, "true", RunOpts{}); err == nil {
					t.Errorf("tag %q: want error", tag)
				}
				if _, err := KillTagged(context.Background(), a, tag, 0); err == nil {
					t.Errorf("KillTagged tag %q: want error", tag)
				}
			}
		}},
	})
}

// startTagged starts argv in its own session with SDR_TASK=tag (unless
// tag is empty), as a killed run leaves a command behind.
func startTagged(t *testing.T, tag string, argv ...string) *exec.Cmd {
	t.Helper()
	c := exec.Command(argv[0], argv[1:]...)
	c.Env = os.Environ()
	if tag != "" {
		c.Env = append(c.Env, TaskEnv+"="+tag)
	}
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { c.Wait(); close(done) }() // reap it when it dies
	t.Cleanup(func() { c.Process.Kill(); <-done })
	return c
}

func TestKillTaggedConformance(t *testing.T) {
	runConformance(t, []conformanceCase{
		{"ends the tagged, leaves the rest", func(t *testing.T, a Access, dir string) {
			tag := "run-" + filepath.Base(dir)
			orphan := startTagged(t, tag, "sh", "-c", "sleep 300 & echo $! >"+ShellQuote(filepath.Join(dir, "gc"))+"; exec sleep 301")
			gc := pidsIn(t, filepath.Join(dir, "gc"))[0]
			stubborn := startTagged(t, tag, "sh", "-c", "trap '' TERM; while :; do sleep 0.1; done")
			untagged := startTagged(t, "", "sleep", "302")
			other := startTagged(t, tag+"-other", "sleep", "303")
			postgres := filepath.Join(dir, "postgres")
			if err := exec.Command("cp", "/bin/sleep", postgres).Run(); err != nil {
				t.Fatal(err)
			}
			server := startTagged(t, tag, postgres, "304")
			time.Sleep(100 * time.Millisecond) // let the shells start their children

			found, err := KillTagged(context.Background(), a, tag, 300*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			got := map[int]TaggedProc{}
			for _, p := range found {
				got[p.PID] = p
			}
			if p := got[orphan.Process.Pid]; p.Comm != "sleep" || p.Args != "sleep 301" {
				t.Errorf("orphan: %+v", p)
			}
			if p := got[gc]; p.Comm != "sleep" || p.Args != "sleep 300" {
				t.Errorf("its child: %+v", p)
			}
			if _, ok := got[stubborn.Process.Pid]; !ok {
				t.Errorf("TERM-ignoring process not found: %+v", found)
			}
			for _, c := range []*exec.Cmd{untagged, other, server} {
				if _, ok := got[c.Process.Pid]; ok {
					t.Errorf("found %v", c.Args)
				}
			}
			waitGone(t, 2*time.Second, orphan.Process.Pid, gc, stubborn.Process.Pid)
			for _, c := range []*exec.Cmd{untagged, other, server} {
				if procGone(c.Process.Pid) {
					t.Errorf("%v was killed", c.Args)
				}
			}
			again, err := KillTagged(context.Background(), a, tag, time.Second)
			if err != nil || len(again) != 0 {
				t.Fatalf("second call: %+v, %v", again, err)
			}
		}},
	})
}

func TestKillTaggedThenConformance(t *testing.T) {
	fill := func(t *testing.T, d string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(d, "base", "1"), 0o700); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(d, "base", "1", "f"), []byte("data"), 0o600)
		os.WriteFile(filepath.Join(d, ".hidden"), nil, 0o600)
	}
	empty := func(t *testing.T, d string, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			ents, err := os.ReadDir(d)
			if err == nil && len(ents) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not emptied: %v %v", d, ents, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	runConformance(t, []conformanceCase{
		{"ends the tagged, then empties the trashes", func(t *testing.T, a Access, dir string) {
			tag := "run-" + filepath.Base(dir)
			left := startTagged(t, tag, "sleep", "305")
			trash, tsTrash := filepath.Join(dir, "trash"), filepath.Join(dir, "ts.sdr", "trash")
			fill(t, filepath.Join(trash, "new.cut-short"))
			fill(t, filepath.Join(tsTrash, "new.cut-short"))
			found, err := KillTaggedThen(context.Background(), a, tag, 300*time.Millisecond,
				Then{Empty: []string{trash, tsTrash, filepath.Join(dir, "missing")}})
			if err != nil {
				t.Fatal(err)
			}
			if len(found) != 1 || found[0].PID != left.Process.Pid {
				t.Errorf("found %+v, want pid %d", found, left.Process.Pid)
			}
			waitGone(t, 2*time.Second, left.Process.Pid)
			empty(t, trash, 0)
			empty(t, tsTrash, 0)
		}},
		{"a trash that is a data directory: an error naming it, nothing deleted", func(t *testing.T, a Access, dir string) {
			tag := "run-" + filepath.Base(dir)
			left := startTagged(t, tag, "sleep", "306")
			pgdata := filepath.Join(dir, "pgdata")
			fill(t, pgdata)
			os.WriteFile(filepath.Join(pgdata, "PG_VERSION"), []byte("15\n"), 0o600)
			found, err := KillTaggedThen(context.Background(), a, tag, 300*time.Millisecond, Then{Empty: []string{pgdata}})
			if err == nil || !strings.Contains(err.Error(), "emptying trash "+pgdata) {
				t.Fatalf("got %v", err)
			}
			if len(found) != 1 || found[0].PID != left.Process.Pid {
				t.Errorf("found %+v, want pid %d", found, left.Process.Pid)
			}
			if !exists(filepath.Join(pgdata, "base", "1", "f")) || !exists(filepath.Join(pgdata, "PG_VERSION")) {
				t.Fatal("deleted")
			}
		}},
		{"ends the tagged, then retires the trees", func(t *testing.T, a Access, dir string) {
			tag := "run-" + filepath.Base(dir)
			left := startTagged(t, tag, "sleep", "307")
			old, trash := filepath.Join(dir, "old"), filepath.Join(dir, "trash")
			fill(t, old)
			found, err := KillTaggedThen(context.Background(), a, tag, 300*time.Millisecond,
				Then{Retire: []Retire{{old, trash}, {filepath.Join(dir, "missing"), trash}}})
			if err != nil || len(found) != 1 {
				t.Fatalf("found %+v, %v", found, err)
			}
			waitGone(t, 2*time.Second, left.Process.Pid)
			if exists(old) {
				t.Fatal("old still there")
			}
			empty(t, trash, 20*time.Second)
		}},
		{"a tree a postmaster runs in: refused naming it, nothing moved", func(t *testing.T, a Access, dir string) {
			d := filepath.Join(dir, "data")
			fill(t, d)
			pid := fakePostmaster(t, d, true)
			_, err := KillTaggedThen(context.Background(), a, "run-"+filepath.Base(dir), 0, Then{Retire: []Retire{{d, filepath.Join(dir, "trash")}}})
			if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), d) || !strings.Contains(err.Error(), strconv.Itoa(pid)) {
				t.Fatalf("got %v", err)
			}
			if !exists(filepath.Join(d, "base", "1", "f")) {
				t.Fatal("moved")
			}
		}},
		{"bad paths are refused before anything runs", func(t *testing.T, a Access, dir string) {
			tag := "run-" + filepath.Base(dir)
			left := startTagged(t, tag, "sleep", "308")
			for name, then := range map[string]Then{
				"relative trash":   {Empty: []string{"trash"}},
				"root as trash":    {Empty: []string{"/"}},
				"trash is the dir": {Retire: []Retire{{filepath.Join(dir, "x"), filepath.Join(dir, "x")}}},
			} {
				if _, err := KillTaggedThen(context.Background(), a, tag, 0, then); err == nil {
					t.Errorf("%s: want error", name)
				}
			}
			if procGone(left.Process.Pid) {
				t.Fatal("a refused call ended a process")
			}
		}},
	})
}
