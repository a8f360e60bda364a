package steps

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

// startStandbyCluster starts every standby node and waits, bounded by
// --timeout, until each is in recovery and streams from its upstream.
func (e *Env) startStandbyCluster(ctx context.Context, rc *workflow.RunContext) error {
	p, err := e.remotePrimary(ctx)
	if err != nil {
		return err
	}
	ups := e.upstreams(p.Node)
	main, cascades := e.mainStandby()
	if err := e.startNode(ctx, rc, main); err != nil {
		return err
	}
	if err := forEach(ctx, cascades, func(ctx context.Context, n *cluster.Node) error { return e.startNode(ctx, rc, n) }); err != nil {
		return err
	}
	if err := forEach(ctx, e.standbyNodes(), func(ctx context.Context, n *cluster.Node) error {
		up := ups[n.Name]
		return poll(ctx, e.Timeout, pollStream, fmt.Sprintf("%s to stream from %s", n.Name, up.Node), func(ctx context.Context) (bool, error) {
			w, err := e.walReceiver(ctx, n)
			if err != nil {
				// A server that stopped meanwhile (killed, crashed) ends
				// the wait: waiting longer cannot make it stream.
				if gone := e.serverGone(ctx, n, err); gone != nil {
					return false, endWait(gone)
				}
				return false, err
			}
			if err := checkStreaming(n.Name, w, up); err != nil {
				return false, err
			}
			rc.Log.Info("streaming", zap.String("node", n.Name), zap.String("upstream", up.Node), zap.String("received_lsn", w.ReceivedLSN))
			return true, nil
		})
	}); err != nil {
		return err
	}
	// Each node was seen streaming once; one that stopped since (killed
	// while another was waited for) must not be taken for done.
	return forEach(ctx, e.standbyNodes(), func(ctx context.Context, n *cluster.Node) error {
		w, err := e.walReceiver(ctx, n)
		if err != nil {
			if gone := e.serverGone(ctx, n, err); gone != nil {
				return gone
			}
		}
		if err == nil {
			err = checkStreaming(n.Name, w, ups[n.Name])
		}
		if err != nil {
			return fmt.Errorf("%s streamed, but no longer does when every node is checked again at the end: %w", n.Name, err)
		}
		return nil
	})
}

// serverGone returns, when n could not be asked (askErr), the error that
// says its PostgreSQL no longer runs, or nil when it still runs or that
// cannot be told (deadServer). One pg_ctl status over SSH per call.
func (e *Env) serverGone(ctx context.Context, n *cluster.Node, askErr error) error {
	lay, err := e.layoutOf(ctx, n)
	if err != nil {
		return nil
	}
	running, err := e.pgRunning(ctx, n, lay.DataDir)
	return deadServer(n.Name, lay.DataDir, startLog(n), askErr, running, err)
}

// deadServer decides whether a wait for a node that could not be asked
// (askErr) ends: only when pg_ctl status said, without an error of its
// own, that no PostgreSQL runs in dataDir. A server that runs but does not
// take sessions yet (starting up, or recovering), or a node that cannot be
// reached, is waited for. The error is not permanent: a rerun starts the
// server again.
func deadServer(node, dataDir, logHint string, askErr error, running bool, statusErr error) error {
	if askErr == nil || statusErr != nil || running {
		return nil
	}
	return fmt.Errorf("PostgreSQL no longer runs in %s on %s: it stopped while sdr waited for it to stream (see %s); "+
		"find out why, then rerun to start it again: %w", dataDir, node, logHint, askErr)
}

// walReceiverFacts is a standby node's pg_stat_wal_receiver row.
type walReceiverFacts struct {
	InRecovery  bool
	Status      string
	SenderHost  string
	SenderPort  int
	ReceivedLSN string
	ReplayLSN   string
	LagBytes    int64
	LagSeconds  float64
	SlotName    string
}

func (e *Env) walReceiver(ctx context.Context, n *cluster.Node) (walReceiverFacts, error) {
	var w walReceiverFacts
	err := e.withAdmin(ctx, n, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, walReceiverSQL).Scan(&w.InRecovery, &w.Status, &w.SenderHost, &w.SenderPort, &w.ReceivedLSN,
			&w.ReplayLSN, &w.LagBytes, &w.LagSeconds, &w.SlotName)
	})
	return w, err
}

const walReceiverSQL = `SELECT pg_is_in_recovery(),
	coalesce(w.status, 'none'), coalesce(w.sender_host, ''), coalesce(w.sender_port, 0),
	coalesce(pg_last_wal_receive_lsn()::text, ''), coalesce(pg_last_wal_replay_lsn()::text, ''),
	greatest(coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0), 0)::bigint,
	coalesce(CASE WHEN pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() THEN 0
		ELSE greatest(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) END, 0)::float8,
	coalesce(w.slot_name, '')
	FROM (SELECT 1) one LEFT JOIN pg_stat_wal_receiver w ON true`

// checkStreaming checks that a standby streams from the expected upstream.
func checkStreaming(node string, w walReceiverFacts, up upstream) error {
	switch {
	case !w.InRecovery:
		return permanent(fmt.Errorf("%s is not in recovery: it runs as a primary", node))
	case w.Status != "streaming":
		return fmt.Errorf("%s: wal receiver is %s, not streaming", node, w.Status)
	case !cluster.SameHost(w.SenderHost, cluster.ConninfoHost(up.Host)) || w.SenderPort != up.Port:
		return fmt.Errorf("%s streams from %s:%d, expected %s (%s:%d)", node, w.SenderHost, w.SenderPort, up.Node, up.Host, up.Port)
	}
	return nil
}
