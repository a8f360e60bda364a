package steps

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

// Env is what the DR steps work with.
type Env struct {
	Config *cluster.Config
	Pool   *cluster.Pool
	// Password is the replication password. It lives in memory only: it is
	// sent to PostgreSQL inside the protocol and written to the 0600 pgpass
	// file on standby nodes over stdin, never on a command line or in a log.
	Password string
	// Timeout bounds the waits (for the remote primary, for streaming,
	// for a basebackup) and the long operations on nodes (starting
	// PostgreSQL, deleting a data directory).
	Timeout time.Duration
	// ReplaceDiverged names the DR nodes whose diverged or unrecognised
	// data directory the operator allows to be replaced
	// (--replace-diverged); it is moved aside and kept, never deleted.
	ReplaceDiverged []string
	// ResetReplicationPassword lets 3_prepare_replication set the password
	// of a replication role that sdr did not create for this pair
	// (start --reset-replication-password).
	ResetReplicationPassword bool
	// AcceptDataLoss lets sdr failover promote the DR side although the
	// old primary cannot be shown to have lost nothing
	// (--accept-data-loss).
	AcceptDataLoss bool
	// ReadOnly makes every node access refuse changes (cluster.ReadOnly):
	// sdr plan sets it, so that a plan cannot change a node even by mistake.
	ReadOnly bool
	// CopyRate is the rate, in bytes per second, a plan assumes for a
	// copy when the state file records none (sdr plan --copy-rate).
	CopyRate float64
	// NoRewind makes start --role standby copy a former primary again
	// instead of rewinding it with pg_rewind (start --no-rewind).
	NoRewind bool

	mu      sync.Mutex
	layouts flight[nodeLayout]      // layoutOf, by node
	confs   flight[nodeConf]        // confOf, by node
	repl    map[string]*replSession // withReplUser
	// oldPrimaryChecked: this run's own check (failover's 2_check_cluster,
	// switchover's 3_wait_primary) found the old primary down, right
	// before the promotion; a run that resumes at the promotion checks
	// again (see promote).
	oldPrimaryChecked bool
	side              sideLock // HoldSide
}

// named reports whether the operator named node with --replace-diverged.
func (e *Env) named(node string) bool {
	for _, n := range e.ReplaceDiverged {
		if n == node {
			return true
		}
	}
	return false
}

// longCtx bounds a long operation on a node (pg_basebackup, starting
// PostgreSQL, deleting a directory) by the run's --timeout, not by the
// command timeout.
func (e *Env) longCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	t := e.Timeout
	if t <= 0 {
		t = cluster.DefaultWaitTimeout
	}
	return context.WithTimeout(ctx, t)
}

// cmdCtx bounds one remote command or SQL call.
func (e *Env) cmdCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, e.Config.Timeouts.Command.Duration)
}

func (e *Env) access(ctx context.Context, n *cluster.Node) (cluster.Access, error) {
	a, err := e.Pool.Get(ctx, n.Name)
	if err != nil || !e.ReadOnly {
		return a, err
	}
	return cluster.ReadOnly(a), nil
}

// run runs a command on node n, bounded by the command timeout.
func (e *Env) run(ctx context.Context, n *cluster.Node, cmd string, opts cluster.RunOpts) (string, error) {
	a, err := e.access(ctx, n)
	if err != nil {
		return "", err
	}
	cctx, cancel := e.cmdCtx(ctx)
	defer cancel()
	out, err := a.Run(cctx, cmd, opts)
	return string(out), err
}

// admin connects to node n's PostgreSQL as the admin user.
func (e *Env) admin(ctx context.Context, n *cluster.Node) (*pgx.Conn, error) {
	a, err := e.access(ctx, n)
	if err != nil {
		return nil, err
	}
	return cluster.ConnectAdmin(ctx, e.Config, a)
}

// withAdmin runs fn with an admin connection to n, bounded by the command timeout.
func (e *Env) withAdmin(ctx context.Context, n *cluster.Node, fn func(ctx context.Context, c *pgx.Conn) error) error {
	cctx, cancel := e.cmdCtx(ctx)
	defer cancel()
	c, err := e.admin(cctx, n)
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	return fn(cctx, c)
}

