package cluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testConfig is a valid config whose nodes point at host:port over SSH.
func testConfig(s *testSSHServer) *Config {
	c := &Config{
		Name:        "pair1",
		Replication: Replication{User: "repl", PasswordEnv: "SDR_TEST_PW"},
		SSH:         SSHConfig{IdentityFile: s.IdentityFile, KnownHosts: s.KnownHosts},
		Primary:     ClusterSpec{Nodes: []Node{{Name: "dc1-a", Host: s.Host, SSHPort: s.Port, DataDir: "/pg/a"}}},
		Standby:     ClusterSpec{Main: "dc2-a", Nodes: []Node{{Name: "dc2-a", Host: s.Host, SSHPort: s.Port, PGPort: 5433, DataDir: "/pg/b"}}},
	}
	c.Timeouts.Connect.Duration = 5 * time.Second
	c.SetDefaults()
	return c
}

type accessBackend struct {
	name string
	open func(t *testing.T) Access
}

func accessBackends() []accessBackend {
	return []accessBackend{
		{"local", func(t *testing.T) Access {
			return NewLocal(&Node{Name: "dc1-a", Host: "127.0.0.1", Local: true})
		}},
		{"ssh", func(t *testing.T) Access { return dialTestSSH(t, startTestSSHServer(t)) }},
		{"ssh with a noisy login shell", func(t *testing.T) Access {
			srv := startTestSSHServer(t)
			// A .bashrc that echoes, with text that looks like sdr's own.
			srv.RCJunk = "Welcome to dc1-a!\nsdr-0123-begin sdr-0123-end\n"
			return dialTestSSH(t, srv)
		}},
		{"ssh with a login shell that reads backslashes in quotes", func(t *testing.T) Access {
			srv := startTestSSHServer(t)
			// fish reads \\ inside single quotes as one backslash.
			srv.Mangle = func(cmd string) string { return strings.ReplaceAll(cmd, `\\`, `\`) }
			return dialTestSSH(t, srv)
		}},
	}
}

// testServers maps each *SSH that dialTestSSH opened to its server.
var testServers sync.Map

func dialTestSSH(t *testing.T, srv *testSSHServer) *SSH {
	t.Helper()
	cfg := testConfig(srv)
	n, _ := cfg.Node("dc1-a")
	a, err := DialSSH(context.Background(), cfg, n)
	if err != nil {
		t.Fatalf("DialSSH: %v", err)
	}
	testServers.Store(a, srv)
	t.Cleanup(func() { a.Close(); testServers.Delete(a) })
	return a
}

// serverOf is the test server behind a, opened by dialTestSSH.
func serverOf(t *testing.T, a *SSH) *testSSHServer {
	t.Helper()
	srv, ok := testServers.Load(a)
	if !ok {
		t.Fatal("not an Access of dialTestSSH")
	}
	return srv.(*testSSHServer)
}

// TestAccessConformance runs one table of cases against every Access.
func TestAccessConformance(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, a Access, dir string)
	}{
		{"run returns stdout", func(t *testing.T, a Access, dir string) {
			out, err := a.Run(context.Background(), "echo hello; echo ignored >&2", RunOpts{})
			if err != nil || string(out) != "hello\n" {
				t.Fatalf("got %q, %v", out, err)
			}
		}},
		{"only the command's output, exit code kept", func(t *testing.T, a Access, dir string) {
			out, err := a.Run(context.Background(), "printf 'no newline'; exit 4", RunOpts{})
			var ce *CommandError
			if !errors.As(err, &ce) || ce.ExitCode != 4 || string(out) != "no newline" {
				t.Fatalf("got %q, %v", out, err)
			}
			out, err = a.Run(context.Background(), "exit 0", RunOpts{})
			if err != nil || len(out) != 0 {
				t.Fatalf("got %q, %v", out, err)
			}
		}},
		{"POSIX sh syntax, multi-line, backslashes and quotes", func(t *testing.T, a Access, dir string) {
			cmd := `f() { printf '%s\n' "$1"; }
f 'a b'
x=$(printf '%s' "q'\\\"!"); printf '%s\n' "$x" # comment`
			out, err := a.Run(context.Background(), cmd, RunOpts{})
			if err != nil || string(out) != "a b\nq'\\\"!\n" {
				t.Fatalf("got %q, %v", out, err)
			}
		}},
		{"stdin is fed", func(t *testing.T, a Access, dir string) {
			in := "line one\nsecond 'quoted' $HOME\n"
			out, err := a.Run(context.Background(), "cat", RunOpts{Stdin: strings.NewReader(in)})
			if err != nil || string(out) != in {
				t.Fatalf("got %q, %v", out, err)
			}
		}},
		{"no stdin reads EOF", func(t *testing.T, a Access, dir string) {
			out, err := a.Run(context.Background(), "wc -c", RunOpts{})
			if err != nil || strings.TrimSpace(string(out)) != "0" {
				t.Fatalf("got %q, %v", out, err)
			}
		}},
		{"env is exported", func(t *testing.T, a Access, dir string) {
			out, err := a.Run(context.Background(), `printf '%s|%s' "$A_B" "$C"`, RunOpts{Env: map[string]string{"A_B": "x y'z", "C": "$HOME"}})
			if err != nil || string(out) != "x y'z|$HOME" {
				t.Fatalf("got %q, %v", out, err)
			}
		}},
		{"bad env name is refused", func(t *testing.T, a Access, dir string) {
			if _, err := a.Run(context.Background(), "true", RunOpts{Env: map[string]string{"A;rm": "x"}}); err == nil {
				t.Fatal("want error")
			}
		}},
		{"non-zero exit is a CommandError", func(t *testing.T, a Access, dir string) {
			_, err := a.Run(context.Background(), "echo first >&2; echo oops >&2; exit 3", RunOpts{})
			var ce *CommandError
			if !errors.As(err, &ce) {
				t.Fatalf("want *CommandError, got %T %v", err, err)
			}
			if ce.ExitCode != 3 || ce.Node != "dc1-a" || !strings.Contains(ce.Stderr, "oops") {
				t.Fatalf("got %+v", ce)
			}
			if !strings.Contains(err.Error(), "dc1-a") {
				t.Fatalf("message does not name the node: %v", err)
			}
		}},
		{"stderr is streamed", func(t *testing.T, a Access, dir string) {
			var buf syncBuffer
			_, err := a.Run(context.Background(), "echo progress >&2", RunOpts{Stderr: &buf})
			if err != nil || buf.String() != "progress\n" {
				t.Fatalf("got %q, %v", buf.String(), err)
			}
		}},
		{"read missing file is ErrNotExist", func(t *testing.T, a Access, dir string) {
			_, err := a.ReadFile(context.Background(), filepath.Join(dir, "nope"))
			if !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("want fs.ErrNotExist, got %v", err)
			}
		}},
		{"write then read", func(t *testing.T, a Access, dir string) {
			p := filepath.Join(dir, "it's a file.conf")
			data := []byte("a\x00b\n'quote' $(echo no)\n")
			if err := a.WriteFile(context.Background(), p, data, 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := a.ReadFile(context.Background(), p)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("got %q, %v", got, err)
			}
			st, err := os.Stat(p)
			if err != nil || st.Mode().Perm() != 0o600 {
				t.Fatalf("mode %v, %v", st.Mode(), err)
			}
		}},
		{"write replaces atomically", func(t *testing.T, a Access, dir string) {
			p := filepath.Join(dir, "pg_hba.conf")
			if err := os.WriteFile(p, []byte("old\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			// A hard link to the old file keeps the old content only if the
			// new content was renamed into place, not written in place.
			if err := os.Link(p, p+".link"); err != nil {
				t.Fatal(err)
			}
			if err := a.WriteFile(context.Background(), p, []byte("new\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(p); string(b) != "new\n" {
				t.Fatalf("file holds %q", b)
			}
			if b, _ := os.ReadFile(p + ".link"); string(b) != "old\n" {
				t.Fatalf("old inode holds %q: written in place", b)
			}
			if st, _ := os.Stat(p); st.Mode().Perm() != 0o644 {
				t.Fatalf("mode %v: the existing file's mode was not kept", st.Mode())
			}
			ents, _ := os.ReadDir(dir)
			if len(ents) != 2 {
				t.Fatalf("temporary files left: %v", ents)
			}
		}},
		{"write through symlinks keeps the links", func(t *testing.T, a Access, dir string) {
			real := filepath.Join(dir, "conf", "postgresql.conf")
			os.Mkdir(filepath.Dir(real), 0o755)
			if err := os.WriteFile(real, []byte("old\n"), 0o640); err != nil {
				t.Fatal(err)
			}
			link := filepath.Join(dir, "link.conf")   // relative link to the file
			link2 := filepath.Join(dir, "link2.conf") // absolute link to the link
			if err := os.Symlink("conf/postgresql.conf", link); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(link, link2); err != nil {
				t.Fatal(err)
			}
			if err := a.WriteFile(context.Background(), link2, []byte("new\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			for _, l := range []string{link, link2} {
				if fi, err := os.Lstat(l); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
					t.Fatalf("%s is no longer a symlink: %v %v", l, fi, err)
				}
			}
			if b, _ := os.ReadFile(real); string(b) != "new\n" {
				t.Fatalf("target holds %q", b)
			}
			if st, _ := os.Stat(real); st.Mode().Perm() != 0o640 {
				t.Fatalf("target mode %v", st.Mode())
			}
			if ents, _ := os.ReadDir(filepath.Dir(real)); len(ents) != 1 {
				t.Fatalf("temporary files left: %v", ents)
			}
		}},
		{"write through a dangling symlink fails", func(t *testing.T, a Access, dir string) {
			link := filepath.Join(dir, "link.conf")
			if err := os.Symlink(filepath.Join(dir, "missing.conf"), link); err != nil {
				t.Fatal(err)
			}
			err := a.WriteFile(context.Background(), link, []byte("x"), 0o600)
			if err == nil || !strings.Contains(err.Error(), link) {
				t.Fatalf("want an error naming %s, got %v", link, err)
			}
			if _, err := os.Stat(filepath.Join(dir, "missing.conf")); err == nil {
				t.Fatal("the target was created")
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 1 {
				t.Fatalf("files left: %v", ents)
			}
		}},
		{"write keeps the owner and group", func(t *testing.T, a Access, dir string) {
			if os.Geteuid() != 0 {
				t.Skip("needs root to give a file another owner")
			}
			p := filepath.Join(dir, "pg_hba.conf")
			if err := os.WriteFile(p, []byte("old\n"), 0o750); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(p, 65534, 65533); err != nil {
				t.Fatal(err)
			}
			os.Chmod(p, 0o750|fs.ModeSetuid) // after chown, which clears set-id bits
			if err := a.WriteFile(context.Background(), p, []byte("new\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			sys := st.Sys().(*syscall.Stat_t)
			if sys.Uid != 65534 || sys.Gid != 65533 || st.Mode()&(fs.ModePerm|fs.ModeSetuid) != 0o750|fs.ModeSetuid {
				t.Fatalf("owner %d:%d mode %v", sys.Uid, sys.Gid, st.Mode())
			}
		}},
		{"write over a directory fails", func(t *testing.T, a Access, dir string) {
			p := filepath.Join(dir, "d")
			os.Mkdir(p, 0o700)
			if err := a.WriteFile(context.Background(), p, []byte("x"), 0o600); err == nil {
				t.Fatal("want error")
			}
			if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
				t.Fatalf("directory changed: %v %v", fi, err)
			}
		}},
		{"write into missing dir fails", func(t *testing.T, a Access, dir string) {
			if err := a.WriteFile(context.Background(), filepath.Join(dir, "no", "f"), []byte("x"), 0o600); err == nil {
				t.Fatal("want error")
			}
		}},
		{"cancel stops a long command", func(t *testing.T, a Access, dir string) {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err := a.Run(ctx, "sleep 30", RunOpts{})
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("want DeadlineExceeded, got %v", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("took %v", d)
			}
		}},
		{"done context runs nothing", func(t *testing.T, a Access, dir string) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			marker := filepath.Join(dir, "ran")
			_, err := a.Run(ctx, "touch "+ShellQuote(marker), RunOpts{})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("want Canceled, got %v", err)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Fatal("the command ran")
			}
		}},
		{"dial tcp", func(t *testing.T, a Access, dir string) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go echoServer(ln)
			testEcho(t, a, "tcp", ln.Addr().String())
		}},
		{"dial unix", func(t *testing.T, a Access, dir string) {
			sock := filepath.Join(dir, ".s.PGSQL.5432")
			ln, err := net.Listen("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go echoServer(ln)
			testEcho(t, a, "unix", sock)
		}},
		{"dial refused", func(t *testing.T, a Access, dir string) {
			ln, _ := net.Listen("tcp", "127.0.0.1:0")
			addr := ln.Addr().String()
			ln.Close()
			if _, err := a.Dial(context.Background(), "tcp", addr); err == nil {
				t.Fatal("want error")
			}
		}},
		{"stdout streamed, large and binary", func(t *testing.T, a Access, dir string) {
			var got syncBuffer
			// 3 MiB of bytes 0-255, the end marker's length and more in every write.
			out, err := a.Run(context.Background(), "head -c 3145728 /dev/urandom | tee "+ShellQuote(filepath.Join(dir, "sent")),
				RunOpts{Stdout: &got})
			if err != nil || out != nil {
				t.Fatalf("got %d bytes returned, %v", len(out), err)
			}
			sent, err := os.ReadFile(filepath.Join(dir, "sent"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal([]byte(got.String()), sent) {
				t.Fatalf("streamed %d bytes, the command wrote %d (or they differ)", len(got.String()), len(sent))
			}
		}},
		{"stdout streamed, exit code kept", func(t *testing.T, a Access, dir string) {
			var got syncBuffer
			_, err := a.Run(context.Background(), "printf part; exit 7", RunOpts{Stdout: &got})
			var ce *CommandError
			if !errors.As(err, &ce) || ce.ExitCode != 7 {
				t.Fatalf("got %v", err)
			}
		}},
		{"stdout stream whose reader fails: the command is not blocked", func(t *testing.T, a Access, dir string) {
			w := &failingWriter{after: 1000}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err := a.Run(ctx, "head -c 2000000 /dev/zero; echo done >"+ShellQuote(filepath.Join(dir, "done")), RunOpts{Stdout: w})
			if err == nil || !errors.Is(err, errReaderGaveUp) {
				t.Fatalf("got %v, want the reader's error", err)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "done")); string(b) != "done\n" {
				t.Fatalf("the command did not run to its end: %q", b)
			}
		}},
		{"concurrent runs", func(t *testing.T, a Access, dir string) {
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			for i := 0; i < 8; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					out, err := a.Run(context.Background(), "echo ok", RunOpts{})
					if err == nil && string(out) != "ok\n" {
						err = errors.New("got " + string(out))
					}
					errs <- err
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
		}},
	}
	for _, b := range accessBackends() {
		t.Run(b.name, func(t *testing.T) {
			a := b.open(t)
			if a.Node().Name != "dc1-a" {
				t.Fatalf("Node() = %+v", a.Node())
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					dir, err := shortTempDir(t)
					if err != nil {
						t.Fatal(err)
					}
					tc.run(t, a, dir)
				})
			}
		})
	}
}

var errReaderGaveUp = errors.New("reader gave up")

// failingWriter takes after bytes, then fails every write.
type failingWriter struct {
	mu    sync.Mutex
	after int
	n     int
}

func (w *failingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n+len(p) > w.after {
		return 0, errReaderGaveUp
	}
	w.n += len(p)
	return len(p), nil
}

// conformanceCase is one case of a conformance table: it runs against
// every Access backend, with a fresh temporary directory.
type conformanceCase struct {
	name string
	run  func(t *testing.T, a Access, dir string)
}

// runConformance runs cases against every backend of accessBackends.
func runConformance(t *testing.T, cases []conformanceCase) {
	t.Helper()
	for _, b := range accessBackends() {
		t.Run(b.name, func(t *testing.T) {
			a := b.open(t)
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					dir, err := shortTempDir(t)
					if err != nil {
						t.Fatal(err)
					}
					tc.run(t, a, dir)
				})
			}
		})
	}
}

