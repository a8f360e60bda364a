package cluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"sort"
	"strings"
	"sync"
)

// Access runs commands and moves files on one node.
//
// Implementations: local (os/exec, for nodes with local: true) and SSH.
// Access imposes no deadline of its own: callers bound every call with ctx
// (see Timeouts.Command). All methods are safe for concurrent use.
type Access interface {
	// Run runs a POSIX shell command line on the node with /bin/sh -c
	// (over SSH too, whatever the user's login shell is; see frame). Stdin
	// (optional) is fed to it; only the command's own stdout is returned
	// (not what a login shell's startup files print); stderr is returned in
	// the error on failure, and if opts.Stderr != nil it is also streamed
	// there as it arrives (used to show pg_basebackup progress). A non-zero
	// exit is a *CommandError. When ctx is done the command is killed and
	// ctx's error is returned, wrapped.
	Run(ctx context.Context, cmd string, opts RunOpts) ([]byte, error)
	// Start starts cmd like Run and returns at once. The command's stdin is
	// Proc.Stdin, held open by sdr until it is closed (opts.Stdin must be
	// nil): when sdr dies or the SSH connection is lost, the command reads
	// EOF there. When ctx is done the command is killed as by Proc.Kill.
	Start(ctx context.Context, cmd string, opts RunOpts) (Proc, error)
	// ReadFile returns a file's content. A missing file is an error wrapping
	// fs.ErrNotExist.
	ReadFile(ctx context.Context, path string) ([]byte, error)
	// WriteFile replaces a file atomically: it writes a temporary file in
	// the same directory, gives it its attributes, syncs it and renames it
	// over the file. If path is a symlink, the file it points to (resolved
	// fully; it must exist) is replaced and the link kept. If the file
	// exists, the new one gets its owner, group and mode (a chown the user
	// may not make is an error, unless nothing changes); mode applies only
	// to a new file. The data is passed on stdin, never on a command line.
	WriteFile(ctx context.Context, path string, data []byte, mode fs.FileMode) error
	// Dial opens a connection from the node's point of view:
	// ("unix", socketPath) or ("tcp", "host:port").
	Dial(ctx context.Context, network, addr string) (net.Conn, error)
	// ListenUnix listens on a Unix socket at path on the node: over SSH
	// by remote streamlocal forwarding (streamlocal-forward@openssh.com,
	// which OpenSSH allows unless AllowStreamLocalForwarding says no),
	// locally with a socket on this machine. The socket file must not
	// exist. Closing the listener stops the forwarding; over SSH the
	// socket file stays on the node (sshd does not remove it): ForwardUnix
	// removes it.
	ListenUnix(ctx context.Context, path string) (net.Listener, error)
	// Node is the node this Access reaches.
	Node() *Node
	// Close releases the connection. Further calls fail.
	Close() error
}

// Proc is a command started with Access.Start.
type Proc interface {
	// Stdin is the command's standard input. Closing it sends EOF.
	Stdin() io.WriteCloser
	// Wait waits for the command to end and returns its stdout, with the
	// same errors as Access.Run. It may be called more than once.
	Wait() ([]byte, error)
	// Kill sends SIGKILL (locally to the command's process group; over
	// SSH to the session) and does not wait.
	Kill() error
}

// RunOpts are the optional parts of Access.Run.
type RunOpts struct {
	Stdin  io.Reader
	Stderr io.Writer
	// Stdout, when set, receives the command's own stdout as it arrives
	// (a stream too large to hold, like a tar archive), and Run and
	// Proc.Wait return no stdout. The command's output is complete only
	// when the call returns no error: over SSH the last bytes are held
	// back until the end marker proves the output was not cut short. A
	// Write error does not stop the command: the rest of its output is
	// drained and the call returns that error (wrapped) once it ends; the
	// caller ends the command through ctx if it should stop.
	Stdout io.Writer
	// Env is set for the command with "export K='v';". Values are visible
	// in the command line, so they must never be secrets (a PGPASSFILE
	// path is fine, a password is not).
	Env map[string]string
}

