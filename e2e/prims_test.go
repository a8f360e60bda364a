package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/e2e/bed"
)

// TestNodePrimitivesOverOpenSSH runs cluster's node primitives through the
// bed's real OpenSSH server, as the postgres user, against real PostgreSQL
// data directories: what the in-process test server of package cluster
// only imitates (stdin closed when the connection drops, processes left
// running, the login shell) is checked here against the real thing.
func TestNodePrimitivesOverOpenSSH(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := newBed(t)
	cfg, err := cluster.Load(b.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dial := func(t *testing.T) *cluster.SSH {
		t.Helper()
		n, _ := cfg.Node(bed.DC2A)
		a, err := cluster.DialSSH(ctx, cfg, n)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		return a
	}
	a := dial(t)
	dir := filepath.Join(b.Node(bed.DC2A).NodeDir, "prims")
	if _, err := a.Run(ctx, "mkdir -p "+cluster.ShellQuote(dir), cluster.RunOpts{}); err != nil {
		t.Fatal(err)
	}
	file := func(name string) string { return filepath.Join(dir, name) }
	t.Cleanup(func() {
		// Whatever a failed case left behind.
		for _, tag := range []string{"e2e-runlong", "e2e-orphan"} {
			cluster.KillTagged(context.Background(), a, tag, time.Second)
		}
		for _, f := range []string{"untagged", "server"} {
			if pid := readPidFile(file(f)); pid > 0 {
				a.Run(context.Background(), "kill -KILL "+strconv.Itoa(pid), cluster.RunOpts{})
			}
		}
	})

	t.Run("only the command's output", func(t *testing.T) {
		data := []byte("host all all 0.0.0.0/0 reject\n\x00binary\xff\n")
		p := file("pg_hba.conf")
		if err := a.WriteFile(ctx, p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := a.ReadFile(ctx, p)
		if err != nil || string(got) != string(data) {
			t.Fatalf("got %q, %v", got, err)
		}
		out, err := a.Run(ctx, "cat; exit 3", cluster.RunOpts{Stdin: strings.NewReader("in\n")})
		var ce *cluster.CommandError
		if !errors.As(err, &ce) || ce.ExitCode != 3 || string(out) != "in\n" {
			t.Fatalf("got %q, %v", out, err)
		}
	})

	t.Run("a dropped connection closes the command's stdin", func(t *testing.T) {
		c := dial(t)
		p, err := c.Start(ctx, "cat >/dev/null; echo eof >"+cluster.ShellQuote(file("eof")), cluster.RunOpts{})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		c.Close()
		p.Wait()
		waitFor(t, 10*time.Second, "the command to read EOF", func() bool {
			b, _ := os.ReadFile(file("eof"))
			return string(b) == "eof\n"
		})
	})

	groupCmd := "sleep 300 & echo $! >" + cluster.ShellQuote(file("child")) +
		"; (sleep 300 & echo $! >" + cluster.ShellQuote(file("grandchild")) + ")" +
		"; echo $$ >" + cluster.ShellQuote(file("leader")) + "; wait"
	groupPids := func(t *testing.T) []int {
		t.Helper()
		var pids []int
		for _, f := range []string{"leader", "child", "grandchild"} {
			waitFor(t, 10*time.Second, "pid file "+f, func() bool { return readPidFile(file(f)) > 0 })
			pids = append(pids, readPidFile(file(f)))
		}
		return pids
	}
	clearPids := func() {
		for _, f := range []string{"leader", "child", "grandchild"} {
			os.Remove(file(f))
		}
	}

	t.Run("RunLong: output, exit code, and the end of what it left", func(t *testing.T) {
		clearPids()
		start := time.Now()
		out, err := cluster.RunLong(ctx, a, "e2e-runlong", "sleep 300 & echo $! >"+cluster.ShellQuote(file("child"))+
			`; printf '%s' "$SDR_TASK"`, cluster.RunOpts{})
		if err != nil || string(out) != "SDR_TASK=e2e-runlong"[len("SDR_TASK="):] {
			t.Fatalf("got %q, %v", out, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("took %v", d)
		}
		waitFor(t, 5*time.Second, "the left-over child to die", func() bool { return allGone([]int{readPidFile(file("child"))}) })
		_, err = cluster.RunLong(ctx, a, "e2e-runlong", "echo 'pg_basebackup: error: could not connect' >&2; exit 1", cluster.RunOpts{})
		var ce *cluster.CommandError
		if !errors.As(err, &ce) || ce.ExitCode != 1 || !strings.Contains(err.Error(), "could not connect") {
			t.Fatalf("got %v", err)
		}
	})

	t.Run("RunLong: the group dies with the connection", func(t *testing.T) {
		clearPids()
		c := dial(t)
		done := make(chan error, 1)
		go func() {
			_, err := cluster.RunLong(ctx, c, "e2e-runlong", groupCmd, cluster.RunOpts{})
			done <- err
		}()
		pids := groupPids(t)
		c.Close()
		if err := <-done; err == nil {
			t.Fatal("RunLong succeeded without its connection")
		}
		waitFor(t, 10*time.Second, "the group to die", func() bool { return allGone(pids) })
	})

	t.Run("RunLong: cancel ends the group", func(t *testing.T) {
		clearPids()
		rctx, rcancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			_, err := cluster.RunLong(rctx, a, "e2e-runlong", groupCmd, cluster.RunOpts{})
			done <- err
		}()
		pids := groupPids(t)
		rcancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v", err)
		}
		waitFor(t, 2*time.Second, "the group to die", func() bool { return allGone(pids) })
	})

	t.Run("KillTagged", func(t *testing.T) {
		server := file("postgres")
		start := func(tag, argv, pidFile string) {
			t.Helper()
			env := ""
			if tag != "" {
				env = "SDR_TASK=" + tag + " "
			}
			cmd := env + "setsid " + argv + " </dev/null >/dev/null 2>&1 & echo $! >" + cluster.ShellQuote(file(pidFile))
			if _, err := a.Run(ctx, cmd, cluster.RunOpts{}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := a.Run(ctx, "cp /bin/sleep "+cluster.ShellQuote(server), cluster.RunOpts{}); err != nil {
			t.Fatal(err)
		}
		start("e2e-orphan", "sh -c 'sleep 300 & exec sleep 301'", "orphan")
		start("", "sleep 302", "untagged")
		start("e2e-orphan", cluster.ShellQuote(server)+" 303", "server")
		time.Sleep(300 * time.Millisecond)
		found, err := cluster.KillTagged(ctx, a, "e2e-orphan", time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var args []string
		for _, p := range found {
			args = append(args, p.Args)
		}
		if len(found) != 2 || !strings.Contains(strings.Join(args, ","), "sleep 301") || !strings.Contains(strings.Join(args, ","), "sleep 300") {
			t.Fatalf("found %+v", found)
		}
		if !allGone([]int{readPidFile(file("orphan"))}) {
			t.Error("the tagged orphan is alive")
		}
		for _, f := range []string{"untagged", "server"} {
			if allGone([]int{readPidFile(file(f))}) {
				t.Errorf("%s was killed", f)
			}
		}
	})

	t.Run("LockNode", func(t *testing.T) {
		lock := file("sdr.lock")
		holder := dial(t)
		l, err := cluster.LockNode(ctx, holder, lock, "e2e holder", 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cluster.LockNode(ctx, a, lock, "second", 0); !errors.Is(err, cluster.ErrNodeLocked) || !strings.Contains(err.Error(), "e2e holder") {
			t.Fatalf("second lock: %v", err)
		}
		holder.Close()
		select {
		case <-l.Lost():
		case <-time.After(10 * time.Second):
			t.Fatal("Lost() not closed")
		}
		l2, err := cluster.LockNode(ctx, a, lock, "second", 10*time.Second)
		if err != nil {
			t.Fatalf("after the holder's connection died: %v", err)
		}
		if err := l2.Release(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("ProbeDataDir of live PostgreSQL", func(t *testing.T) {
		for _, c := range []struct {
			node, state string
			standby     bool
		}{
			{bed.DC2A, cluster.StateInProduction, false},
			{bed.DC2B, cluster.StateInArchiveRecovery, true},
		} {
			n := b.Node(c.node)
			p, err := cluster.ProbeDataDir(ctx, a, b.BinDir, n.DataDir, []string{"postgresql.conf"}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if p.Control == nil || p.Control.State != c.state || !p.PostmasterAlive || p.StandbySignal != c.standby ||
				len(p.Files["postgresql.conf"]) == 0 || p.Machine.MachineID == "" {
				t.Errorf("%s: %+v (control %+v)", c.node, p, p.Control)
			}
			err = cluster.RemoveTree(ctx, a, n.DataDir, file("trash"))
			if !errors.Is(err, cluster.ErrInUse) {
				t.Errorf("%s: RemoveTree of a running server's directory: %v", c.node, err)
			}
		}
	})

	t.Run("renames and removal through trash", func(t *testing.T) {
		if _, err := a.Run(ctx, "mkdir -p "+cluster.ShellQuote(file("old/base")), cluster.RunOpts{}); err != nil {
			t.Fatal(err)
		}
		if err := cluster.RenameNoReplace(ctx, a, file("old"), file("prims-new")); err != nil {
			t.Fatal(err)
		}
		if err := cluster.RenameNoReplace(ctx, a, file("prims-new"), dir); !errors.Is(err, cluster.ErrExist) {
			t.Fatalf("onto an existing directory: %v", err)
		}
		if err := cluster.RemoveTree(ctx, a, file("prims-new"), file("trash")); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(file("prims-new")); !os.IsNotExist(err) {
			t.Fatalf("still there: %v", err)
		}
	})
}

func readPidFile(p string) int {
	b, _ := os.ReadFile(p)
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// allGone reports whether none of pids is alive (zombies count as gone).
func allGone(pids []int) bool {
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndex(s, ")")+1:])
		if len(f) > 0 && f[0] != "Z" && f[0] != "X" {
			return false
		}
	}
	return true
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