func echoServer(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			io.Copy(c, c)
		}()
	}
}

func testEcho(t *testing.T, a Access, network, addr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := a.Dial(ctx, network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "ping\n" {
		t.Fatalf("got %q, %v", line, err)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func mustListen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func splitAddr(t *testing.T, addr string) (string, int) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return h, n
}

// shortTempDir is a temporary directory with a short path (Unix socket
// paths are limited to about 100 bytes).
func shortTempDir(t *testing.T) (string, error) {
	dir, err := os.MkdirTemp("", "sdr")
	if err == nil {
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	return dir, err
}

func TestSSHFramesPlainlyOnlyWhereTheLoginShellAllows(t *testing.T) {
	plain := func(a *SSH) bool {
		<-a.plainKnown
		return a.plain.Load()
	}
	if a := dialTestSSH(t, startTestSSHServer(t)); !plain(a) {
		t.Error("a /bin/sh login shell: commands still go base64-framed")
	}
	noisy := startTestSSHServer(t)
	noisy.RCJunk = "Welcome!\n"
	if a := dialTestSSH(t, noisy); !plain(a) {
		t.Error("a noisy login shell: commands still go base64-framed")
	}
	fishy := startTestSSHServer(t)
	fishy.Mangle = func(cmd string) string { return strings.ReplaceAll(cmd, `\\`, `\`) }
	a := dialTestSSH(t, fishy)
	if plain(a) {
		t.Fatal("a login shell that changes backslashes in quotes: commands go plainly framed")
	}
	out, err := a.Run(context.Background(), `printf '%s' 'a\\b'`, RunOpts{})
	if err != nil || string(out) != `a\\b` {
		t.Fatalf("got %q, %v", out, err)
	}
}

// Commands run at once after DialSSH, before the login shell has said
// whether it passes a quoted script on unchanged, go base64-framed and
// come back intact, also through a login shell that changes backslashes.
func TestSSHCommandsBeforeTheFramingIsKnown(t *testing.T) {
	fishy := startTestSSHServer(t)
	fishy.Mangle = func(cmd string) string { return strings.ReplaceAll(cmd, `\\`, `\`) }
	for i := 0; i < 5; i++ {
		a := dialTestSSH(t, fishy)
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for j := 0; j < 4; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out, err := a.Run(context.Background(), `printf '%s' 'a\\b'`, RunOpts{})
				if err == nil && string(out) != `a\\b` {
					err = fmt.Errorf("got %q", out)
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		<-a.plainKnown
		if a.plain.Load() {
			t.Fatal("a login shell that changes backslashes in quotes: commands go plainly framed")
		}
	}
}

// A session the node's sshd refuses past its MaxSessions is named as such.
func TestSSHSessionRefusedNamesMaxSessions(t *testing.T) {
	srv := startTestSSHServer(t)
	srv.MaxSessions = 1
	a := dialTestSSH(t, srv)
	// The framing probe's session may still count for a moment.
	var p Proc
	var err error
	for i := 0; i < 100; i++ {
		if p, err = a.Start(context.Background(), "sleep 5", RunOpts{}); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	_, err = a.Run(context.Background(), "true", RunOpts{})
	if err == nil || !strings.Contains(err.Error(), "MaxSessions") || !strings.Contains(err.Error(), "on dc1-a") {
		t.Fatalf("a second session past MaxSessions 1: got %v", err)
	}
}

// A connection whose server stops answering keepalives is closed after
// KeepaliveMisses intervals: a command running through it fails then,
// naming why, instead of running on until its context ends. One that
// answers (a refusal counts) stays open.
func TestSSHKeepaliveClosesASilentConnection(t *testing.T) {
	srv := startTestSSHServer(t)
	cfg := testConfig(srv)
	cfg.Timeouts.Keepalive.Duration = 50 * time.Millisecond
	n, _ := cfg.Node("dc1-a")
	a, err := DialSSH(context.Background(), cfg, n)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	// Answering keepalives: a command longer than several intervals ends
	// normally.
	if _, err := a.Run(context.Background(), "sleep 0.5", RunOpts{}); err != nil {
		t.Fatalf("a command on a connection that answers its keepalives: %v", err)
	}
	srv.Silent.Store(true)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = a.Run(ctx, "sleep 30", RunOpts{})
	if err == nil || !strings.Contains(err.Error(), "stopped answering") || !strings.Contains(err.Error(), "dc1-a") {
		t.Fatalf("a command on a silent connection: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the silent connection was given up after %s, want about %s", took, time.Duration(KeepaliveMisses)*50*time.Millisecond)
	}
}
