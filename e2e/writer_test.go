package e2e

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/e2e/bed"
)

// ack is one acknowledged commit: the row's id and an upper bound of the
// end of its commit record (the WAL insert position read right after the
// commit returned, in the same session).
type ack struct {
	ID  int
	LSN cluster.LSN
}

// writer inserts rows one transaction at a time into table acked on a
// node, over TCP as a password role the test creates, and records every
// commit PostgreSQL acknowledged. It stops at the first error.
type writer struct {
	mu   sync.Mutex
	acks []ack
	err  error
	stop chan struct{}
	done chan struct{}
}

const writerPassword = "writer-pw-1"

// prepareWriter creates the table and the role on the primary.
func prepareWriter(t *testing.T, b *bed.Bed, node string) {
	t.Helper()
	sql(t, b, node, "CREATE TABLE IF NOT EXISTS acked (id int PRIMARY KEY, at timestamptz DEFAULT now())")
	sql(t, b, node, "DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'writer') THEN CREATE ROLE writer LOGIN PASSWORD '"+writerPassword+"'; END IF; END$$")
	sql(t, b, node, "GRANT INSERT, SELECT ON acked TO writer")
	sql(t, b, node, "GRANT pg_monitor TO writer")
}

func writerConnect(ctx context.Context, b *bed.Bed, node string) (*pgx.Conn, error) {
	n := b.Node(node)
	return pgx.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d user=writer password=%s dbname=postgres sslmode=disable connect_timeout=3", n.Port, writerPassword))
}

// startWriter starts writing to node from id first on.
func startWriter(t *testing.T, b *bed.Bed, node string, first int) *writer {
	t.Helper()
	w := &writer{stop: make(chan struct{}), done: make(chan struct{})}
	ctx := context.Background()
	c, err := writerConnect(ctx, b, node)
	if err != nil {
		t.Fatalf("writer: %v", err)
	}
	go func() {
		defer close(w.done)
		defer c.Close(context.Background())
		for id := first; ; id++ {
			select {
			case <-w.stop:
				return
			default:
			}
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			_, err := c.Exec(cctx, "INSERT INTO acked (id) VALUES ($1)", id)
			var lsn string
			if err == nil {
				err = c.QueryRow(cctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&lsn)
			}
			cancel()
			if err != nil {
				w.mu.Lock()
				w.err = err
				w.mu.Unlock()
				return
			}
			l, _ := cluster.ParseLSN(lsn)
			w.mu.Lock()
			w.acks = append(w.acks, ack{ID: id, LSN: l})
			w.mu.Unlock()
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return w
}

// Stop ends the writer and returns what it acknowledged.
func (w *writer) Stop() []ack {
	select {
	case <-w.done:
	default:
		close(w.stop)
		<-w.done
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]ack(nil), w.acks...)
}

// Count is how many commits were acknowledged so far.
func (w *writer) Count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acks)
}

// presentIDs reads the ids in acked on node.
func presentIDs(t *testing.T, b *bed.Bed, node string) map[int]bool {
	t.Helper()
	out := sql(t, b, node, "SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM acked")
	ids := map[int]bool{}
	if out == "" {
		return ids
	}
	start := 0
	for i := 0; i <= len(out); i++ {
		if i == len(out) || out[i] == ',' {
			if v, err := strconv.Atoi(out[start:i]); err == nil {
				ids[v] = true
			}
			start = i + 1
		}
	}
	return ids
}