// keptConn is a PostgreSQL session kept between uses (adminSession,
// replSession): opened when there is none, closed when a use fails so
// that the next use opens a new one.
type keptConn struct{ c *pgx.Conn }

func (k *keptConn) use(ctx context.Context, open func(context.Context) (*pgx.Conn, error), fn func(ctx context.Context, c *pgx.Conn) error) error {
	if k.c == nil || k.c.IsClosed() {
		c, err := open(ctx)
		if err != nil {
			return err
		}
		k.c = c
	}
	if err := fn(ctx, k.c); err != nil {
		k.close()
		return err
	}
	return nil
}

// close logs the session out, waiting at most a second for the node.
func (k *keptConn) close() {
	if k.c == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = k.c.Close(ctx)
	k.c = nil
}

// adminSession is an admin session with a node kept between the checks of
// one wait, so that a check every few hundred milliseconds does not cost
// the node a new backend each time. Its owner closes it when the wait
// ends; it is never kept across steps (a node stopped with a smart
// shutdown would wait for it).
type adminSession struct {
	e *Env
	n *cluster.Node
	keptConn
}

// do runs fn on the session, bounded by the command timeout.
func (s *adminSession) do(ctx context.Context, fn func(ctx context.Context, c *pgx.Conn) error) error {
	cctx, cancel := s.e.cmdCtx(ctx)
	defer cancel()
	return s.use(cctx, func(ctx context.Context) (*pgx.Conn, error) { return s.e.admin(ctx, s.n) }, fn)
}

func bin(n *cluster.Node, prog string) string {
	return cluster.ShellQuote(filepath.Join(n.BinDir, prog))
}

func q(s string) string { return cluster.ShellQuote(s) }

func (e *Env) primaryNodes() []*cluster.Node {
	out := make([]*cluster.Node, len(e.Config.Primary.Nodes))
	for i := range e.Config.Primary.Nodes {
		out[i] = &e.Config.Primary.Nodes[i]
	}
	return out
}

func (e *Env) standbyNodes() []*cluster.Node {
	out := make([]*cluster.Node, len(e.Config.Standby.Nodes))
	for i := range e.Config.Standby.Nodes {
		out[i] = &e.Config.Standby.Nodes[i]
	}
	return out
}

// mainStandby returns the main standby and the cascade standbys.
func (e *Env) mainStandby() (*cluster.Node, []*cluster.Node) {
	var main *cluster.Node
	var cascades []*cluster.Node
	for _, n := range e.standbyNodes() {
		if n.Name == e.Config.Standby.Main {
			main = n
		} else {
			cascades = append(cascades, n)
		}
	}
	return main, cascades
}

// ensureFile makes the file at p on n hold content (mode 0600), writing it
// only when it differs, and reports whether it wrote.
func (e *Env) ensureFile(ctx context.Context, n *cluster.Node, p, content string) (bool, error) {
	return e.ensureFileAfter(ctx, n, "", p, content)
}

// ensureFileAfter is ensureFile that first runs the shell command before
// (preparing the file's directory) in the action that reads the file.
func (e *Env) ensureFileAfter(ctx context.Context, n *cluster.Node, before, p, content string) (bool, error) {
	a, err := e.access(ctx, n)
	if err != nil {
		return false, err
	}
	cctx, cancel := e.cmdCtx(ctx)
	defer cancel()
	var old []byte
	if before == "" {
		old, err = a.ReadFile(cctx, p)
	} else {
		var files map[string][]byte
		files, err = cluster.ReadFilesAfter(cctx, a, before, p)
		if err == nil {
			var ok bool
			if old, ok = files[p]; !ok {
				err = fs.ErrNotExist
			}
		}
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("while reading %s on %s: %w", p, n.Name, err)
	}
	if err == nil && string(old) == content {
		return false, nil
	}
	if err := a.WriteFile(cctx, p, []byte(content), 0o600); err != nil {
		return false, fmt.Errorf("while writing %s on %s: %w", p, n.Name, err)
	}
	return true, nil
}