// ShellQuote quotes s for /bin/sh as one word: 'it'\”s'.
func ShellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+=:,@%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// commandLine prefixes cmd with exports for env, in a stable order.
func commandLine(cmd string, env map[string]string) (string, error) {
	if len(env) == 0 {
		return cmd, nil
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		if !envRE.MatchString(k) {
			return "", fmt.Errorf("environment variable name %q is not valid", k)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "export %s=%s; ", k, ShellQuote(env[k]))
	}
	b.WriteString(cmd)
	return b.String(), nil
}

// exitNotExist is the exit code the remote file commands use for "no such file".
const exitNotExist = 66

// readFileCmd prints path, or exits exitNotExist if it does not exist.
func readFileCmd(p string) string {
	q := ShellQuote(p)
	return fmt.Sprintf("if [ ! -e %s ]; then echo 'no such file: '%s >&2; exit %d; fi; exec cat -- %s", q, q, exitNotExist, q)
}

// writeFileFunc defines sdr_write PATH MODE, which writes stdin to a
// temporary file beside PATH (or beside the file PATH links to), gives it
// the existing file's owner and mode (or MODE, octal, for a new file),
// syncs it and renames it over that file.
const writeFileFunc = `umask 077
sdr_write() {
	p=$1
	if [ -L "$p" ]; then
		r=$(readlink -e -- "$p") || { printf '%s\n' "symlink $p points to a missing file" >&2; return 1; }
		p=$r
	fi
	case $p in
	*/*) d=${p%/*} b=${p##*/} ;;
	*) d=. b=$p ;;
	esac
	[ -n "$d" ] || d=/
	t=$(mktemp -- "$d/.$b.sdr-tmp.XXXXXX") || return 1
	if cat >"$t" && sdr_attrs "$2" && sync -- "$t" && mv -f -T -- "$t" "$p"; then return 0; fi
	rm -f -- "$t"
	return 1
}
sdr_attrs() {
	if [ -e "$p" ]; then
		[ "$(stat -c %u:%g -- "$p")" = "$(stat -c %u:%g -- "$t")" ] || chown --reference="$p" -- "$t" || return 1
		chmod --reference="$p" -- "$t"
	else
		chmod "$1" -- "$t"
	fi
}
`

// writeFileCmd writes stdin over p as sdr_write does (writeFileFunc).
func writeFileCmd(p string, mode fs.FileMode) string {
	return fmt.Sprintf("%ssdr_write %s %04o", writeFileFunc, ShellQuote(p), mode.Perm())
}

// commandOutput collects a command's output: stdout whole (or streamed,
// see RunOpts.Stdout), stderr both kept (bounded) and, optionally,
// streamed.
type commandOutput struct {
	stdout bytes.Buffer
	stream *drainWriter // RunOpts.Stdout, or nil
	stderr tailBuffer
}

// stdoutWriter is where the command's stdout goes: stream when set.
func (o *commandOutput) stdoutWriter(stream io.Writer) io.Writer {
	if stream == nil {
		return &o.stdout
	}
	o.stream = &drainWriter{w: stream}
	return o.stream
}

// stdoutBytes is the stdout to return: none when it was streamed.
func (o *commandOutput) stdoutBytes() []byte {
	if o.stream != nil {
		return nil
	}
	return o.stdout.Bytes()
}

// streamErr is the first error the stdout stream returned.
func (o *commandOutput) streamErr() error {
	if o.stream == nil {
		return nil
	}
	return o.stream.error()
}

// drainWriter passes writes on to w until w fails once; from then on it
// drops them, so that a command whose reader gave up is not blocked.
type drainWriter struct {
	mu  sync.Mutex
	w   io.Writer
	err error
}

func (d *drainWriter) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err == nil {
		if _, err := d.w.Write(p); err != nil {
			d.err = err
		}
	}
	return len(p), nil
}

func (d *drainWriter) error() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

func (o *commandOutput) stderrWriter(stream io.Writer) io.Writer {
	if stream == nil {
		return &o.stderr
	}
	return io.MultiWriter(&o.stderr, stream)
}

// tailBuffer keeps the last 64 KiB written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

const tailMax = 64 << 10

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > tailMax {
		t.buf = append([]byte(nil), t.buf[len(t.buf)-tailMax:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
