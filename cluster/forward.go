package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// MaxSocketPath is the longest Unix socket path a node can bind (Linux:
// sun_path holds 108 bytes with the terminating NUL).
const MaxSocketPath = 107

// Forward is a Unix socket on one node whose connections are carried to a
// Unix socket on another node (ForwardUnix).
type Forward struct {
	from     Access
	path     string
	ln       net.Listener
	to       Access
	toPath   string
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]bool
	closed   bool
	accepted int
	dialErr  error // the last failed dial of toPath
}

// ForwardUnix listens on the Unix socket path on from's node and, for each
// connection accepted there, dials toPath on to's node and copies both
// ways. Over SSH the socket is the remote end of a streamlocal forward on
// from's connection, and each connection to toPath is a direct-streamlocal
// channel on to's connection: a PostgreSQL server behind toPath sees a
// local connection from to's SSH user (peer authentication), and nothing
// crosses the network but the SSH connections sdr already holds.
//
// A socket file already at path (left by a killed run) is removed first;
// anything else there is an error. The socket's directory should be one
// only the node's user can enter (mode 0700). Close stops it and removes
// the socket file. When ctx ends the forward stops too (Close is still
// needed to remove the file).
func ForwardUnix(ctx context.Context, from Access, path string, to Access, toPath string) (*Forward, error) {
	where := fmt.Sprintf("forwarding %s on %s to %s on %s", path, from.Node().Name, toPath, to.Node().Name)
	if len(path) > MaxSocketPath {
		return nil, fmt.Errorf("while %s: the socket path is %d bytes long, longer than a Unix socket path may be (%d)",
			where, len(path), MaxSocketPath)
	}
	if err := removeSocket(ctx, from, path); err != nil {
		return nil, fmt.Errorf("while %s: %w", where, err)
	}
	ln, err := from.ListenUnix(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("while %s: %w", where, err)
	}
	fctx, cancel := context.WithCancel(ctx)
	f := &Forward{from: from, path: path, ln: ln, to: to, toPath: toPath, ctx: fctx, cancel: cancel, conns: map[net.Conn]bool{}}
	f.wg.Add(1)
	go f.accept()
	context.AfterFunc(fctx, func() { _ = f.shut() })
	return f, nil
}

// removeSocket removes a Unix socket left at p; anything else there is an
// error naming it.
func removeSocket(ctx context.Context, a Access, p string) error {
	q := ShellQuote(p)
	cmd := fmt.Sprintf("if [ -S %[1]s ]; then rm -f -- %[1]s; elif [ -e %[1]s ] || [ -L %[1]s ]; then echo %[1]s' exists and is not a socket' >&2; exit 1; fi", q)
	if _, err := a.Run(ctx, cmd, RunOpts{}); err != nil {
		return fmt.Errorf("while removing a socket left at %s on %s: %w", p, a.Node().Name, err)
	}
	return nil
}

// Path is the socket the forward listens on.
func (f *Forward) Path() string { return f.path }

// Accepted is how many connections the forward has accepted so far.
func (f *Forward) Accepted() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.accepted
}

// DialErr is the last error dialling the target socket (nil when none):
// what a client of the forward saw as a closed connection.
func (f *Forward) DialErr() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dialErr
}

func (f *Forward) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		if !f.track(c, true) {
			_ = c.Close()
			return
		}
		f.mu.Lock()
		f.accepted++
		f.mu.Unlock()
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.serve(c)
		}()
	}
}

// track adds (or removes) an open connection; false when the forward is
// closed already.
func (f *Forward) track(c net.Conn, add bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !add {
		delete(f.conns, c)
		return true
	}
	if f.closed {
		return false
	}
	f.conns[c] = true
	return true
}

func (f *Forward) serve(c net.Conn) {
	defer f.track(c, false)
	defer c.Close()
	dctx, cancel := context.WithTimeout(f.ctx, DefaultConnectTimeout)
	d, err := f.to.Dial(dctx, "unix", f.toPath)
	cancel()
	if err != nil {
		f.mu.Lock()
		f.dialErr = err
		f.mu.Unlock()
		return
	}
	if !f.track(d, true) {
		_ = d.Close()
		return
	}
	defer f.track(d, false)
	defer d.Close()
	var wg sync.WaitGroup
	wg.Add(2)
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			_ = dst.Close()
		}
	}
	go pipe(d, c)
	go pipe(c, d)
	wg.Wait()
}

// shut stops listening and closes every open connection.
func (f *Forward) shut() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	conns := make([]net.Conn, 0, len(f.conns))
	for c := range f.conns {
		conns = append(conns, c)
	}
	f.mu.Unlock()
	err := f.ln.Close()
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		err = nil
	}
	for _, c := range conns {
		_ = c.Close()
	}
	return err
}

// Close stops the forward: it stops listening, closes the connections
// still open, waits for them to end, and removes the socket file on the
// node (bounded by ctx).
func (f *Forward) Close(ctx context.Context) error {
	err := f.shut()
	f.cancel()
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	case <-time.After(10 * time.Second): // a peer that never closes its side
	}
	if rerr := removeSocket(ctx, f.from, f.path); rerr != nil {
		err = errors.Join(err, rerr)
	}
	if err != nil {
		return fmt.Errorf("while stopping the forward of %s on %s: %w", f.path, f.from.Node().Name, err)
	}
	return nil
}
