package steps

import (
	"context"
	"fmt"
	"net"
	"path"
	"strconv"
	"strings"
	"sync"
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
	// SystemID is the node's system identifier (pg_control_system()).
	SystemID string `json:"system_identifier,omitempty"`
	// Timeline is the node's timeline: on a primary, the one it writes
	// WAL on now; on a standby, the timeline of the last WAL its receiver
	// received, else that of its last restartpoint. Omitted when unknown.
	Timeline *int `json:"timeline,omitempty"`
	// Upstream is the configured node a standby streams from, or the
	// sender's host:port when it is not a configured node.
	Upstream    string             `json:"upstream,omitempty"`
	WalReceiver *WalReceiverStatus `json:"wal_receiver,omitempty"`
	// Lag is how far the node is behind the primary: for a node in
	// recovery, and for an unreachable node of the standby cluster (state
	// unknown). Omitted for a primary.
	Lag         *Lag             `json:"lag,omitempty"`
	Replication []ReplicationRow `json:"replication"`
	// Slots are this pair's replication slots on the node (sdr's names for
	// the pair's nodes), with the WAL each keeps there.
	Slots []SlotStatus `json:"slots,omitempty"`
	// RunLock, on the DR side's main standby, names the run that holds the
	// DR side's run lock now (HoldSide), or is "held" when the holder is
	// not known. Empty when no run holds it, or it could not be looked at.
	RunLock string `json:"run_lock,omitempty"`
}

// SlotStatus is one of the pair's replication slots on a node.
type SlotStatus struct {
	Name   string `json:"name"`
	Active bool   `json:"active"`
	// WalStatus is pg_replication_slots.wal_status (reserved, extended,
	// unreserved, lost).
	WalStatus string `json:"wal_status,omitempty"`
	// RetainedBytes is the WAL the slot keeps on the node: its current
	// position (on a standby, the last received or replayed) minus the
	// slot's restart_lsn; null when the slot has none yet.
	RetainedBytes *int64 `json:"retained_bytes"`
}

