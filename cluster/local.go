package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Local reaches a node on the machine sdr runs on, without SSH. sdr must run
// as the node's OS user.
type Local struct {
	node Node
}

var _ Access = (*Local)(nil)

// NewLocal returns the Access for a local node.
func NewLocal(n *Node) *Local { return &Local{node: *n} }

// Node is the node this Access reaches.
func (l *Local) Node() *Node { return &l.node }

// Close does nothing for a local node.
func (l *Local) Close() error { return nil }

// Run runs cmd with /bin/sh -c in its own process group; when ctx is done
// the whole group is killed.
func (l *Local) Run(ctx context.Context, cmd string, opts RunOpts) ([]byte, error) {
	line, err := commandLine(cmd, opts.Env)
	if err != nil {
		return nil, fmt.Errorf("on %s: %w", l.node.Name, err)
	}
	c := exec.CommandContext(ctx, "/bin/sh", "-c", line)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	c.WaitDelay = 2 * time.Second
	var out commandOutput
	c.Stdin = opts.Stdin
	c.Stdout = out.stdoutWriter(opts.Stdout)
	c.Stderr = out.stderrWriter(opts.Stderr)
	return l.result(ctx, cmd, c.Run(), &out)
}

// result turns the end of a local command into Run's return values.
func (l *Local) result(ctx context.Context, cmd string, err error, out *commandOutput) ([]byte, error) {
	if ctx.Err() != nil {
		return nil, fmt.Errorf("on %s: %q stopped: %w", l.node.Name, shorten(cmd, 200), context.Cause(ctx))
	}
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return out.stdoutBytes(), &CommandError{Node: l.node.Name, Cmd: cmd, ExitCode: ee.ExitCode(), Stderr: out.stderr.String()}
		}
		return nil, fmt.Errorf("on %s: running %q: %w", l.node.Name, shorten(cmd, 200), err)
	}
	if err := out.streamErr(); err != nil {
		return nil, fmt.Errorf("on %s: while passing on the output of %q: %w", l.node.Name, shorten(cmd, 200), err)
	}
	return out.stdoutBytes(), nil
}

// Start runs cmd with /bin/sh -c in its own process group, its stdin the
// read end of a pipe whose write end is Proc.Stdin: when this process
// dies, the command reads EOF. When ctx is done the whole group is killed.
func (l *Local) Start(ctx context.Context, cmd string, opts RunOpts) (Proc, error) {
	if opts.Stdin != nil {
		return nil, fmt.Errorf("on %s: Start takes no RunOpts.Stdin; write to Proc.Stdin", l.node.Name)
	}
	line, err := commandLine(cmd, opts.Env)
	if err != nil {
		return nil, fmt.Errorf("on %s: %w", l.node.Name, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("on %s: %q not started: %w", l.node.Name, shorten(cmd, 200), context.Cause(ctx))
	}
	// os.Pipe's ends are close-on-exec, so no other child inherits the
	// write end and keeps the command's stdin open after we are gone.
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("on %s: %w", l.node.Name, err)
	}
	c := exec.CommandContext(ctx, "/bin/sh", "-c", line)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	c.WaitDelay = 2 * time.Second
	p := &localProc{l: l, ctx: ctx, cmd: cmd, c: c, stdin: w, done: make(chan struct{})}
	c.Stdin = r
	c.Stdout = p.out.stdoutWriter(opts.Stdout)
	c.Stderr = p.out.stderrWriter(opts.Stderr)
	err = c.Start()
	r.Close()
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("on %s: starting %q: %w", l.node.Name, shorten(cmd, 200), err)
	}
	go func() {
		p.werr = c.Wait()
		_ = w.Close() // nobody reads it any more
		close(p.done)
	}()
	return p, nil
}

// localProc is a command started by Local.Start.
type localProc struct {
	l     *Local
	ctx   context.Context
	cmd   string
	c     *exec.Cmd
	stdin *os.File
	out   commandOutput
	done  chan struct{} // closed when the command ended; then werr is set
	werr  error
}

func (p *localProc) Stdin() io.WriteCloser { return p.stdin }

func (p *localProc) Kill() error {
	select {
	case <-p.done:
		return nil // reaped: its group id may belong to someone else now
	default:
		return syscall.Kill(-p.c.Process.Pid, syscall.SIGKILL)
	}
}

func (p *localProc) Wait() ([]byte, error) {
	<-p.done
	return p.l.result(p.ctx, p.cmd, p.werr, &p.out)
}

// ReadFile reads a file directly.
func (l *Local) ReadFile(ctx context.Context, path string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("on %s: %w", l.node.Name, err)
	}
	return b, nil
}

// WriteFile writes a temporary file beside path (or beside the file path
// links to), gives it the existing file's owner and mode (or mode for a new
// file), syncs it, and renames it over that file.
func (l *Local) WriteFile(ctx context.Context, path string, data []byte, mode fs.FileMode) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("on %s: writing %s: %w", l.node.Name, path, err)
		}
	}()
	target := path
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		if target, err = filepath.EvalSymlinks(path); err != nil {
			return fmt.Errorf("resolving symlink: %w", err)
		}
	}
	old, err := os.Stat(target)
	switch {
	case err == nil && !old.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file", target)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return err
	case err != nil:
		old = nil
	}
	f, err := os.CreateTemp(filepath.Dir(target), "."+filepath.Base(target)+".sdr-tmp.")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := copyAttrs(f, old, mode); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, target)
}

// copyAttrs gives f the owner, group and mode of old, or mode when old is
// nil. The owner is set first: chown clears set-id bits.
func copyAttrs(f *os.File, old fs.FileInfo, mode fs.FileMode) error {
	if old == nil {
		return f.Chmod(mode.Perm())
	}
	want, ok := old.Sys().(*syscall.Stat_t)
	if !ok {
		return errors.New("no owner information")
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if have, ok := fi.Sys().(*syscall.Stat_t); !ok || have.Uid != want.Uid || have.Gid != want.Gid {
		if err := f.Chown(int(want.Uid), int(want.Gid)); err != nil {
			return fmt.Errorf("giving the new file the owner %d:%d of the old one: %w", want.Uid, want.Gid, err)
		}
	}
	return f.Chmod(old.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky))
}

// Dial connects from this machine.
func (l *Local) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("on %s: %w", l.node.Name, err)
	}
	return c, nil
}

// ListenUnix listens on a Unix socket on this machine (removed again when
// the listener is closed).
func (l *Local) ListenUnix(ctx context.Context, path string) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("on %s: listening on %s: %w", l.node.Name, path, err)
	}
	return ln, nil
}
