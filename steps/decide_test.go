package steps

import (
	"slices"
	"strings"
	"testing"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

const (
	testSysID  = "7300000000000000001"
	otherSysID = "7300000000000000002"
)

// assertErr checks err against a case's expectation: no error, or an error
// that is (or is not) permanent and names mention, when given.
func assertErr(t *testing.T, err error, wantErr, wantPermanent bool, mention string) {
	t.Helper()
	if !wantErr {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatal("expected an error, got nil")
	}
	if got := workflow.IsPermanent(err); got != wantPermanent {
		t.Errorf("IsPermanent = %v, want %v (err: %v)", got, wantPermanent, err)
	}
	if mention != "" && !strings.Contains(err.Error(), mention) {
		t.Errorf("error %q does not mention %q", err, mention)
	}
}

func TestChoosePrimary(t *testing.T) {
	standby := func(node, sysID string) pgFacts { return pgFacts{Node: node, InRecovery: true, SystemID: sysID} }
	primary := func(node, sysID string) pgFacts { return pgFacts{Node: node, SystemID: sysID} }
	tests := []struct {
		name     string
		facts    []pgFacts
		want     int
		wantErr  bool
		mentions []string
	}{
		{name: "single node primary", facts: []pgFacts{primary("dc1-a", testSysID)}, want: 0},
		{name: "one primary among standbys", facts: []pgFacts{standby("dc1-a", testSysID), primary("dc1-b", testSysID), standby("dc1-c", testSysID)}, want: 1},
		{name: "no primary", facts: []pgFacts{standby("dc1-a", testSysID), standby("dc1-b", testSysID)}, wantErr: true},
		{name: "two primaries", facts: []pgFacts{primary("dc1-a", testSysID), primary("dc1-b", testSysID)}, wantErr: true, mentions: []string{"dc1-a", "dc1-b"}},
		{name: "standby of another cluster", facts: []pgFacts{primary("dc1-a", testSysID), standby("dc1-x", otherSysID)}, wantErr: true, mentions: []string{"dc1-x"}},
		{name: "node of another cluster listed before the primary", facts: []pgFacts{standby("dc1-x", otherSysID), primary("dc1-a", testSysID)}, wantErr: true, mentions: []string{"dc1-x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := choosePrimary(tt.facts)
			if tt.wantErr {
				assertErr(t, err, true, true, "")
				for _, m := range tt.mentions {
					if !strings.Contains(err.Error(), m) {
						t.Errorf("error %q does not mention %q", err, m)
					}
				}
				if got != -1 {
					t.Errorf("index = %d on error, want -1", got)
				}
				return
			}
			assertErr(t, err, false, false, "")
			if got != tt.want {
				t.Errorf("choosePrimary = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestCheckPrimarySettings(t *testing.T) {
	healthy := pgFacts{
		Node: "dc1-a", VersionNum: 150004, WalLevel: "replica",
		MaxWalSenders: 10, UsedWalSenders: 3, MaxSlots: 10, UsedSlots: 3,
	}
	with := func(change func(f *pgFacts)) pgFacts {
		f := healthy
		change(&f)
		return f
	}
	// Each failing case changes one thing from healthy, so the error can
	// only come from that change; mention is the setting the operator must fix.
	tests := []struct {
		name       string
		facts      pgFacts
		slotExists bool
		wantErr    bool
		mention    string
	}{
		{name: "healthy", facts: healthy},
		{name: "healthy rerun with slot", facts: healthy, slotExists: true},
		{name: "wal_level logical", facts: with(func(f *pgFacts) { f.WalLevel = "logical" })},
		{name: "oldest supported version", facts: with(func(f *pgFacts) { f.VersionNum = 130000 })},
		{name: "old version", facts: with(func(f *pgFacts) { f.VersionNum = 120017 }), wantErr: true, mention: "server_version_num"},
		{name: "wal_level minimal", facts: with(func(f *pgFacts) { f.WalLevel = "minimal" }), wantErr: true, mention: "wal_level"},
		{name: "exactly two free walsenders", facts: with(func(f *pgFacts) { f.MaxWalSenders, f.UsedWalSenders = 5, 3 })},
		{name: "one free walsender", facts: with(func(f *pgFacts) { f.MaxWalSenders, f.UsedWalSenders = 5, 4 }), wantErr: true, mention: "max_wal_senders"},
		{name: "walsenders off", facts: with(func(f *pgFacts) { f.MaxWalSenders, f.UsedWalSenders = 0, 0 }), wantErr: true, mention: "max_wal_senders"},
		{name: "one free walsender with slot", facts: with(func(f *pgFacts) { f.MaxWalSenders, f.UsedWalSenders = 5, 4 }), slotExists: true, wantErr: true, mention: "max_wal_senders"},
		{name: "one free walsender, one of those in use the pair's own stream", facts: with(func(f *pgFacts) { f.MaxWalSenders, f.UsedWalSenders, f.PairWalSenders = 5, 4, 1 }),
			slotExists: true},
		{name: "no free walsender, one the pair's own stream", facts: with(func(f *pgFacts) { f.MaxWalSenders, f.UsedWalSenders, f.PairWalSenders = 5, 5, 1 }),
			slotExists: true, wantErr: true, mention: "not counting this pair's own stream"},
		{name: "exactly two free slots", facts: with(func(f *pgFacts) { f.MaxSlots, f.UsedSlots = 5, 3 })},
		{name: "one free slot", facts: with(func(f *pgFacts) { f.MaxSlots, f.UsedSlots = 5, 4 }), wantErr: true, mention: "max_replication_slots"},
		{name: "one free slot and the slot exists", facts: with(func(f *pgFacts) { f.MaxSlots, f.UsedSlots = 5, 4 }), slotExists: true},
		{name: "no free slot and the slot exists", facts: with(func(f *pgFacts) { f.MaxSlots, f.UsedSlots = 5, 5 }), slotExists: true, wantErr: true, mention: "max_replication_slots"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkPrimarySettings(tt.facts, tt.slotExists)
			assertErr(t, err, tt.wantErr, true, tt.mention)
			if err != nil && !strings.Contains(err.Error(), "dc1-a") {
				t.Errorf("error %q does not name the node", err)
			}
		})
	}

	t.Run("every problem reported at once", func(t *testing.T) {
		f := pgFacts{Node: "dc1-a", VersionNum: 120000, WalLevel: "minimal", MaxWalSenders: 1, MaxSlots: 1}
		err := checkPrimarySettings(f, false)
		for _, m := range []string{"server_version_num", "wal_level", "max_wal_senders", "max_replication_slots"} {
			assertErr(t, err, true, true, m)
		}
	})
}

func TestHbaAddress(t *testing.T) {
	tests := []struct {
		name, host, want string
	}{
		{"ipv4", "10.0.0.5", "10.0.0.5/32"},
		{"ipv6 loopback", "::1", "::1/128"},
		{"ipv6", "2001:db8::1", "2001:db8::1/128"},
		{"ipv6 not canonical", "2001:DB8:0:0:0:0:0:1", "2001:db8::1/128"},
		{"hostname", "db1.example.com", "db1.example.com"},
		{"short hostname", "localhost", "localhost"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := hbaAddress(tt.host); got != tt.want {
				t.Errorf("hbaAddress(%q) = %q, want %q", tt.host, got, tt.want)
			}
		})
	}
}

func TestHbaLines(t *testing.T) {
	cfg := &cluster.Config{
		Replication: cluster.Replication{User: "sdr_repl"},
		Postgres:    cluster.PGAdmin{Database: "postgres"},
	}
	tests := []struct {
		name string
		from []cluster.Node
		want []string
	}{
		{name: "no nodes", from: nil, want: nil},
		{
			name: "one node",
			from: []cluster.Node{{Name: "dc2-a", Host: "10.0.1.1"}},
			want: []string{
				"host    replication     sdr_repl    10.0.1.1/32    scram-sha-256",
				"host    postgres    sdr_repl    10.0.1.1/32    scram-sha-256",
			},
		},
		{
			name: "hosts deduplicated and sorted",
			from: []cluster.Node{
				{Name: "dc2-c", Host: "standby-b.example"},
				{Name: "dc2-a", Host: "10.0.1.1"},
				{Name: "dc2-b", Host: "10.0.1.1"},
				{Name: "dc2-d", Host: "fd00::7"},
				{Name: "dc2-e", Host: "standby-a.example"},
			},
			want: []string{
				"host    replication     sdr_repl    10.0.1.1/32    scram-sha-256",
				"host    postgres    sdr_repl    10.0.1.1/32    scram-sha-256",
				"host    replication     sdr_repl    fd00::7/128    scram-sha-256",
				"host    postgres    sdr_repl    fd00::7/128    scram-sha-256",
				"host    replication     sdr_repl    standby-a.example    scram-sha-256",
				"host    postgres    sdr_repl    standby-a.example    scram-sha-256",
				"host    replication     sdr_repl    standby-b.example    scram-sha-256",
				"host    postgres    sdr_repl    standby-b.example    scram-sha-256",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := hbaLines(cfg, tt.from)
			if !slices.Equal(got, tt.want) {
				t.Errorf("hbaLines =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// testPair is a DR pair with one primary-cluster node and a standby
// cluster of a main standby and one cascade.
func testPair() *cluster.Config {
	return &cluster.Config{
		Name:        "pair1",
		Replication: cluster.Replication{User: "repl"},
		Postgres:    cluster.PGAdmin{User: "postgres", Database: "postgres"},
		Primary: cluster.ClusterSpec{Nodes: []cluster.Node{
			{Name: "dc1-a", Host: "10.0.0.1", PGPort: 5432, DataDir: "/pg/data", SocketDir: "/run/postgresql"},
		}},
		Standby: cluster.ClusterSpec{Main: "dc2-a", Nodes: []cluster.Node{
			{Name: "dc2-a", Host: "10.0.1.1", PGPort: 5433, DataDir: "/pg/data", SocketDir: "/run/pg"},
			{Name: "dc2-b", Host: "10.0.1.2", PGPort: 5434, DataDir: "/pg/data", SocketDir: "/run/pg"},
		}},
	}
}

func TestStandbySettings(t *testing.T) {
	cfg := testPair()
	e := &Env{Config: cfg}
	ups := e.upstreams(&cfg.Primary.Nodes[0])
	mainNode, cascade := &cfg.Standby.Nodes[0], &cfg.Standby.Nodes[1]

	tests := []struct {
		name     string
		cfg      *cluster.Config
		node     *cluster.Node
		up       upstream
		passfile string
		want     []string
	}{
		{
			name: "main standby streams from the primary with the slot",
			cfg:  cfg, node: mainNode, up: ups["dc2-a"], passfile: "/pg/data.sdr/pgpass",
			want: []string{
				"port = 5433",
				"unix_socket_directories = '/run/pg'",
				"cluster_name = 'dc2-a'",
				"hot_standby = on",
				"hot_standby_feedback = on",
				"primary_conninfo = 'host=10.0.0.1 port=5432 user=repl passfile=/pg/data.sdr/pgpass application_name=" + cluster.AppName("pair1", "dc2-a") + " connect_timeout=10'",
				"primary_slot_name = '" + cluster.SlotName("pair1", "dc2-a") + "'",
				"recovery_target_timeline = 'latest'",
			},
		},
		{
			name: "cascade streams from the main standby through its own slot there",
			cfg:  cfg, node: cascade, up: ups["dc2-b"], passfile: "/pg/data.sdr/pgpass",
			want: []string{
				"port = 5434",
				"unix_socket_directories = '/run/pg'",
				"cluster_name = 'dc2-b'",
				"hot_standby = on",
				"hot_standby_feedback = on",
				"primary_conninfo = 'host=10.0.1.1 port=5433 user=repl passfile=/pg/data.sdr/pgpass application_name=" + cluster.AppName("pair1", "dc2-b") + " connect_timeout=10'",
				"primary_slot_name = '" + cluster.SlotName("pair1", "dc2-b") + "'",
				"recovery_target_timeline = 'latest'",
			},
		},
		{
			// Paths may hold quotes and spaces (config validation allows
			// them); postgresql.conf doubles single quotes and libpq quotes a
			// value with a space.
			name: "quotes and spaces in values are escaped",
			cfg:  cfg, node: &cluster.Node{Name: "dc2-a", PGPort: 5432, SocketDir: "/run/it's"},
			up: upstream{Node: "dc1-a", Host: "10.0.0.1", Port: 5432}, passfile: "/my dir/pgpass",
			want: []string{
				"port = 5432",
				"unix_socket_directories = '/run/it''s'",
				"cluster_name = 'dc2-a'",
				"hot_standby = on",
				"hot_standby_feedback = on",
				"primary_conninfo = 'host=10.0.0.1 port=5432 user=repl passfile=''/my dir/pgpass'' application_name=" + cluster.AppName("pair1", "dc2-a") + " connect_timeout=10'",
				"primary_slot_name = ''",
				"recovery_target_timeline = 'latest'",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := standbySettings(tt.cfg, tt.node, tt.up, tt.passfile)
			if !slices.Equal(got, tt.want) {
				t.Errorf("standbySettings =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestStandbySettingsBackslashes: PostgreSQL's configuration parser
// treats a backslash inside a quoted value as an escape (guc-file.l), and
// ALTER SYSTEM doubles backslashes as well as quotes when it writes
// postgresql.auto.conf. A data directory with a single quote in its path
// makes conninfoQuote write \' into primary_conninfo, so confQuote must
// double that backslash or PostgreSQL refuses to start ("syntax error").
func TestStandbySettingsBackslashes(t *testing.T) {
	cfg := testPair()
	n := &cluster.Node{Name: "dc2-a", PGPort: 5432, SocketDir: `/run/a\b`}
	up := upstream{Node: "dc1-a", Host: "10.0.0.1", Port: 5432}
	got := standbySettings(cfg, n, up, "/srv/o'neil/pg.sdr/pgpass")
	want := []string{
		"port = 5432",
		`unix_socket_directories = '/run/a\\b'`,
		"cluster_name = 'dc2-a'",
		"hot_standby = on",
		"hot_standby_feedback = on",
		`primary_conninfo = 'host=10.0.0.1 port=5432 user=repl passfile=''/srv/o\\''neil/pg.sdr/pgpass'' application_name=` + cluster.AppName("pair1", "dc2-a") + ` connect_timeout=10'`,
		"primary_slot_name = ''",
		"recovery_target_timeline = 'latest'",
	}
	if !slices.Equal(got, want) {
		t.Errorf("standbySettings =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestUpstreams(t *testing.T) {
	cfg := testPair()
	ups := (&Env{Config: cfg}).upstreams(&cfg.Primary.Nodes[0])
	want := map[string]upstream{
		"dc2-a": {Node: "dc1-a", Host: "10.0.0.1", Port: 5432, Slot: cluster.SlotName("pair1", "dc2-a")},
		"dc2-b": {Node: "dc2-a", Host: "10.0.1.1", Port: 5433, Slot: cluster.SlotName("pair1", "dc2-b")},
	}
	if len(ups) != len(want) {
		t.Fatalf("upstreams = %v, want %v", ups, want)
	}
	for node, w := range want {
		if ups[node] != w {
			t.Errorf("upstream of %s = %+v, want %+v", node, ups[node], w)
		}
	}
}

func TestCheckStreaming(t *testing.T) {
	up := upstream{Node: "dc1-a", Host: "10.0.0.1", Port: 5432}
	streaming := walReceiverFacts{InRecovery: true, Status: "streaming", SenderHost: "10.0.0.1", SenderPort: 5432}
	with := func(change func(w *walReceiverFacts)) walReceiverFacts {
		w := streaming
		change(&w)
		return w
	}
	tests := []struct {
		name          string
		w             walReceiverFacts
		wantErr       bool
		wantPermanent bool
	}{
		{name: "streaming from the upstream", w: streaming},
		{name: "not in recovery", w: with(func(w *walReceiverFacts) { w.InRecovery = false }), wantErr: true, wantPermanent: true},
		{name: "no wal receiver yet", w: walReceiverFacts{InRecovery: true, Status: "none"}, wantErr: true},
		{name: "wal receiver starting", w: with(func(w *walReceiverFacts) { w.Status = "starting" }), wantErr: true},
		{name: "wrong sender host", w: with(func(w *walReceiverFacts) { w.SenderHost = "10.0.0.2" }), wantErr: true},
		{name: "wrong sender port", w: with(func(w *walReceiverFacts) { w.SenderPort = 5433 }), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertErr(t, checkStreaming("dc2-a", tt.w, up), tt.wantErr, tt.wantPermanent, "dc2-a")
		})
	}
}

func TestPairSlotNames(t *testing.T) {
	cfg := testPair()
	got := pairSlotNames(cfg)
	for _, n := range []string{"dc1-a", "dc2-a", "dc2-b"} {
		if !slices.Contains(got, cluster.SlotName("pair1", n)) {
			t.Errorf("pairSlotNames = %v, misses the slot of %s", got, n)
		}
	}
	tests := []struct{ name, slot string }{
		{"another pair's slot for a node of the same name", cluster.SlotName("pair2", "dc2-a")},
		{"another pair whose name extends this one", cluster.SlotName("pair1_x", "dc2-a")},
		{"the old spelling of the slot name", "sdr_pair1_dc2_a"},
		{"an operator's slot", "sdr_manual"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if slices.Contains(got, tt.slot) {
				t.Errorf("pairSlotNames = %v holds %s", got, tt.slot)
			}
		})
	}
	if len(got) != 3 {
		t.Errorf("pairSlotNames = %v, want one per node", got)
	}
}