// WalReceiverStatus is a standby's pg_stat_wal_receiver, with its replay
// backlog. How far the node is behind the primary is in NodeStatus.Lag.
type WalReceiverStatus struct {
	Status      string `json:"status"`
	SenderHost  string `json:"sender_host"`
	SenderPort  int    `json:"sender_port"`
	SlotName    string `json:"slot_name,omitempty"`
	ReceivedLSN string `json:"received_lsn"`
	ReplayLSN   string `json:"replay_lsn"`
	// LagBytes and LagSeconds are the replay backlog (received but not
	// yet replayed), kept for version 1 of the document. They say nothing
	// about the primary: with a cut link they stay 0. See Lag.
	LagBytes   int64   `json:"lag_bytes"`
	LagSeconds float64 `json:"lag_seconds"`
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

// LagState classifies a standby's link to its upstream.
type LagState string

// Lag states.
const (
	// LagStreaming: the WAL receiver streams.
	LagStreaming LagState = "streaming"
	// LagNotStreaming: no WAL receiver, or one that is not streaming
	// (starting, waiting, stopping): the node is not catching up.
	LagNotStreaming LagState = "not_streaming"
	// LagUnknown: the node could not be asked.
	LagUnknown LagState = "unknown"
)

// Where Lag.Seconds comes from.
const (
	SecondsCaughtUp    = "caught_up"    // replayed everything the primary had: 0
	SecondsLastMessage = "last_message" // since the last message from the upstream
	SecondsLastReplay  = "last_replay"  // since the last replayed transaction
	SecondsUpstream    = "upstream"     // the standby it streams from is further behind (or unknown)
)

// Lag is how far a standby is behind the primary. A figure that cannot be
// known is null, never 0: when the receiver is not streaming, or (for the
// bytes) when the primary could not be asked.
type Lag struct {
	State LagState `json:"state"`
	// Primary is the primary-cluster node whose pg_current_wal_lsn() was
	// compared, PrimaryLSN that position; empty when no single primary answered.
	Primary    string `json:"primary,omitempty"`
	PrimaryLSN string `json:"primary_lsn,omitempty"`
	// Bytes: the primary's current WAL position minus this node's replay
	// position. ReceiveBytes: minus its receive position (WAL not on this
	// node yet: what a failover now would lose).
	Bytes        *int64 `json:"bytes"`
	ReceiveBytes *int64 `json:"receive_bytes"`
	// Seconds: 0 when the node has replayed everything the primary had;
	// otherwise the seconds since its last message from its upstream, or
	// since its last replayed transaction when received WAL waits for
	// replay (whichever is larger), and at least the seconds of the standby
	// it streams from (null when that one does not stream).
	Seconds     *float64 `json:"seconds"`
	SecondsFrom string   `json:"seconds_from,omitempty"`
	// Since: while streaming, when the WAL receiver started (it has
	// streamed since then, or since shortly after); while not streaming,
	// the last message from the upstream, when the receiver still knows it.
	Since       *time.Time `json:"since"`
	LastMessage *time.Time `json:"last_message,omitempty"` // pg_stat_wal_receiver.last_msg_receipt_time
	LastReplay  *time.Time `json:"last_replay,omitempty"`  // pg_last_xact_replay_timestamp()
}

// lagFacts is what classifyLag needs, read from a standby and the primary.
type lagFacts struct {
	Now            time.Time  // the standby's clock, when its facts were read
	ReceiverStatus string     // pg_stat_wal_receiver.status; "" or "none" without a receiver
	ReceiverStart  *time.Time // the walreceiver's backend_start
	LastMessage    *time.Time
	LastReplay     *time.Time
	ReceiveLSN     *uint64
	ReplayLSN      *uint64
	Primary        string  // primary node name; "" when none answered
	PrimaryLSN     *uint64 // read after the standby's positions; nil when unknown
}

// classifyLag decides how far a standby is behind the primary. It is pure:
// every input, the clock included, is in f.
func classifyLag(f lagFacts) Lag {
	l := Lag{State: LagNotStreaming, LastMessage: f.LastMessage, LastReplay: f.LastReplay, Primary: f.Primary}
	if f.PrimaryLSN != nil {
		l.PrimaryLSN = formatLSN(*f.PrimaryLSN)
	}
	if f.ReceiverStatus != "streaming" {
		l.Since = f.LastMessage
		return l
	}
	l.State, l.Since = LagStreaming, f.ReceiverStart
	if f.PrimaryLSN != nil {
		l.Bytes = behind(*f.PrimaryLSN, f.ReplayLSN)
		l.ReceiveBytes = behind(*f.PrimaryLSN, f.ReceiveLSN)
	}
	age := func(t *time.Time) *float64 {
		s := f.Now.Sub(*t).Seconds()
		if s < 0 {
			s = 0
		}
		return &s
	}
	if l.Bytes != nil && *l.Bytes == 0 {
		zero := 0.0
		l.Seconds, l.SecondsFrom = &zero, SecondsCaughtUp
		return l
	}
	// Behind (or the primary is unknown): the larger of how long the link
	// has been silent and, when received WAL waits for replay (or no
	// message time is known), how long ago the last transaction replayed.
	if f.LastMessage != nil {
		l.Seconds, l.SecondsFrom = age(f.LastMessage), SecondsLastMessage
	}
	backlog := f.ReceiveLSN != nil && f.ReplayLSN != nil && *f.ReceiveLSN > *f.ReplayLSN
	if f.LastReplay != nil && (l.Seconds == nil || backlog) {
		if r := age(f.LastReplay); l.Seconds == nil || *r > *l.Seconds {
			l.Seconds, l.SecondsFrom = r, SecondsLastReplay
		}
	}
	return l
}

// chainLag makes each standby's seconds at least those of the standby it
// streams from (Upstream): a cascade cannot be fresher than its upstream,
// although its own link may be busy. When an upstream in the chain does
// not stream, or its seconds are unknown, so are the cascade's. Bytes are
// measured against the primary directly and stay as they are.
func chainLag(nodes []NodeStatus) {
	own := map[string]*Lag{}
	for i := range nodes {
		if l := nodes[i].Lag; l != nil {
			c := *l
			own[nodes[i].Name] = &c
		}
	}
	for i := range nodes {
		l := nodes[i].Lag
		if l == nil || l.State != LagStreaming || l.SecondsFrom == SecondsCaughtUp {
			continue
		}
		up := nodes[i].Upstream
		for hops := 0; hops < len(nodes); hops++ {
			u, ok := own[up]
			if !ok {
				break // the primary, or not a configured standby
			}
			if u.State != LagStreaming || u.Seconds == nil {
				l.Seconds, l.SecondsFrom = nil, SecondsUpstream
				break
			}
			if l.Seconds != nil && *u.Seconds > *l.Seconds {
				s := *u.Seconds
				l.Seconds, l.SecondsFrom = &s, SecondsUpstream
			}
			up = upstreamOf(nodes, up)
		}
	}
}

func upstreamOf(nodes []NodeStatus, name string) string {
	for _, n := range nodes {
		if n.Name == name {
			return n.Upstream
		}
	}
	return ""
}

// behind is primary − pos, not below 0; nil when pos is unknown.
func behind(primary uint64, pos *uint64) *int64 {
	if pos == nil {
		return nil
	}
	var d int64
	if primary > *pos {
		d = int64(primary - *pos)
	}
	return &d
}

// ParseLSN reads a pg_lsn in its text form, "16/B374D848", as a byte
// position in the WAL.
func ParseLSN(s string) (uint64, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("%q is not a WAL position (X/Y)", s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a WAL position: %w", s, err)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a WAL position: %w", s, err)
	}
	return h<<32 | l, nil
}

