package cluster

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// unixEcho serves an echo server on a Unix socket in dir.
func unixEcho(t *testing.T, dir string) string {
	t.Helper()
	sock := filepath.Join(dir, "target.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go echoServer(ln)
	return sock
}

// forwardDir makes the 0700 directory a forward's socket lives in.
func forwardDir(t *testing.T, dir string) string {
	t.Helper()
	d := filepath.Join(dir, "fwd")
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	return d
}

func ping(t *testing.T, sock, msg string) {
	t.Helper()
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != msg+"\n" {
		t.Fatalf("through the forward: got %q, %v", line, err)
	}
}

// TestForwardUnixConformance runs ForwardUnix against every Access backend
// (the socket and the target both on the backend's node).
func TestForwardUnixConformance(t *testing.T) {
	ctx := context.Background()
	runConformance(t, []conformanceCase{
		{"carries connections both ways", func(t *testing.T, a Access, dir string) {
			target := unixEcho(t, dir)
			sock := filepath.Join(forwardDir(t, dir), ".s.PGSQL.5432")
			f, err := ForwardUnix(ctx, a, sock, a, target)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close(ctx)
			ping(t, sock, "one")
			ping(t, sock, "two")
			if n := f.Accepted(); n != 2 {
				t.Errorf("Accepted() = %d, want 2", n)
			}
		}},
		{"passes a half-close on", func(t *testing.T, a Access, dir string) {
			target := unixEcho(t, dir)
			sock := filepath.Join(forwardDir(t, dir), "s")
			f, err := ForwardUnix(ctx, a, sock, a, target)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close(ctx)
			c, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			payload := strings.Repeat("x", 200000)
			go func() {
				io.WriteString(c, payload)
				c.(*net.UnixConn).CloseWrite()
			}()
			got, err := io.ReadAll(c) // the echo server closes after EOF
			if err != nil || string(got) != payload {
				t.Fatalf("read %d bytes back, want %d: %v", len(got), len(payload), err)
			}
		}},
		{"close stops it and removes the socket file", func(t *testing.T, a Access, dir string) {
			target := unixEcho(t, dir)
			sock := filepath.Join(forwardDir(t, dir), "s")
			f, err := ForwardUnix(ctx, a, sock, a, target)
			if err != nil {
				t.Fatal(err)
			}
			open, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer open.Close()
			if _, err := io.WriteString(open, "hi\n"); err != nil {
				t.Fatal(err)
			}
			if line, err := bufio.NewReader(open).ReadString('\n'); err != nil || line != "hi\n" {
				t.Fatalf("got %q, %v", line, err)
			}
			if err := f.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(sock); !os.IsNotExist(err) {
				t.Errorf("socket file still there after Close: %v", err)
			}
			_ = open.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := open.Read(make([]byte, 1)); err == nil {
				t.Errorf("a connection open at Close still reads")
			}
			if c, err := net.Dial("unix", sock); err == nil {
				c.Close()
				t.Errorf("the socket still accepts after Close")
			}
		}},
		{"a socket left by a killed run is replaced", func(t *testing.T, a Access, dir string) {
			target := unixEcho(t, dir)
			sock := filepath.Join(forwardDir(t, dir), "s")
			old, err := net.Listen("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			old.(*net.UnixListener).SetUnlinkOnClose(false)
			old.Close()
			f, err := ForwardUnix(ctx, a, sock, a, target)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close(ctx)
			ping(t, sock, "again")
		}},
		{"anything else at the path is refused and kept", func(t *testing.T, a Access, dir string) {
			target := unixEcho(t, dir)
			sock := filepath.Join(forwardDir(t, dir), "s")
			if err := os.WriteFile(sock, []byte("keep me"), 0o600); err != nil {
				t.Fatal(err)
			}
			if f, err := ForwardUnix(ctx, a, sock, a, target); err == nil {
				f.Close(ctx)
				t.Fatal("want an error for a regular file at the socket path")
			}
			if b, err := os.ReadFile(sock); err != nil || string(b) != "keep me" {
				t.Fatalf("the file at the socket path was changed: %q, %v", b, err)
			}
		}},
		{"a path too long for a socket is refused", func(t *testing.T, a Access, dir string) {
			long := filepath.Join(dir, strings.Repeat("d", MaxSocketPath))
			if f, err := ForwardUnix(ctx, a, long, a, unixEcho(t, dir)); err == nil {
				f.Close(ctx)
				t.Fatal("want an error")
			}
		}},
		{"a missing target closes the client's connection and is reported", func(t *testing.T, a Access, dir string) {
			sock := filepath.Join(forwardDir(t, dir), "s")
			f, err := ForwardUnix(ctx, a, sock, a, filepath.Join(dir, "nobody.sock"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close(ctx)
			c, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(make([]byte, 1)); err == nil {
				t.Fatal("the connection stayed open")
			}
			if f.DialErr() == nil {
				t.Error("DialErr() = nil after a failed dial")
			}
		}},
		{"the end of ctx stops it", func(t *testing.T, a Access, dir string) {
			target := unixEcho(t, dir)
			sock := filepath.Join(forwardDir(t, dir), "s")
			cctx, cancel := context.WithCancel(ctx)
			f, err := ForwardUnix(cctx, a, sock, a, target)
			if err != nil {
				t.Fatal(err)
			}
			ping(t, sock, "before")
			cancel()
			deadline := time.Now().Add(5 * time.Second)
			for {
				c, err := net.Dial("unix", sock)
				if err != nil {
					break
				}
				_ = c.SetDeadline(time.Now().Add(time.Second))
				_, werr := io.WriteString(c, "x\n")
				_, rerr := bufio.NewReader(c).ReadString('\n')
				c.Close()
				if werr != nil || rerr != nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("still forwarding after ctx ended")
				}
				time.Sleep(50 * time.Millisecond)
			}
			if err := f.Close(ctx); err != nil {
				t.Fatal(err)
			}
		}},
	})
}
