package cluster

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeServerCmd is a stand-in for pg_ctl start -w: it starts a sleeping
// "postmaster" in dir, writes its postmaster.pid with status, then takes
// tail before it ends (writing dir/ended), as pg_ctl's 100 ms wait would.
func fakeServerCmd(t *testing.T, dir, status, tail string) string {
	t.Helper()
	t.Cleanup(func() {
		if b, err := os.ReadFile(filepath.Join(dir, "server")); err == nil {
			if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); pid > 0 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	d := ShellQuote(dir)
	return "(cd " + d + " && exec sleep 60) </dev/null >/dev/null 2>&1 & p=$!; echo $p >" + d + "/server; " +
		`printf '%s\n%s\n1700000000\n5432\n/tmp\n*\n  5432001         0\n%s\n' "$p" ` + d + " " + ShellQuote(status) + " >" + d + "/postmaster.pid; " +
		"echo starting; sleep " + tail + "; touch " + d + "/ended"
}

func TestRunServerCommandConformance(t *testing.T) {
	runConformance(t, []conformanceCase{
		{"returns once the server is ready, before the command ends", func(t *testing.T, a Access, dir string) {
			for _, status := range []string{"ready   ", "standby "} {
				os.Remove(filepath.Join(dir, "ended"))
				if err := RunServerCommand(context.Background(), a, fakeServerCmd(t, dir, status, "3"), dir, Started); err != nil {
					t.Fatal(err)
				}
				if exists(filepath.Join(dir, "ended")) {
					t.Fatalf("status %q: waited for the command to end", status)
				}
				b, _ := os.ReadFile(filepath.Join(dir, "server"))
				pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}},
		{"a server still starting is waited for until the command ends", func(t *testing.T, a Access, dir string) {
			if err := RunServerCommand(context.Background(), a, fakeServerCmd(t, dir, "starting", "0.3"), dir, Started); err != nil {
				t.Fatal(err)
			}
			if !exists(filepath.Join(dir, "ended")) {
				t.Fatal("returned before the command ended, with the server still starting")
			}
		}},
		{"a stale postmaster.pid does not count", func(t *testing.T, a Access, dir string) {
			content := strconv.Itoa(deadPid(t)) + "\n" + dir + "\n1700000000\n5432\n/tmp\n*\n  5432001         0\nready   \n"
			os.WriteFile(filepath.Join(dir, "postmaster.pid"), []byte(content), 0o600)
			d := ShellQuote(dir)
			if err := RunServerCommand(context.Background(), a, "sleep 0.3; touch "+d+"/ended", dir, Started); err != nil {
				t.Fatal(err)
			}
			if !exists(filepath.Join(dir, "ended")) {
				t.Fatal("returned on a stale postmaster.pid")
			}
		}},
		{"a failed command is the error, with its output", func(t *testing.T, a Access, dir string) {
			err := RunServerCommand(context.Background(), a, "echo 'pg_ctl: could not start server' >&2; echo 'Examine the log output.'; exit 1", dir, Started)
			var ce *CommandError
			if !errors.As(err, &ce) || ce.ExitCode != 1 || !strings.Contains(err.Error(), "could not start server") || !strings.Contains(err.Error(), "Examine the log output") {
				t.Fatalf("got %v", err)
			}
		}},
		{"returns once postmaster.pid is gone, before the command ends", func(t *testing.T, a Access, dir string) {
			pid := fakePostmaster(t, dir, true)
			d := ShellQuote(dir)
			cmd := "sleep 0.1; kill " + strconv.Itoa(pid) + "; rm -f " + d + "/postmaster.pid; sleep 3; touch " + d + "/ended"
			start := time.Now()
			if err := RunServerCommand(context.Background(), a, cmd, dir, Stopped); err != nil {
				t.Fatal(err)
			}
			if exists(filepath.Join(dir, "postmaster.pid")) || exists(filepath.Join(dir, "ended")) {
				t.Fatalf("after %v: returned with postmaster.pid there, or waited for the command", time.Since(start))
			}
		}},
	})
}