func formatLSN(v uint64) string { return fmt.Sprintf("%X/%X", v>>32, uint32(v)) }

// lsnPtr parses a nullable pg_lsn; nil when it is null or unreadable.
func lsnPtr(s *string) *uint64 {
	if s == nil {
		return nil
	}
	v, err := ParseLSN(*s)
	if err != nil {
		return nil
	}
	return &v
}

const replicationSQL = `SELECT coalesce(application_name, ''), coalesce(client_addr::text, 'local'), coalesce(state, ''), coalesce(sync_state, ''),
	coalesce(sent_lsn::text, ''), coalesce(replay_lsn::text, ''),
	greatest(coalesce(pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END, replay_lsn), 0), 0)::bigint,
	coalesce(extract(epoch FROM replay_lag), 0)::float8
	FROM pg_stat_replication ORDER BY application_name`

// slotsSQL lists the pair's slots on a node ($1: their names) with the WAL
// each keeps.
const slotsSQL = `SELECT slot_name::text, active, coalesce(wal_status, ''),
	pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN coalesce(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) ELSE pg_current_wal_lsn() END,
		restart_lsn)::bigint
	FROM pg_replication_slots WHERE slot_name = ANY($1) ORDER BY slot_name`

// nodeStatusSQL reads, in one round trip on the node's own clock, whether
// it is in recovery, its WAL receiver and positions, and the times lag is
// judged by.
const nodeStatusSQL = `SELECT pg_is_in_recovery(),
	coalesce(w.status, 'none'), coalesce(w.sender_host, ''), coalesce(w.sender_port, 0), coalesce(w.slot_name, ''),
	pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text,
	w.last_msg_receipt_time, pg_last_xact_replay_timestamp(),
	(SELECT backend_start FROM pg_stat_activity WHERE backend_type = 'walreceiver' ORDER BY backend_start DESC LIMIT 1),
	now(),
	CASE WHEN pg_is_in_recovery() THEN coalesce(w.received_tli, (pg_control_checkpoint()).timeline_id)
		ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END,
	(SELECT system_identifier::text FROM pg_control_system())
	FROM (SELECT 1) one LEFT JOIN pg_stat_wal_receiver w ON true`

// nodeObs is one node's answer to nodeStatusSQL.
type nodeObs struct {
	InRecovery              bool
	Status, SenderHost      string
	SenderPort              int
	SlotName                string
	ReceiveLSN, ReplayLSN   *string
	LastMessage, LastReplay *time.Time
	ReceiverStart           *time.Time
	Now                     time.Time
	Timeline                *int32
}

