package steps

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgsdr/sdr/cluster"
)

// NodeStatus is what `sdr status` shows of one node, live. See docs/status.md.
type NodeStatus struct {
	Name      string `json:"name"`
	Cluster   string `json:"cluster"` // primary or standby (the side of the pair)
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
	// Role is primary or standby (in recovery), as PostgreSQL says.
	Role string `json:"role,omitempty"`
	// Upstream is the configured node a standby streams from, or the
	// sender's host:port when it is not a configured node.
	Upstream    string             `json:"upstream,omitempty"`
	WalReceiver *WalReceiverStatus `json:"wal_receiver,omitempty"`
	Replication []ReplicationRow   `json:"replication"`
}

// WalReceiverStatus is a standby's pg_stat_wal_receiver, with lag.
type WalReceiverStatus struct {
	Status      string  `json:"status"`
	SenderHost  string  `json:"sender_host"`
	SenderPort  int     `json:"sender_port"`
	SlotName    string  `json:"slot_name,omitempty"`
	ReceivedLSN string  `json:"received_lsn"`
	ReplayLSN   string  `json:"replay_lsn"`
	LagBytes    int64   `json:"lag_bytes"`   // received but not yet replayed
	LagSeconds  float64 `json:"lag_seconds"` // since the last replayed transaction, 0 when caught up
}

// ReplicationRow is one row of a node's pg_stat_replication.
type ReplicationRow struct {
	ApplicationName string  `json:"application_name"`
	ClientAddr      string  `json:"client_addr"`
	State           string  `json:"state"`
	SyncState       string  `json:"sync_state"`
	SentLSN         string  `json:"sent_lsn"`
	ReplayLSN       string  `json:"replay_lsn"`
	LagBytes        int64   `json:"lag_bytes"`   // current WAL position minus replay_lsn
	LagSeconds      float64 `json:"lag_seconds"` // replay_lag
}

const replicationSQL = `SELECT coalesce(application_name, ''), coalesce(client_addr::text, 'local'), coalesce(state, ''), coalesce(sync_state, ''),
	coalesce(sent_lsn::text, ''), coalesce(replay_lsn::text, ''),
	greatest(coalesce(pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END, replay_lsn), 0), 0)::bigint,
	coalesce(extract(epoch FROM replay_lag), 0)::float8
	FROM pg_stat_replication ORDER BY application_name`

// Probe reads the live facts of every configured node, in parallel, each
// bounded by the connect timeout plus a few seconds. Unreachable nodes are
// reported as such.
func Probe(ctx context.Context, e *Env) []NodeStatus {
	var nodes []*cluster.Node
	var sides []string
	for _, n := range e.primaryNodes() {
		nodes, sides = append(nodes, n), append(sides, "primary")
	}
	for _, n := range e.standbyNodes() {
		nodes, sides = append(nodes, n), append(sides, "standby")
	}
	out := make([]NodeStatus, len(nodes))
	_ = forEach(ctx, nodes, func(ctx context.Context, n *cluster.Node) error {
		i := indexOf(nodes, n)
		out[i] = e.probeNode(ctx, n, sides[i])
		return nil
	})
	return out
}

func (e *Env) probeNode(ctx context.Context, n *cluster.Node, side string) NodeStatus {
	s := NodeStatus{Name: n.Name, Cluster: side, Replication: []ReplicationRow{}}
	ctx, cancel := context.WithTimeout(ctx, e.Config.Timeouts.Connect.Duration+5*time.Second)
	defer cancel()
	c, err := e.admin(ctx, n)
	if err != nil {
		s.Error = err.Error()
		return s
	}
	defer c.Close(context.WithoutCancel(ctx))
	s.Reachable = true
	var w walReceiverFacts
	if err := c.QueryRow(ctx, walReceiverSQL).Scan(&w.InRecovery, &w.Status, &w.SenderHost, &w.SenderPort, &w.ReceivedLSN,
		&w.ReplayLSN, &w.LagBytes, &w.LagSeconds, &w.SlotName); err != nil {
		s.Error = err.Error()
		return s
	}
	s.Role = "primary"
	if w.InRecovery {
		s.Role = "standby"
		s.WalReceiver = &WalReceiverStatus{Status: w.Status, SenderHost: w.SenderHost, SenderPort: w.SenderPort, SlotName: w.SlotName,
			ReceivedLSN: w.ReceivedLSN, ReplayLSN: w.ReplayLSN, LagBytes: w.LagBytes, LagSeconds: w.LagSeconds}
		if w.SenderHost != "" {
			s.Upstream = e.nodeAt(w.SenderHost, w.SenderPort)
		}
	}
	rows, err := c.Query(ctx, replicationSQL)
	if err != nil {
		s.Error = err.Error()
		return s
	}
	s.Replication, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (ReplicationRow, error) {
		var x ReplicationRow
		err := r.Scan(&x.ApplicationName, &x.ClientAddr, &x.State, &x.SyncState, &x.SentLSN, &x.ReplayLSN, &x.LagBytes, &x.LagSeconds)
		return x, err
	})
	if err != nil {
		s.Error = err.Error()
	}
	if s.Replication == nil {
		s.Replication = []ReplicationRow{}
	}
	return s
}

// nodeAt names the configured node at host:port, or returns host:port.
func (e *Env) nodeAt(host string, port int) string {
	for _, n := range append(append([]cluster.Node{}, e.Config.Primary.Nodes...), e.Config.Standby.Nodes...) {
		if n.Host == host && n.PGPort == port {
			return n.Name
		}
	}
	return fmt.Sprintf("%s:%d", host, port)
}
