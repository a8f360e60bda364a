package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgsdr/sdr/e2e/bed"
)

// The writing client of the failover and switchover sections: a role with
// a password that inserts rows over TCP, as an application would, and
// may also call pg_promote (for the bare procedures).
const (
	writerRole     = "bench_writer"
	writerPassword = "bench-writer-pw" // a throw-away role of the bed, not sdr's replication password
	writerTable    = "bench_acked"
)

// writerSetupSQL creates the table and the role on the primary; the DR
// side gets them by replication.
var writerSetupSQL = []string{
	"CREATE TABLE IF NOT EXISTS " + writerTable + " (id bigint PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())",
	"DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '" + writerRole + "') THEN CREATE ROLE " + writerRole +
		" LOGIN PASSWORD '" + writerPassword + "'; END IF; END$$",
	"GRANT INSERT, SELECT ON " + writerTable + " TO " + writerRole,
	"GRANT EXECUTE ON FUNCTION pg_promote(boolean, integer) TO " + writerRole,
}

func writerDSN(b *bed.Bed, node string) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=postgres sslmode=disable connect_timeout=2",
		b.Node(node).Port, writerRole, writerPassword)
}

func connectWriter(ctx context.Context, b *bed.Bed, node string) (*pgx.Conn, error) {
	c, err := pgx.Connect(ctx, writerDSN(b, node))
	if err != nil {
		return nil, fmt.Errorf("while connecting to %s as %s: %w", node, writerRole, err)
	}
	return c, nil
}

// writeAck is one INSERT the server acknowledged.
type writeAck struct {
	Target int // index into the writer's targets
	ID     int64
	At     time.Time // when the INSERT returned
}

// writer inserts one row per transaction into writerTable, pausing
// `retry` after every attempt, successful or not. It writes to its first
// target; when that one refuses a write (any error: a terminated session,
// a refused connection, a read-only transaction), it moves on to the
// next target for good, and retries there, reconnecting when the session
// is gone, until it is stopped. So for a switchover it follows the
// primary from the old node to the new one, and for a failover (a single
// target) it keeps retrying on the main standby until it is promoted.
type writer struct {
	b       *bed.Bed
	targets []string
	retry   time.Duration

	stop chan struct{}
	done chan struct{}

	mu        sync.Mutex
	acks      []writeAck
	refusedAt time.Time // the first refused attempt on the first target, after it had accepted writes
	attempts  int
	errs      int
	lastErr   error
	newWrite  chan struct{} // closed at the first write accepted by the last target
}

// startWriter connects to every target (before anything is timed), then
// starts writing ids from first on.
func startWriter(ctx context.Context, b *bed.Bed, retry time.Duration, first int64, targets ...string) (*writer, error) {
	w := &writer{b: b, targets: targets, retry: retry, stop: make(chan struct{}), done: make(chan struct{}), newWrite: make(chan struct{})}
	conns := make([]*pgx.Conn, len(targets))
	for i, t := range targets {
		c, err := connectWriter(ctx, b, t)
		if err != nil {
			for _, c := range conns[:i] {
				c.Close(context.Background())
			}
			return nil, err
		}
		conns[i] = c
	}
	go w.loop(conns, first)
	return w, nil
}

func (w *writer) loop(conns []*pgx.Conn, id int64) {
	defer close(w.done)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close(context.Background())
			}
		}
	}()
	cur := 0
	pause := time.NewTimer(time.Hour)
	defer pause.Stop()
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		var err error
		if conns[cur] == nil {
			conns[cur], err = connectWriter(ctx, w.b, w.targets[cur])
		}
		if err == nil {
			_, err = conns[cur].Exec(ctx, "INSERT INTO "+writerTable+" (id) VALUES ($1)", id)
		}
		cancel()
		now := time.Now()
		w.mu.Lock()
		w.attempts++
		if err == nil {
			w.acks = append(w.acks, writeAck{Target: cur, ID: id, At: now})
			if cur == len(w.targets)-1 {
				select {
				case <-w.newWrite:
				default:
					close(w.newWrite)
				}
			}
			id++
		} else {
			w.errs++
			w.lastErr = err
			if cur < len(w.targets)-1 {
				if cur == 0 && w.refusedAt.IsZero() && len(w.acks) > 0 {
					w.refusedAt = now
				}
				cur++
			}
		}
		w.mu.Unlock()
		if err != nil && conns[cur] != nil && !sessionAlive(conns[cur], err) {
			conns[cur].Close(context.Background())
			conns[cur] = nil
		}
		pause.Reset(w.retry)
		select {
		case <-w.stop:
			return
		case <-pause.C:
		}
	}
}

// sessionAlive tells whether the connection can be used again after err:
// a server error (say, a read-only transaction) leaves the session usable.
func sessionAlive(c *pgx.Conn, err error) bool {
	var pe *pgconn.PgError
	return !c.IsClosed() && errors.As(err, &pe) && pe.Severity == "ERROR"
}

// waitNewWrite waits until the last target accepted a write.
func (w *writer) waitNewWrite(ctx context.Context, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-w.newWrite:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		w.mu.Lock()
		defer w.mu.Unlock()
		return fmt.Errorf("no write accepted by %s within %s (%d attempts, last error: %v)", w.targets[len(w.targets)-1], timeout, w.attempts, w.lastErr)
	}
}

// count is the number of acknowledged writes so far.
func (w *writer) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acks)
}

// writerResult is what the writer saw.
type writerResult struct {
	Acks      []writeAck
	RefusedAt time.Time
	Attempts  int
	Errors    int
}

// lastOn and firstOn are the last and first acknowledged writes on a target.
func (r writerResult) lastOn(target int) (writeAck, bool) {
	for i := len(r.Acks) - 1; i >= 0; i-- {
		if r.Acks[i].Target == target {
			return r.Acks[i], true
		}
	}
	return writeAck{}, false
}

func (r writerResult) firstOn(target int) (writeAck, bool) {
	for _, a := range r.Acks {
		if a.Target == target {
			return a, true
		}
	}
	return writeAck{}, false
}

// Stop ends the writer and returns what it saw.
func (w *writer) Stop() writerResult {
	select {
	case <-w.done:
	default:
		close(w.stop)
		<-w.done
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return writerResult{Acks: append([]writeAck(nil), w.acks...), RefusedAt: w.refusedAt, Attempts: w.attempts, Errors: w.errs}
}

// lostAcks counts the acknowledged ids that node does not have.
func lostAcks(ctx context.Context, b *bed.Bed, node string, acks []writeAck) (int, error) {
	if len(acks) == 0 {
		return 0, nil
	}
	lo, hi := acks[0].ID, acks[0].ID
	for _, a := range acks {
		lo, hi = min(lo, a.ID), max(hi, a.ID)
	}
	c, err := connectWriter(ctx, b, node)
	if err != nil {
		return 0, err
	}
	defer c.Close(context.Background())
	rows, err := c.Query(ctx, "SELECT id FROM "+writerTable+" WHERE id BETWEEN $1 AND $2", lo, hi)
	if err != nil {
		return 0, fmt.Errorf("while reading %s on %s: %w", writerTable, node, err)
	}
	present := map[int64]bool{}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, err
		}
		present[id] = true
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	lost := 0
	for _, a := range acks {
		if !present[a.ID] {
			lost++
		}
	}
	return lost, nil
}