// Probe reads the live facts of every configured node, in parallel, each
// bounded by the connect timeout plus a few seconds. Unreachable nodes are
// reported as such. Each standby's lag is judged against the primary's
// current WAL position read right after that standby's own positions
// (primaryRef), so "behind" is never below 0, and a node that is slow to
// answer or cannot be reached does not make the others look behind by
// what the primary wrote while status waited for it.
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
	obs := make([]*nodeObs, len(nodes))
	ref := newPrimaryRef(len(e.primaryNodes()))
	defer ref.close()
	refLSN := make([]*uint64, len(nodes))
	main, _ := e.mainStandby()
	var runLock string
	_ = forEach(ctx, nodes, func(ctx context.Context, n *cluster.Node) error {
		i := indexOf(nodes, n)
		if n == main {
			// Who holds the DR side's run lock is looked at meanwhile.
			done := make(chan struct{})
			go func() { defer close(done); runLock = e.sideHolder(ctx, n) }()
			defer func() { <-done }()
		}
		var keep func(*pgx.Conn) bool
		if sides[i] == "primary" {
			keep = func(c *pgx.Conn) bool { return ref.offer(n.Name, c) }
			func() {
				defer ref.probed()
				out[i], obs[i] = e.probeNodeKeeping(ctx, n, sides[i], keep)
			}()
		} else {
			out[i], obs[i] = e.probeNodeKeeping(ctx, n, sides[i], nil)
		}
		if obs[i] != nil && obs[i].InRecovery {
			refLSN[i] = ref.positionNow(ctx)
		}
		return nil
	})
	primary := ref.primary()
	for i := range out {
		if nodes[i] == main {
			out[i].RunLock = runLock
		}
		switch {
		case obs[i] != nil && obs[i].InRecovery:
			l := classifyLag(lagFacts{Now: obs[i].Now, ReceiverStatus: obs[i].Status, ReceiverStart: obs[i].ReceiverStart,
				LastMessage: obs[i].LastMessage, LastReplay: obs[i].LastReplay,
				ReceiveLSN: lsnPtr(obs[i].ReceiveLSN), ReplayLSN: lsnPtr(obs[i].ReplayLSN), Primary: primary, PrimaryLSN: refLSN[i]})
			out[i].Lag = &l
		case obs[i] == nil && sides[i] == "standby":
			out[i].Lag = &Lag{State: LagUnknown, Primary: primary}
		}
	}
	e.nameUpstreams(ctx, out, nodes)
	chainLag(out)
	return out
}

// primaryRef is the reference of the lags: the one primary-cluster node
// that answered as a primary, whose session its probe keeps open, so that
// its current WAL position can be read again right after each standby's.
// It is known once every primary-cluster probe has ended; two nodes that
// answer as primaries leave no reference.
type primaryRef struct {
	mu      sync.Mutex
	pending int
	settled chan struct{} // closed when every primary-cluster probe has ended
	node    string
	conn    *pgx.Conn
	two     bool
}

func newPrimaryRef(primaryProbes int) *primaryRef {
	r := &primaryRef{pending: primaryProbes, settled: make(chan struct{})}
	if primaryProbes == 0 {
		close(r.settled)
	}
	return r
}

// offer is called by a primary-cluster probe whose node answered as a
// primary; true when the ref keeps its session (then it closes it).
func (r *primaryRef) offer(node string, c *pgx.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.node != "" {
		r.two = true
		return false
	}
	r.node, r.conn = node, c
	return true
}

// probed is called when a primary-cluster probe has ended.
func (r *primaryRef) probed() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pending--; r.pending == 0 {
		close(r.settled)
	}
}

// primary is the reference node, "" when there is none or two.
func (r *primaryRef) primary() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.two {
		return ""
	}
	return r.node
}

// positionNow reads the reference's current WAL position, once every
// primary-cluster probe has ended; nil when there is no single primary or
// it cannot be asked now.
func (r *primaryRef) positionNow(ctx context.Context) *uint64 {
	select {
	case <-r.settled:
	case <-ctx.Done():
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.two || r.conn == nil {
		return nil
	}
	var lsn *string
	if err := r.conn.QueryRow(ctx, `SELECT CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END`).Scan(&lsn); err != nil {
		return nil
	}
	return lsnPtr(lsn)
}

// close ends the kept session.
func (r *primaryRef) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conn != nil {
		r.conn.Close(context.Background())
		r.conn = nil
	}
}

