package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"strings"
	"sync"
	"time"
)

// exitLocked is the lock script's exit code when another holder has the lock.
const exitLocked = 75

// releaseTimeout bounds how long Release waits for the node to let go.
const releaseTimeout = 10 * time.Second

// NodeLock is a lock on a node, held by a process on the node for as long
// as sdr holds it (see LockNode).
type NodeLock struct {
	a    Access
	file string
	p    Proc
	done chan struct{} // the holding process ended; then werr is set
	werr error
	lost chan struct{} // closed when the lock ended without Release

	mu       sync.Mutex
	released bool
}

// LockNode takes an flock(1) lock on file (in an existing directory) on the
// node, held by a remote process that lives as long as the lock is held:
// Release, sdr's death or the loss of the connection (the process reads
// EOF on its stdin) releases it. holder (e.g. "pid 123 on host x, run R,
// start --role standby") is written beside the lock, in file+".holder",
// and shown to whoever finds the node locked: they get an error wrapping
// ErrNodeLocked that names it. wait bounds how long to wait for a held
// lock (0: fail at once); ctx bounds the whole attempt but not the lock
// once taken.
func LockNode(ctx context.Context, a Access, file, holder string, wait time.Duration) (*NodeLock, error) {
	return lockNode(ctx, a, file, holder, wait, false)
}

// LockNodeMakingDir is LockNode that first creates file's directory (and
// its parents) where it is missing and makes it mode 0700, in the same
// remote action.
func LockNodeMakingDir(ctx context.Context, a Access, file, holder string, wait time.Duration) (*NodeLock, error) {
	return lockNode(ctx, a, file, holder, wait, true)
}

func lockNode(ctx context.Context, a Access, file, holder string, wait time.Duration, makeDir bool) (*NodeLock, error) {
	node := a.Node().Name
	if err := checkPaths(file); err != nil {
		return nil, fmt.Errorf("on %s: while locking: %w", node, err)
	}
	if strings.ContainsRune(holder, 0) {
		return nil, fmt.Errorf("on %s: while locking %s: the holder text holds a NUL byte", node, file)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("on %s: while locking %s: %w", node, file, context.Cause(ctx))
	}
	var id [12]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("on %s: while locking %s: %w", node, file, err)
	}
	held := &markerWriter{marker: []byte("sdr-lock-" + hex.EncodeToString(id[:]) + "-held\n"), seen: make(chan struct{})}
	try := "-n"
	if wait > 0 {
		try = fmt.Sprintf("-w %.3f", wait.Seconds())
	}
	var script strings.Builder
	if makeDir {
		d := ShellQuote(path.Dir(path.Clean(file)))
		fmt.Fprintf(&script, "mkdir -p -- %s && chmod 700 -- %s || exit 1\n", d, d)
	}
	fmt.Fprintf(&script, `f=%s h=%s
exec 9>>"$f" || exit 1
flock -E %d %s 9
sdr_rc=$?
if [ $sdr_rc -ne 0 ]; then
	[ $sdr_rc -eq %d ] && printf 'holder=%%s\0' "$(cat -- "$f.holder" 2>/dev/null)"
	exit $sdr_rc
fi
printf '%%s\n' "$h" >"$f.holder.$$" && mv -f -- "$f.holder.$$" "$f.holder" || exit 1
printf '%%s' %s >&2
cat >/dev/null 9>&-
rm -f -- "$f.holder"
`, ShellQuote(file), ShellQuote(holder), exitLocked, try, exitLocked, ShellQuote(string(held.marker)))
	p, err := a.Start(context.WithoutCancel(ctx), script.String(), RunOpts{Stderr: held})
	if err != nil {
		return nil, fmt.Errorf("while locking %s: %w", file, err)
	}
	l := &NodeLock{a: a, file: file, p: p, done: make(chan struct{}), lost: make(chan struct{})}
	var out []byte
	go func() {
		out, l.werr = p.Wait()
		close(l.done)
	}()
	select {
	case <-held.seen:
		go l.watch()
		return l, nil
	case <-l.done:
	case <-ctx.Done():
		_ = p.Stdin().Close()
		_ = p.Kill()
		select {
		case <-l.done:
		case <-time.After(2 * time.Second):
		}
		return nil, fmt.Errorf("on %s: while locking %s: %w", node, file, context.Cause(ctx))
	}
	// The process ended without taking the lock.
	var ce *CommandError
	if errors.As(l.werr, &ce) && ce.ExitCode == exitLocked {
		who := "an unknown holder"
		if recs, _ := parseRecords(out); len(recs) == 1 && recs[0].key == "holder" && strings.TrimSpace(recs[0].val) != "" {
			who = strings.TrimSpace(recs[0].val)
		}
		return nil, fmt.Errorf("on %s: %s is locked by %s: %w", node, file, who, ErrNodeLocked)
	}
	if l.werr != nil {
		var ce *CommandError
		if errors.As(l.werr, &ce) {
			ce.Cmd = "flock " + file
		}
		return nil, fmt.Errorf("while locking %s: %w", file, l.werr)
	}
	return nil, fmt.Errorf("on %s: while locking %s: the lock process ended without taking it", node, file)
}

