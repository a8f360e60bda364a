package cluster

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestLockNodeConformance(t *testing.T) {
	runConformance(t, []conformanceCase{
		{"second lock fails naming the holder; after Release it succeeds", func(t *testing.T, a Access, dir string) {
			file := filepath.Join(dir, "sdr.lock")
			l, err := LockNode(context.Background(), a, file, "pid 123 on host x, run R1, start --role standby", 0)
			if err != nil {
				t.Fatal(err)
			}
			_, err = LockNode(context.Background(), a, file, "pid 456 on host y, run R2", 0)
			if !errors.Is(err, ErrNodeLocked) || !strings.Contains(err.Error(), "pid 123 on host x, run R1, start --role standby") ||
				!strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "dc1-a") {
				t.Fatalf("got %v", err)
			}
			start := time.Now()
			_, err = LockNode(context.Background(), a, file, "R3", 300*time.Millisecond)
			if !errors.Is(err, ErrNodeLocked) || time.Since(start) < 250*time.Millisecond {
				t.Fatalf("waiting: %v after %v", err, time.Since(start))
			}
			if err := l.Release(); err != nil {
				t.Fatal(err)
			}
			if err := l.Release(); err != nil {
				t.Fatalf("second Release: %v", err)
			}
			if b, err := os.ReadFile(file + ".holder"); err == nil {
				t.Errorf("holder file left: %q", b)
			}
			l2, err := LockNode(context.Background(), a, file, "R2", 0)
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(file + ".holder"); string(b) != "R2\n" {
				t.Errorf("holder file holds %q", b)
			}
			l2.Release()
		}},
		{"a waiter gets the lock when it is released", func(t *testing.T, a Access, dir string) {
			file := filepath.Join(dir, "sdr.lock")
			l, err := LockNode(context.Background(), a, file, "first", 0)
			if err != nil {
				t.Fatal(err)
			}
			time.AfterFunc(300*time.Millisecond, func() { l.Release() })
			l2, err := LockNode(context.Background(), a, file, "second", 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			l2.Release()
		}},
		{"ctx ends a wait", func(t *testing.T, a Access, dir string) {
			file := filepath.Join(dir, "sdr.lock")
			l, err := LockNode(context.Background(), a, file, "first", 0)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Release()
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			if _, err := LockNode(ctx, a, file, "second", time.Minute); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("got %v", err)
			}
		}},
		{"the lock ends with its holder's connection or process", func(t *testing.T, a Access, dir string) {
			file := filepath.Join(dir, "sdr.lock")
			if s, ok := a.(*SSH); ok {
				// The holder is another connection, which is dropped.
				holderConn := dialTestSSH(t, serverOf(t, s))
				l, err := LockNode(context.Background(), holderConn, file, "doomed", 0)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := LockNode(context.Background(), a, file, "R2", 0); !errors.Is(err, ErrNodeLocked) {
					t.Fatalf("while held: %v", err)
				}
				holderConn.client.Conn.Close()
				select {
				case <-l.Lost():
				case <-time.After(5 * time.Second):
					t.Fatal("Lost() not closed")
				}
				if err := l.Release(); err == nil {
					t.Error("Release of a lost lock: want error")
				}
			} else {
				h := startHelper(t, "lock", file)
				if _, err := LockNode(context.Background(), a, file, "R2", 0); !errors.Is(err, ErrNodeLocked) || !strings.Contains(err.Error(), "helper pid") {
					t.Fatalf("while held: %v", err)
				}
				h.Process.Signal(syscall.SIGKILL)
			}
			l2, err := LockNode(context.Background(), a, file, "R2", 5*time.Second)
			if err != nil {
				t.Fatalf("after the holder died: %v", err)
			}
			l2.Release()
		}},
		{"LockHolder tells a held lock and its holder, and takes nothing", func(t *testing.T, a Access, dir string) {
			file := filepath.Join(dir, "sdr.lock")
			if h, held, err := LockHolder(context.Background(), a, file); err != nil || held || h != "" {
				t.Fatalf("no lock file: %q %v %v", h, held, err)
			}
			l, err := LockNode(context.Background(), a, file, "sdr start/standby (pid 123 on host x)", 0)
			if err != nil {
				t.Fatal(err)
			}
			h, held, err := LockHolder(context.Background(), a, file)
			if err != nil || !held || h != "sdr start/standby (pid 123 on host x)" {
				t.Fatalf("held: %q %v %v", h, held, err)
			}
			if err := l.Release(); err != nil {
				t.Fatal(err)
			}
			if h, held, err := LockHolder(context.Background(), a, file); err != nil || held {
				t.Fatalf("released: %q %v %v", h, held, err)
			}
			// Looking did not keep it: the lock can be taken at once.
			l, err = LockNode(context.Background(), a, file, "R2", 0)
			if err != nil {
				t.Fatalf("after LockHolder: %v", err)
			}
			l.Release()
			if _, _, err := LockHolder(context.Background(), ReadOnly(a), file); err != nil {
				t.Errorf("through a read-only access: %v", err)
			}
		}},
		{"LockNodeMakingDir creates the directory, mode 0700", func(t *testing.T, a Access, dir string) {
			work := filepath.Join(dir, "data.sdr", "sub")
			file := filepath.Join(work, "lock")
			l, err := LockNodeMakingDir(context.Background(), a, file, "R1", 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := LockNode(context.Background(), a, file, "R2", 0); !errors.Is(err, ErrNodeLocked) {
				t.Errorf("second lock: %v, want locked", err)
			}
			if fi, err := os.Stat(work); err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("work directory: %v, %v; want mode 0700", fi, err)
			}
			if err := l.Release(); err != nil {
				t.Fatal(err)
			}
			// An existing directory gets mode 0700 too.
			if err := os.Chmod(work, 0o755); err != nil {
				t.Fatal(err)
			}
			l, err = LockNodeMakingDir(context.Background(), a, file, "R3", 0)
			if err != nil {
				t.Fatal(err)
			}
			if fi, err := os.Stat(work); err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("existing work directory: %v, %v; want mode 0700", fi, err)
			}
			l.Release()
			// A directory that cannot be made: an error, not a lock.
			if err := os.WriteFile(filepath.Join(dir, "plain"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := LockNodeMakingDir(context.Background(), a, filepath.Join(dir, "plain", "x", "lock"), "R4", 0); err == nil || errors.Is(err, ErrNodeLocked) {
				t.Errorf("directory under a file: %v, want an error", err)
			}
		}},
		{"bad input", func(t *testing.T, a Access, dir string) {
			if _, err := LockNode(context.Background(), a, "sdr.lock", "x", 0); err == nil {
				t.Error("relative path: want error")
			}
			if _, err := LockNode(context.Background(), a, filepath.Join(dir, "no", "sdr.lock"), "x", 0); err == nil || errors.Is(err, ErrNodeLocked) {
				t.Errorf("missing directory: %v", err)
			}
		}},
	})
}