// probeNodeKeeping reads one node's live facts. keep, when not nil, is
// offered the session of a node that answered as a primary; when it takes
// it, the session stays open (its new owner closes it).
func (e *Env) probeNodeKeeping(ctx context.Context, n *cluster.Node, side string, keep func(*pgx.Conn) bool) (NodeStatus, *nodeObs) {
	s := NodeStatus{Name: n.Name, Cluster: side, Replication: []ReplicationRow{}}
	pctx, cancel := context.WithTimeout(ctx, e.Config.Timeouts.Connect.Duration+5*time.Second)
	defer cancel()
	c, err := e.admin(pctx, n)
	if err != nil {
		s.Error = err.Error()
		return s, nil
	}
	kept := false
	defer func() {
		if !kept {
			c.Close(context.WithoutCancel(ctx))
		}
	}()
	ctx = pctx
	s.Reachable = true
	var o nodeObs
	if err := c.QueryRow(ctx, nodeStatusSQL).Scan(&o.InRecovery, &o.Status, &o.SenderHost, &o.SenderPort, &o.SlotName,
		&o.ReceiveLSN, &o.ReplayLSN, &o.LastMessage, &o.LastReplay, &o.ReceiverStart, &o.Now, &o.Timeline, &s.SystemID); err != nil {
		s.Error = fmt.Errorf("while reading the WAL receiver of %s: %w", n.Name, err).Error()
		return s, nil
	}
	if o.Timeline != nil {
		tl := int(*o.Timeline)
		s.Timeline = &tl
	}
	s.Role = "primary"
	if o.InRecovery {
		s.Role = "standby"
		s.WalReceiver = walReceiverStatus(o)
	}
	defer func() {
		if !o.InRecovery && keep != nil {
			kept = keep(c)
		}
	}()
	var names []string
	for _, cs := range []*cluster.ClusterSpec{&e.Config.Primary, &e.Config.Standby} {
		for _, pn := range cs.Nodes {
			names = append(names, cluster.SlotName(e.Config.Name, pn.Name))
		}
	}
	// pg_stat_replication and the pair's slots in one round trip.
	batch := &pgx.Batch{}
	batch.Queue(replicationSQL)
	batch.Queue(slotsSQL, names)
	br := c.SendBatch(ctx, batch)
	defer br.Close()
	rows, err := br.Query()
	if err == nil {
		s.Replication, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (ReplicationRow, error) {
			var x ReplicationRow
			err := r.Scan(&x.ApplicationName, &x.ClientAddr, &x.State, &x.SyncState, &x.SentLSN, &x.ReplayLSN, &x.LagBytes, &x.LagSeconds)
			return x, err
		})
	}
	if s.Replication == nil {
		s.Replication = []ReplicationRow{}
	}
	if err != nil {
		s.Error = err.Error()
		return s, &o
	}
	srows, err := br.Query()
	if err == nil {
		s.Slots, err = pgx.CollectRows(srows, func(r pgx.CollectableRow) (SlotStatus, error) {
			var x SlotStatus
			err := r.Scan(&x.Name, &x.Active, &x.WalStatus, &x.RetainedBytes)
			return x, err
		})
	}
	if err != nil {
		s.Error = fmt.Errorf("while reading the pair's replication slots on %s: %w", n.Name, err).Error()
	}
	return s, &o
}

// walReceiverStatus builds the wal_receiver object with its replay
// backlog: received − replayed (not below 0), and 0 s when everything
// received is replayed, else the seconds since the last replayed
// transaction.
func walReceiverStatus(o nodeObs) *WalReceiverStatus {
	w := &WalReceiverStatus{Status: o.Status, SenderHost: o.SenderHost, SenderPort: o.SenderPort, SlotName: o.SlotName}
	if o.ReceiveLSN != nil {
		w.ReceivedLSN = *o.ReceiveLSN
	}
	if o.ReplayLSN != nil {
		w.ReplayLSN = *o.ReplayLSN
	}
	recv, replay := lsnPtr(o.ReceiveLSN), lsnPtr(o.ReplayLSN)
	if recv != nil && replay != nil && *recv > *replay {
		w.LagBytes = int64(*recv - *replay)
		if o.LastReplay != nil {
			w.LagSeconds = max(o.Now.Sub(*o.LastReplay).Seconds(), 0)
		}
	}
	return w
}