// forEach runs fn for every node in parallel and joins the errors. A
// panic in fn is turned into that node's error, so that the runner records
// it as the step's failure instead of the process dying without a record.
func forEach(ctx context.Context, nodes []*cluster.Node, fn func(ctx context.Context, n *cluster.Node) error) error {
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if v := recover(); v != nil {
					errs[i] = fmt.Errorf("on %s: %w", n.Name, &workflow.PanicError{Value: v, Stack: string(debug.Stack())})
				}
			}()
			errs[i] = fn(ctx, n)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// together runs fns at the same time on one node's connection and
// returns the first error in the order of fns (a panic becomes an error,
// as in forEach). Callers open the node's Access first, so that an
// unreachable node costs one connect, not one per function.
func together(fns ...func() error) error {
	var wg sync.WaitGroup
	errs := make([]error, len(fns))
	for i, fn := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if v := recover(); v != nil {
					errs[i] = &workflow.PanicError{Value: v, Stack: string(debug.Stack())}
				}
			}()
			errs[i] = fn()
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// poll calls check until it reports done, ctx ends or timeout passes.
// It checks at once, then after pollFirst, and doubles the pause after
// each miss up to interval, so that a condition that comes true soon is
// seen within tens of milliseconds and a long wait costs few checks. No
// pause runs past the deadline. The last error check returned is part of
// the timeout error.
func poll(ctx context.Context, timeout, interval time.Duration, what string, check func(ctx context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var last error
	var pause time.Duration
	for {
		done, err := check(ctx)
		if done && err == nil {
			return nil
		}
		if workflow.IsPermanent(err) {
			return err // waiting does not fix it
		}
		var we *waitEnder
		if errors.As(err, &we) {
			return we.err // waiting does not fix it; a rerun may
		}
		// A check cut short by the end of the wait says less than the
		// one before it (say, "password authentication failed"): keep that.
		if last == nil || ctx.Err() == nil {
			last = err
		}
		pause = nextPause(pause, interval, time.Until(deadline))
		timer.Reset(pause)
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("while waiting %s for %s: %w (last: %w)", timeout, what, ctx.Err(), last)
			}
			return fmt.Errorf("while waiting %s for %s: %w", timeout, what, ctx.Err())
		case <-timer.C:
		}
	}
}

// waitEnder marks an error that ends a poll at once although it is not
// permanent: waiting longer cannot help, a rerun may (endWait).
type waitEnder struct{ err error }

func (w *waitEnder) Error() string { return w.err.Error() }
func (w *waitEnder) Unwrap() error { return w.err }

// endWait makes err end the poll whose check returns it; the poll returns
// err itself.
func endWait(err error) error { return &waitEnder{err: err} }

// pollFirst is the first pause of a wait.
const pollFirst = 25 * time.Millisecond

// nextPause returns the pause after one that lasted prev (0 before the
// first): pollFirst, then doubling, never more than interval nor than
// what is left until the deadline (0 when it has passed).
func nextPause(prev, interval, left time.Duration) time.Duration {
	if interval <= 0 {
		interval = pollFirst
	}
	p := pollFirst
	if prev > 0 {
		p = 2 * prev
	}
	p = min(p, interval)
	if p > left {
		p = max(left, 0)
	}
	return p
}

// permanent marks err as one a plain rerun cannot fix.
func permanent(err error) error { return &workflow.Permanent{Err: err} }

// pgIdent quotes a PostgreSQL identifier.
func pgIdent(s string) string { return pgx.Identifier{s}.Sanitize() }

// confQuote quotes a value for postgresql.conf.
func confQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s) + "'"
}

// conninfoQuote quotes a value for a libpq connection string.
func conninfoQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t'\\") {
		return s
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// Poll intervals and short bounds.
const (
	pollFast         = 100 * time.Millisecond
	pollStream       = 250 * time.Millisecond // waits for streaming: a started standby streams in ~0.1 s
	pollSlow         = time.Second
	configReloadWait = 10 * time.Second
)
