package steps

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pgsdr/sdr/cluster"
)

func TestParseLSN(t *testing.T) {
	tests := []struct {
		in      string
		want    uint64
		wantErr bool
	}{
		{"0/0", 0, false},
		{"0/B0405C8", 0xB0405C8, false},
		{"16/B374D848", 0x16_B374D848, false},
		{"FFFFFFFF/FFFFFFFF", ^uint64(0), false},
		{"", 0, true},
		{"B0405C8", 0, true},
		{"1/2/3", 0, true},
		{"x/1", 0, true},
		{"1/100000000", 0, true}, // low half wider than 32 bits
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseLSN(tc.in)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("ParseLSN(%q) = %X, %v; want %X, error %v", tc.in, got, err, tc.want, tc.wantErr)
			}
			if err == nil && formatLSN(got) != strings.ToUpper(tc.in) {
				t.Errorf("formatLSN = %s, want %s", formatLSN(got), tc.in)
			}
		})
	}
}

func TestClassifyLag(t *testing.T) {
	now := time.Date(2026, 11, 21, 6, 0, 0, 0, time.UTC)
	at := func(ago time.Duration) *time.Time { t := now.Add(-ago); return &t }
	lsn := func(v uint64) *uint64 { return &v }
	i64 := func(v int64) *int64 { return &v }
	f64 := func(v float64) *float64 { return &v }
	streaming := lagFacts{Now: now, ReceiverStatus: "streaming", ReceiverStart: at(time.Hour), LastMessage: at(200 * time.Millisecond),
		LastReplay: at(3 * time.Second), ReceiveLSN: lsn(1000), ReplayLSN: lsn(900), Primary: "dc1-a", PrimaryLSN: lsn(1500)}
	with := func(change func(f *lagFacts)) lagFacts { f := streaming; change(&f); return f }
	tests := []struct {
		name        string
		f           lagFacts
		state       LagState
		bytes, recv *int64
		seconds     *float64
		from        string
		since       *time.Time
	}{
		{"streaming, behind, received WAL waits for replay: since the last replay", streaming, LagStreaming, i64(600), i64(500), f64(3), SecondsLastReplay, at(time.Hour)},
		{"streaming, behind, nothing waits for replay: since the last message", with(func(f *lagFacts) { f.ReceiveLSN = lsn(900) }),
			LagStreaming, i64(600), i64(600), f64(0.2), SecondsLastMessage, at(time.Hour)},
		{"streaming, caught up", with(func(f *lagFacts) { f.ReceiveLSN, f.ReplayLSN, f.PrimaryLSN = lsn(1500), lsn(1500), lsn(1500) }),
			LagStreaming, i64(0), i64(0), f64(0), SecondsCaughtUp, at(time.Hour)},
		{"streaming, replayed past the primary's position as read (never below 0)", with(func(f *lagFacts) { f.ReceiveLSN, f.ReplayLSN = lsn(1600), lsn(1600) }),
			LagStreaming, i64(0), i64(0), f64(0), SecondsCaughtUp, at(time.Hour)},
		{"link frozen: still streaming, the last message is old", with(func(f *lagFacts) { f.LastMessage = at(45 * time.Second) }),
			LagStreaming, i64(600), i64(500), f64(45), SecondsLastMessage, at(time.Hour)},
		{"streaming, the primary could not be asked", with(func(f *lagFacts) { f.Primary, f.PrimaryLSN, f.ReceiveLSN = "", nil, lsn(900) }),
			LagStreaming, nil, nil, f64(0.2), SecondsLastMessage, at(time.Hour)},
		{"streaming, no message time: since the last replay", with(func(f *lagFacts) { f.LastMessage = nil }),
			LagStreaming, i64(600), i64(500), f64(3), SecondsLastReplay, at(time.Hour)},
		{"streaming, no times at all", with(func(f *lagFacts) { f.LastMessage, f.LastReplay = nil, nil }),
			LagStreaming, i64(600), i64(500), nil, "", at(time.Hour)},
		{"streaming, a message stamped after now (clock) is 0 s old", with(func(f *lagFacts) { f.LastMessage, f.ReceiveLSN = at(-time.Second), lsn(900) }),
			LagStreaming, i64(600), i64(600), f64(0), SecondsLastMessage, at(time.Hour)},
		{"streaming, the last replay is older than the link's silence but nothing waits", with(func(f *lagFacts) {
			f.ReceiveLSN, f.LastMessage, f.LastReplay = lsn(900), at(5*time.Second), at(time.Hour)
		}), LagStreaming, i64(600), i64(600), f64(5), SecondsLastMessage, at(time.Hour)},
		{"receiver waiting after the link broke: lag unknown, not 0", with(func(f *lagFacts) {
			f.ReceiverStatus, f.ReceiveLSN, f.ReplayLSN, f.PrimaryLSN, f.LastMessage = "waiting", lsn(1500), lsn(1500), lsn(1500), at(time.Minute)
		}), LagNotStreaming, nil, nil, nil, "", at(time.Minute)},
		{"no WAL receiver", with(func(f *lagFacts) { f.ReceiverStatus, f.LastMessage, f.ReceiverStart = "none", nil, nil }),
			LagNotStreaming, nil, nil, nil, "", nil},
		{"receiver starting", with(func(f *lagFacts) { f.ReceiverStatus = "starting" }),
			LagNotStreaming, nil, nil, nil, "", at(200 * time.Millisecond)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := classifyLag(tc.f)
			if l.State != tc.state {
				t.Errorf("state %s, want %s", l.State, tc.state)
			}
			eqI := func(what string, got, want *int64) {
				if (got == nil) != (want == nil) || (got != nil && *got != *want) {
					t.Errorf("%s = %s, want %s", what, showI(got), showI(want))
				}
			}
			eqI("bytes", l.Bytes, tc.bytes)
			eqI("receive_bytes", l.ReceiveBytes, tc.recv)
			if (l.Seconds == nil) != (tc.seconds == nil) || (l.Seconds != nil && abs(*l.Seconds-*tc.seconds) > 1e-9) {
				t.Errorf("seconds = %s, want %s", showF(l.Seconds), showF(tc.seconds))
			}
			if l.SecondsFrom != tc.from {
				t.Errorf("seconds_from %q, want %q", l.SecondsFrom, tc.from)
			}
			if (l.Since == nil) != (tc.since == nil) || (l.Since != nil && !l.Since.Equal(*tc.since)) {
				t.Errorf("since %v, want %v", l.Since, tc.since)
			}
			if tc.f.PrimaryLSN != nil && l.PrimaryLSN != formatLSN(*tc.f.PrimaryLSN) || l.Primary != tc.f.Primary {
				t.Errorf("primary %q at %q", l.Primary, l.PrimaryLSN)
			}
			// Unknown figures are JSON null, never 0.
			raw, _ := json.Marshal(l)
			for field, v := range map[string]bool{`"bytes":null`: tc.bytes == nil, `"seconds":null`: tc.seconds == nil} {
				if strings.Contains(string(raw), field) != v {
					t.Errorf("JSON %s: has %s = %v, want %v", raw, field, !v, v)
				}
			}
		})
	}
}