// nameUpstreams sets Upstream of every standby with a WAL receiver: the
// configured node it streams from, else the sender's host:port. Host names
// are resolved (bounded by the connect timeout) only when a sender matches
// no node as written.
func (e *Env) nameUpstreams(ctx context.Context, out []NodeStatus, nodes []*cluster.Node) {
	all := append(append([]cluster.Node{}, e.Config.Primary.Nodes...), e.Config.Standby.Nodes...)
	var addrs map[string][]string
	for i := range out {
		w := out[i].WalReceiver
		if w == nil || w.SenderHost == "" {
			continue
		}
		name, ok := upstreamName(nodes[i], w.SenderHost, w.SenderPort, all, nil)
		if !ok {
			if addrs == nil {
				addrs = resolveHosts(ctx, e.Config.Timeouts.Connect.Duration, all, out)
			}
			name, ok = upstreamName(nodes[i], w.SenderHost, w.SenderPort, all, addrs)
		}
		if !ok {
			name = fmt.Sprintf("%s:%d", w.SenderHost, w.SenderPort)
		}
		out[i].Upstream = name
	}
}

// resolveHosts looks up the addresses of every configured host and every
// sender host that is not a socket directory, in parallel, bounded by timeout.
func resolveHosts(ctx context.Context, timeout time.Duration, all []cluster.Node, out []NodeStatus) map[string][]string {
	hosts := map[string]bool{}
	for _, n := range all {
		hosts[n.Host] = true
		hosts[n.ReplHost()] = true
	}
	for _, s := range out {
		if s.WalReceiver != nil && s.WalReceiver.SenderHost != "" && !strings.HasPrefix(s.WalReceiver.SenderHost, "/") {
			hosts[s.WalReceiver.SenderHost] = true
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	addrs := map[string][]string{}
	for h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := net.DefaultResolver.LookupHost(ctx, h)
			if err != nil {
				return
			}
			mu.Lock()
			addrs[h] = a
			mu.Unlock()
		}()
	}
	wg.Wait()
	return addrs
}

// upstreamName decides which configured node a standby (self) streams
// from, given pg_stat_wal_receiver's sender_host and sender_port. A
// sender_host starting with "/" is a socket directory: the upstream runs
// on self's machine, with that socket_dir and pg_port. Otherwise it is a
// host name or address, matched against each node's host as written, or
// through addrs (host -> addresses, nil: no lookups); a loopback sender
// means a node on self's machine. When several nodes fit, those on self's
// machine win; a match must be unique.
func upstreamName(self *cluster.Node, host string, port int, nodes []cluster.Node, addrs map[string][]string) (string, bool) {
	sameMachine := func(n *cluster.Node) bool { return hostsMatch(n.Host, self.Host, addrs) }
	var cands []*cluster.Node
	for i := range nodes {
		n := &nodes[i]
		if n.Name == self.Name || n.PGPort != port {
			continue
		}
		switch {
		case strings.HasPrefix(host, "/"):
			if path.Clean(n.SocketDir) == path.Clean(host) {
				cands = append(cands, n)
			}
		case isLoopback(host):
			if sameMachine(n) || isLoopback(n.Host) {
				cands = append(cands, n)
			}
		case hostsMatch(n.Host, host, addrs) || hostsMatch(n.ReplHost(), host, addrs):
			cands = append(cands, n)
		}
	}
	if len(cands) > 1 {
		var local []*cluster.Node
		for _, n := range cands {
			if sameMachine(n) {
				local = append(local, n)
			}
		}
		cands = local
	}
	if len(cands) != 1 {
		return "", false
	}
	return cands[0].Name, true
}

// hostsMatch reports whether two host spellings name the same machine: the
// same text (case-insensitive), or a shared address (an address literal is
// its own address; a name's addresses come from addrs).
func hostsMatch(a, b string, addrs map[string][]string) bool {
	if strings.EqualFold(a, b) {
		return true
	}
	of := func(h string) []string {
		if ip := net.ParseIP(h); ip != nil {
			return []string{ip.String()}
		}
		return addrs[h]
	}
	for _, x := range of(a) {
		for _, y := range of(b) {
			if net.ParseIP(x).Equal(net.ParseIP(y)) {
				return true
			}
		}
	}
	return false
}

func isLoopback(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