// watch closes lost when the holding process ends without Release.
func (l *NodeLock) watch() {
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.released {
		close(l.lost)
	}
}

// LockHolder tells, without taking it, whether the lock on file (see
// LockNode) is held now, and by whom (file+".holder"). It only reads: a
// missing or unreadable file is a lock nobody holds, and the test is a
// shared flock that is let go at once.
func LockHolder(ctx context.Context, a Access, file string) (holder string, held bool, err error) {
	if err := checkPaths(file); err != nil {
		return "", false, fmt.Errorf("on %s: while looking at lock %s: %w", a.Node().Name, file, err)
	}
	script := ReadOnlyScript(fmt.Sprintf(`f=%s
[ -r "$f" ] || exit 0
flock -n -s -E %d "$f" true
[ $? -eq %d ] || exit 0
printf 'held=1\0holder=%%s\0' "$(cat -- "$f.holder" 2>/dev/null)"
`, ShellQuote(file), exitLocked, exitLocked))
	out, err := runScript(ctx, a, "looking at lock "+file, script)
	if err != nil {
		return "", false, err
	}
	recs, err := parseRecords(out)
	if err != nil {
		return "", false, fmt.Errorf("on %s: while looking at lock %s: %w", a.Node().Name, file, err)
	}
	for _, r := range recs {
		switch r.key {
		case "held":
			held = true
		case "holder":
			holder = strings.TrimSpace(r.val)
		}
	}
	return holder, held, nil
}

// Lost is closed when the lock ended without Release (the connection was
// lost, or the holding process was killed): the node is no longer locked
// by this run.
func (l *NodeLock) Lost() <-chan struct{} { return l.lost }

// Release lets go of the lock and waits (a few seconds at most) until the
// node has. Releasing twice is fine; releasing a lost lock is an error.
func (l *NodeLock) Release() error {
	l.mu.Lock()
	if l.released {
		l.mu.Unlock()
		return nil
	}
	l.released = true
	select {
	case <-l.lost:
		l.mu.Unlock()
		return fmt.Errorf("on %s: lock %s was lost before it was released", l.a.Node().Name, l.file)
	default:
	}
	l.mu.Unlock()
	_ = l.p.Stdin().Close()
	select {
	case <-l.done:
	case <-time.After(releaseTimeout):
		_ = l.p.Kill()
		return fmt.Errorf("on %s: lock %s: the node did not let go within %s; its holder was killed", l.a.Node().Name, l.file, releaseTimeout)
	}
	if l.werr != nil {
		return fmt.Errorf("on %s: releasing lock %s: %w", l.a.Node().Name, l.file, l.werr)
	}
	return nil
}

// markerWriter closes seen once marker has been written to it.
type markerWriter struct {
	mu     sync.Mutex
	marker []byte
	buf    []byte
	seen   chan struct{}
	done   bool
}

func (m *markerWriter) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.done {
		return len(p), nil
	}
	m.buf = append(m.buf, p...)
	if bytes.Contains(m.buf, m.marker) {
		m.done, m.buf = true, nil
		close(m.seen)
	} else if len(m.buf) > 4*len(m.marker) {
		m.buf = append([]byte(nil), m.buf[len(m.buf)-len(m.marker):]...)
	}
	return len(p), nil
}
