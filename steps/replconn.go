package steps

import (
	"context"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/pgsdr/sdr/cluster"
)

// replSession is the replication user's SQL session with one
// primary-cluster node, opened from the main standby's node (through its
// SSH connection) and kept for the rest of the run: every step asks the
// primary cluster again which node is the primary (remotePrimary), and
// each ask would otherwise cost a new login.
type replSession struct {
	mu sync.Mutex // one user of the session at a time
	keptConn
}

// withReplUser runs fn on the replication user's session with n, opened
// from via when the run has none yet. A session kept from earlier in the
// run is first pinged, bounded by timeouts.connect as a new login would
// be: one that has ended (the primary restarted, the SSH connection was
// replaced) is closed and a new one opened; one that does not answer in
// time is closed and the call fails, as a login to a node that does not
// answer would. A session on which fn fails is closed too, so the next
// call starts afresh.
func (e *Env) withReplUser(ctx context.Context, via cluster.Access, n *cluster.Node, fn func(context.Context, *pgx.Conn) error) error {
	s := e.replSession(n.Name)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c != nil {
		wait := e.Config.Timeouts.Connect.Duration
		if wait <= 0 {
			wait = cluster.DefaultConnectTimeout
		}
		pctx, cancel := context.WithTimeout(ctx, wait)
		err := s.c.Ping(pctx)
		hung := pctx.Err() != nil && ctx.Err() == nil
		cancel()
		if err != nil {
			s.close()
			if hung {
				return fmt.Errorf("the replication user's session with %s did not answer within %s: %w", n.Name, wait, err)
			}
			if ctx.Err() != nil {
				return err
			}
		}
	}
	return s.use(ctx, func(ctx context.Context) (*pgx.Conn, error) {
		return cluster.ConnectReplUser(ctx, e.Config, via, n.ReplHost(), n.PGPort, e.Password, e.Config.Postgres.Database)
	}, fn)
}

func (e *Env) replSession(node string) *replSession {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.repl == nil {
		e.repl = map[string]*replSession{}
	}
	s := e.repl[node]
	if s == nil {
		s = &replSession{}
		e.repl[node] = s
	}
	return s
}

// Close ends the sessions the run kept (withReplUser), so that the primary
// cluster sees them log out rather than lose their connection when the
// SSH connections close.
func (e *Env) Close() {
	e.releaseSide()
	e.mu.Lock()
	sessions := e.repl
	e.repl = nil
	e.mu.Unlock()
	for _, s := range sessions {
		s.mu.Lock()
		s.close()
		s.mu.Unlock()
	}
}