func showI(p *int64) string {
	if p == nil {
		return "null"
	}
	b, _ := json.Marshal(*p)
	return string(b)
}

func showF(p *float64) string {
	if p == nil {
		return "null"
	}
	b, _ := json.Marshal(*p)
	return string(b)
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}

func TestUpstreamName(t *testing.T) {
	nodes := []cluster.Node{
		{Name: "dc1-a", Host: "db1.dc1", PGPort: 5432, SocketDir: "/var/run/postgresql"},
		{Name: "dc1-b", Host: "db2.dc1", PGPort: 5432, SocketDir: "/var/run/postgresql"},
		{Name: "dc1-c", Host: "db2.dc1", PGPort: 5433, SocketDir: "/var/run/postgresql"}, // second instance on db2
		{Name: "dc2-a", Host: "10.2.0.1", PGPort: 5432, SocketDir: "/run/pg"},
		{Name: "dc2-b", Host: "10.2.0.2", PGPort: 5432, SocketDir: "/run/pg"},
		{Name: "lo-a", Host: "127.0.0.1", PGPort: 6001, SocketDir: "/tmp/bed/run/lo-a"},
		{Name: "lo-b", Host: "127.0.0.1", PGPort: 6002, SocketDir: "/tmp/bed/run/lo-b"},
	}
	node := func(name string) *cluster.Node {
		for i := range nodes {
			if nodes[i].Name == name {
				return &nodes[i]
			}
		}
		t.Fatalf("no node %s", name)
		return nil
	}
	addrs := map[string][]string{"db1.dc1": {"10.1.0.1"}, "db2.dc1": {"10.1.0.2"}, "db1": {"10.1.0.1"}, "10.2.0.1": {"10.2.0.1"}}
	tests := []struct {
		name   string
		self   string
		host   string
		port   int
		addrs  map[string][]string
		want   string
		wantOK bool
	}{
		{"host name as configured", "dc2-a", "db1.dc1", 5432, nil, "dc1-a", true},
		{"host name in another case", "dc2-a", "DB1.dc1", 5432, nil, "dc1-a", true},
		{"address of a configured host name, resolved", "dc2-a", "10.1.0.1", 5432, addrs, "dc1-a", true},
		{"address of a configured host name, no lookups", "dc2-a", "10.1.0.1", 5432, nil, "", false},
		{"short name resolving to the same address", "dc2-a", "db1", 5432, addrs, "dc1-a", true},
		{"cascade from the main standby by address", "dc2-b", "10.2.0.1", 5432, nil, "dc2-a", true},
		{"socket directory on the standby's machine", "dc1-b", "/var/run/postgresql", 5433, nil, "dc1-c", true},
		{"socket directory shared by several machines: the standby's own", "dc1-c", "/var/run/postgresql", 5432, nil, "dc1-b", true},
		{"socket directory of one node", "lo-b", "/tmp/bed/run/lo-a", 6001, nil, "lo-a", true},
		{"socket directory with a trailing slash", "lo-b", "/tmp/bed/run/lo-a/", 6001, nil, "lo-a", true},
		{"loopback address: a node on the same machine", "lo-b", "127.0.0.1", 6001, nil, "lo-a", true},
		{"localhost: a node on the same machine", "lo-b", "localhost", 6001, nil, "lo-a", true},
		{"wrong port", "dc2-a", "db1.dc1", 5499, nil, "", false},
		{"unknown host", "dc2-a", "db9.dc1", 5432, addrs, "", false},
		{"not itself", "dc1-a", "db1.dc1", 5432, nil, "", false},
		{"socket directory matching nodes on other machines only, ambiguous", "dc2-a", "/var/run/postgresql", 5432, nil, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := upstreamName(node(tc.self), tc.host, tc.port, nodes, tc.addrs)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("upstreamName(%s, %s:%d) = %q, %v; want %q, %v", tc.self, tc.host, tc.port, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestChainLag(t *testing.T) {
	f64 := func(v float64) *float64 { return &v }
	streaming := func(s float64, from string) *Lag {
		return &Lag{State: LagStreaming, Seconds: f64(s), SecondsFrom: from}
	}
	tests := []struct {
		name     string
		nodes    []NodeStatus
		node     string
		want     *float64
		wantFrom string
	}{
		{"cascade fresher than its upstream gets the upstream's seconds", []NodeStatus{
			{Name: "p", Role: "primary"},
			{Name: "main", Upstream: "p", Lag: streaming(40, SecondsLastMessage)},
			{Name: "casc", Upstream: "main", Lag: streaming(0.3, SecondsLastMessage)},
		}, "casc", f64(40), SecondsUpstream},
		{"cascade staler than its upstream keeps its own", []NodeStatus{
			{Name: "main", Upstream: "p", Lag: streaming(1, SecondsLastMessage)},
			{Name: "casc", Upstream: "main", Lag: streaming(9, SecondsLastReplay)},
		}, "casc", f64(9), SecondsLastReplay},
		{"upstream not streaming: the cascade's seconds are unknown", []NodeStatus{
			{Name: "main", Upstream: "", Lag: &Lag{State: LagNotStreaming}},
			{Name: "casc", Upstream: "main", Lag: streaming(10, SecondsLastMessage)},
		}, "casc", nil, SecondsUpstream},
		{"two hops", []NodeStatus{
			{Name: "main", Upstream: "p", Lag: streaming(30, SecondsLastMessage)},
			{Name: "mid", Upstream: "main", Lag: streaming(2, SecondsLastMessage)},
			{Name: "leaf", Upstream: "mid", Lag: streaming(1, SecondsLastMessage)},
		}, "leaf", f64(30), SecondsUpstream},
		{"caught up stays 0", []NodeStatus{
			{Name: "main", Upstream: "p", Lag: streaming(30, SecondsLastMessage)},
			{Name: "casc", Upstream: "main", Lag: streaming(0, SecondsCaughtUp)},
		}, "casc", f64(0), SecondsCaughtUp},
		{"upstream is not a configured standby", []NodeStatus{
			{Name: "casc", Upstream: "10.9.9.9:5432", Lag: streaming(4, SecondsLastMessage)},
		}, "casc", f64(4), SecondsLastMessage},
		{"a loop in the config does not hang", []NodeStatus{
			{Name: "a", Upstream: "b", Lag: streaming(4, SecondsLastMessage)},
			{Name: "b", Upstream: "a", Lag: streaming(6, SecondsLastMessage)},
		}, "a", f64(6), SecondsUpstream},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			chainLag(tc.nodes)
			for _, n := range tc.nodes {
				if n.Name != tc.node {
					continue
				}
				if (n.Lag.Seconds == nil) != (tc.want == nil) || (n.Lag.Seconds != nil && *n.Lag.Seconds != *tc.want) || n.Lag.SecondsFrom != tc.wantFrom {
					t.Errorf("seconds %s from %q, want %s from %q", showF(n.Lag.Seconds), n.Lag.SecondsFrom, showF(tc.want), tc.wantFrom)
				}
			}
		})
	}
}

// TestPrimaryRef: the reference is known once every primary-cluster probe
// has ended, a standby's read waits for that, and two nodes that answer
// as primaries leave none.
func TestPrimaryRef(t *testing.T) {
	r := newPrimaryRef(2)
	if !r.offer("dc1-a", nil) {
		t.Fatal("the first primary was not kept")
	}
	got := make(chan *uint64, 1)
	go func() { got <- r.positionNow(context.Background()) }()
	r.probed()
	select {
	case <-got:
		t.Fatal("a standby's read did not wait for every primary-cluster probe")
	case <-time.After(50 * time.Millisecond):
	}
	if r.offer("dc1-b", nil) {
		t.Fatal("a second primary was kept")
	}
	r.probed()
	if lsn := <-got; lsn != nil {
		t.Fatalf("position %v with two primaries, want none", *lsn)
	}
	if p := r.primary(); p != "" {
		t.Fatalf("reference %q with two primaries, want none", p)
	}
	one := newPrimaryRef(1)
	one.offer("dc1-a", nil)
	one.probed()
	if p := one.primary(); p != "dc1-a" {
		t.Fatalf("reference %q, want dc1-a", p)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if lsn := newPrimaryRef(1).positionNow(ctx); lsn != nil {
		t.Fatal("a cancelled read returned a position")
	}
	r.close()
	one.close()
}
