package steps

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

// TestStepsThatChangeSomethingHavePlans: a step that changes something
// and has no Plan shows up in `sdr plan` only with its one-line
// description. These are the ones that must say exactly what they would do.
func TestStepsThatChangeSomethingHavePlans(t *testing.T) {
	e := &Env{}
	tests := []struct {
		name string
		wf   workflow.Workflow
		want []string // steps with a Plan
	}{
		{"start primary", Start(workflow.RolePrimary, e),
			[]string{"3_prepare_replication", "4_retain_wal", "5_open_access", "8_wait_standby", "9_finish"}},
		{"start standby", Start(workflow.RoleStandby, e),
			[]string{"3_prepare_replication", "5_stop_cluster", "6_set_guc", "7_build_standby", "8_start_cluster", "9_finish"}},
		{"stop primary", Stop(workflow.RolePrimary, e, StopOptions{}),
			[]string{"3_close_access", "4_drop_slots", "5_restore_settings", "6_drop_role"}},
		{"stop standby", Stop(workflow.RoleStandby, e, StopOptions{}),
			[]string{"3_detach", "4_drop_slots", "5_remove_files"}},
		{"failover", Failover(e), []string{"3_fence", "4_promote"}},
		{"switchover demote half", Switchover(workflow.RolePrimary, e, SwitchoverOptions{}), []string{"3_demote"}},
		{"switchover promote half", Switchover(workflow.RoleStandby, e, SwitchoverOptions{}), []string{"3_wait_primary"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, s := range tc.wf.Steps {
				if s.CheckOnly && s.Plan != nil {
					t.Errorf("%s only checks: a plan runs its Run", s.Name)
				}
				if s.Plan != nil && s.AppliesTo(tc.wf.Role) {
					got = append(got, s.Name)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("steps with a plan: %v, want %v", got, tc.want)
			}
		})
	}
}

func TestConfSetting(t *testing.T) {
	tests := []struct {
		name, line, key, value string
		ok                     bool
	}{
		{"name = value", "port = 5433", "port", "5433", true},
		{"no equals sign", "port 5433", "port", "5433", true},
		{"upper case name", "Port=5433", "port", "5433", true},
		{"quoted", "unix_socket_directories = '/run/pg dc2'", "unix_socket_directories", "/run/pg dc2", true},
		{"doubled quote", "cluster_name = 'it''s'", "cluster_name", "it's", true},
		{"backslashed quote", `cluster_name = 'it\'s'`, "cluster_name", "it's", true},
		{"comment after a plain value", "wal_keep_size = 256MB # for the bed", "wal_keep_size", "256MB", true},
		{"comment after a quoted value", "primary_slot_name = 's1' # sdr", "primary_slot_name", "s1", true},
		{"hash inside quotes", "primary_conninfo = 'host=a application_name=x#1'", "primary_conninfo", "host=a application_name=x#1", true},
		{"empty quoted value", "primary_slot_name = ''", "primary_slot_name", "", true},
		{"comment line", "# port = 1", "", "", false},
		{"blank", "   ", "", "", false},
		{"include", "include 'other.conf'", "", "", false},
		{"a name alone", "port", "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, v, ok := confSetting(tc.line)
			if k != tc.key || v != tc.value || ok != tc.ok {
				t.Fatalf("confSetting(%q) = %q, %q, %t; want %q, %q, %t", tc.line, k, v, ok, tc.key, tc.value, tc.ok)
			}
		})
	}
	if got := confAssignments("port = 1\n# port = 2\nport = 3\nhot_standby = on\n"); !reflect.DeepEqual(got, map[string]string{"port": "3", "hot_standby": "on"}) {
		t.Fatalf("the last assignment wins: %v", got)
	}
}

func TestSettingChanges(t *testing.T) {
	conf := "port = 5432\nhot_standby = on\ncluster_name = 'dc1-a'\n"
	auto := "# Do not edit\nport = 5433\nprimary_slot_name = ''\n"
	lines := []string{"port = 5433", "cluster_name = 'dc2-a'", "primary_slot_name = 'sdr_p_dc2_a'", "hot_standby = on", "recovery_target_timeline = 'latest'"}
	got := settingChanges("dc2-a", "the new copy", lines, conf, auto)
	type change struct{ name, action, old, new string }
	var have []change
	for _, it := range got {
		have = append(have, change{it.Name, it.Action, it.Old, it.New})
		if it.Node != "dc2-a" || it.Where != "the new copy" || it.Kind != "setting" || it.What == "" {
			t.Errorf("item %+v", it)
		}
	}
	want := []change{
		{"port", "keep", "5433", "5433"}, // postgresql.auto.conf wins over postgresql.conf
		{"cluster_name", "set", "dc1-a", "dc2-a"},
		{"primary_slot_name", "set", "''", "sdr_p_dc2_a"},
		{"hot_standby", "keep", "on", "on"},
		{"recovery_target_timeline", "set", notSet, "latest"},
	}
	if !reflect.DeepEqual(have, want) {
		t.Fatalf("got  %v\nwant %v", have, want)
	}
}

func TestCopyEstimate(t *testing.T) {
	last := &workflow.Transfer{Bytes: 800 << 20, Seconds: 2, Ended: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC), RunID: "r1"}
	tests := []struct {
		name      string
		bytes     int64
		last      *workflow.Transfer
		assumed   float64
		secs      float64
		basisHas  string
		basisMiss string
	}{
		{"the last copy's rate wins", 1600 << 20, last, 100 << 20, 4, "last copy of dc2-a recorded in the state file: 800.0 MiB in 2.0s (400.0 MiB/s)", "assumed"},
		{"no copy recorded: the assumed rate", 1000 << 20, nil, 100 << 20, 10, "an assumed rate of 100.0 MiB/s (sdr plan --copy-rate)", "last copy"},
		{"a recorded copy without a rate", 1000 << 20, &workflow.Transfer{Bytes: 5}, 50 << 20, 20, "assumed", "last copy"},
		{"no rate at all", 1 << 20, nil, 0, 0, "no rate", "assumed rate of"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			secs, basis := copyEstimate(tc.bytes, tc.last, "dc2-a", tc.assumed)
			if math.Abs(secs-tc.secs) > 1e-9 || !strings.Contains(basis, tc.basisHas) || strings.Contains(basis, tc.basisMiss) {
				t.Fatalf("copyEstimate = %v, %q; want %v and a basis with %q, without %q", secs, basis, tc.secs, tc.basisHas, tc.basisMiss)
			}
		})
	}
}

func TestHBAInsertItem(t *testing.T) {
	cfg := &cluster.Config{Name: "drpair", Replication: cluster.Replication{User: "dr_repl"}, Postgres: cluster.PGAdmin{Database: "postgres"}}
	lines := hbaLines(cfg, []cluster.Node{{Host: "10.0.0.2"}})
	conns := hbaConns("dr_repl", "postgres", []string{"10.0.0.2"})
	plain := "local all all peer\nhost all all 127.0.0.1/32 scram-sha-256\n"
	shadow := "local all all peer\nhost replication all 10.0.0.0/8 trust\nhost all all 0.0.0.0/0 md5\n"
	withBlock := cluster.ReplaceBlock(plain, "drpair", lines)
	oldBlock := cluster.ReplaceBlock(plain, "drpair", []string{"host replication dr_repl 10.0.0.9/32 scram-sha-256"})
	tests := []struct {
		name, content, action, where string
	}{
		{"appended when nothing shadows it", plain, "insert", "/pg/pg_hba.conf, at the end (after line 2)"},
		{"before the first line that would shadow it", shadow, "insert", "/pg/pg_hba.conf, before line 2 (host replication all 10.0.0.0/8 trust)"},
		{"already there", withBlock, "keep", "/pg/pg_hba.conf, where it is already"},
		{"rewritten in place", oldBlock, "replace", "/pg/pg_hba.conf, in place of sdr's block (# BEGIN sdr drpair, line 3)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			place, err := placeHBABlock("/pg/pg_hba.conf", tc.content, "drpair", conns, syn16)
			if err != nil {
				t.Fatal(err)
			}
			changed := cluster.InsertBlockBefore(tc.content, "drpair", lines, place.Before) != tc.content
			it := hbaInsertItem("dc1-a", "/pg/pg_hba.conf", tc.content, "drpair", lines, place, changed)
			if it.Action != tc.action || it.Where != tc.where {
				t.Fatalf("action %q where %q; want %q, %q", it.Action, it.Where, tc.action, tc.where)
			}
			want := append(append([]string{"# BEGIN sdr drpair"}, lines...), "# END sdr drpair")
			if !reflect.DeepEqual(it.Lines, want) {
				t.Fatalf("lines %q, want %q", it.Lines, want)
			}
			// The lines shown are the lines the step writes.
			if updated := cluster.InsertBlockBefore(tc.content, "drpair", lines, place.Before); !strings.Contains(updated, strings.Join(it.Lines, "\n")+"\n") {
				t.Fatalf("the file the step writes does not hold the lines shown:\n%s", updated)
			}
		})
	}
}

func TestRoleAndRetainEntries(t *testing.T) {
	tests := []struct {
		name     string
		entry    workflow.PlanEntry
		actions  []string
		noChange bool
	}{
		{"create the role", roleEntry("dr_repl", "drpair", "dc1-a", roleAction{Create: true}), []string{"create"}, false},
		{"role already right", roleEntry("dr_repl", "drpair", "dc1-a", roleAction{}), []string{"keep"}, true},
		{"reset the password", roleEntry("dr_repl", "drpair", "dc1-a", roleAction{SetPassword: true}), []string{"set"}, false},
		{"new slot, raise wal_keep_size", retainEntry("dc1-a", "sdr_s", slotObs{}, slotCreate, walKeepObs{MB: 256, Source: "configuration file", SourceFile: "/pg/postgresql.conf"},
			decideWalKeepRaise(walKeepObs{MB: 256}, nil, raisedWalKeepSizeMB)), []string{"create", "set"}, false},
		{"all in place", retainEntry("dc1-a", "sdr_s", slotObs{Exists: true, Type: "physical", WalStatus: "reserved"}, slotKeep, walKeepObs{MB: 2048},
			decideWalKeepRaise(walKeepObs{MB: 2048}, nil, raisedWalKeepSizeMB)), []string{"keep", "keep"}, true},
		{"lost slot", retainEntry("dc1-a", "sdr_s", slotObs{Exists: true, Type: "physical", WalStatus: "lost"}, slotRecreate, walKeepObs{MB: 2048},
			decideWalKeepRaise(walKeepObs{MB: 2048}, nil, raisedWalKeepSizeMB)), []string{"recreate", "keep"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, it := range tc.entry.Items {
				got = append(got, it.Action)
			}
			if !reflect.DeepEqual(got, tc.actions) || tc.entry.NoChange != tc.noChange || tc.entry.Summary == "" {
				t.Fatalf("actions %v no change %t summary %q; want %v, %t", got, tc.entry.NoChange, tc.entry.Summary, tc.actions, tc.noChange)
			}
		})
	}
	e := retainEntry("dc1-a", "sdr_s", slotObs{}, slotCreate, walKeepObs{MB: 256}, decideWalKeepRaise(walKeepObs{MB: 256}, nil, raisedWalKeepSizeMB))
	if w := e.Items[1]; w.Old != "256 MB" || w.New != "1024 MB" {
		t.Fatalf("wal_keep_size %q -> %q", w.Old, w.New)
	}
}

func TestDetachItems(t *testing.T) {
	auto := "# Do not edit\nwork_mem = '8MB'\n" + strings.Join(cluster.BlockText("drpair", []string{
		"port = 5434", "cluster_name = 'dc2-b'", "hot_standby = on", "hot_standby_feedback = on",
		"primary_conninfo = 'host=127.0.0.1 port=5433 user=dr_repl passfile=/pg.sdr/pgpass'", "primary_slot_name = 'sdr_drpair_dc2_b'",
		"recovery_target_timeline = 'latest'"}), "\n") + "\n"
	hba := "local all all peer\n" + strings.Join(cluster.BlockText("drpair", []string{"host replication dr_repl 127.0.0.1/32 scram-sha-256"}), "\n") + "\n"
	got := detachItems("dc2-b", "/pg/postgresql.auto.conf", auto, "/pg/pg_hba.conf", hba, "drpair", sdrOwn{}, true)
	var removed []string
	for _, it := range got {
		if it.Kind == "setting" && it.Action == "remove" {
			removed = append(removed, it.Name+"="+it.Old)
		}
	}
	want := []string{"hot_standby_feedback=on", "primary_conninfo=host=127.0.0.1 port=5433 user=dr_repl passfile=/pg.sdr/pgpass", "primary_slot_name=sdr_drpair_dc2_b"}
	if !reflect.DeepEqual(removed, want) {
		t.Fatalf("settings removed %q, want %q", removed, want)
	}
	last := got[len(got)-1]
	if h := got[len(got)-2]; h.Action != "remove" || h.Where != "/pg/pg_hba.conf, line 2" || len(h.Lines) != 3 {
		t.Fatalf("pg_hba.conf item %+v", h)
	}
	if last.Action != "reload" {
		t.Fatalf("a running node reloads: %+v", last)
	}
	down := detachItems("dc2-b", "/pg/postgresql.auto.conf", "", "/pg/pg_hba.conf", "local all all peer\n", "drpair", sdrOwn{}, false)
	for _, it := range down {
		if it.Action != "keep" {
			t.Fatalf("nothing of sdr's on a stopped node, yet %+v", it)
		}
	}
}

func TestSlotAndFenceItems(t *testing.T) {
	tests := []struct {
		name   string
		item   workflow.PlanItem
		action string
		has    string
	}{
		{"a slot held by the DR stream", slotDropItem("dc1-a", slotRow{Name: "s", Exists: true, Active: true, PID: 42}), "drop", "end process 42"},
		{"a free slot", slotDropItem("dc1-a", slotRow{Name: "s", Exists: true}), "drop", "drop slot s"},
		{"a running old primary", fenceItem(&cluster.Node{Name: "dc1-a", DataDir: "/pg"}, fenceStop, nil), "fence", "pg_ctl stop -m fast"},
		{"an unreachable old primary", fenceItem(&cluster.Node{Name: "dc1-a", DataDir: "/pg"}, fenceUnreach, errors.New("dial tcp: refused")), "none", "NOT fenced"},
		{"already fenced", fenceItem(&cluster.Node{Name: "dc1-a", DataDir: "/pg"}, fenceNone, nil), "keep", "already fenced"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.item.Action != tc.action || !strings.Contains(tc.item.What, tc.has) {
				t.Fatalf("item %+v; want action %q and %q in what", tc.item, tc.action, tc.has)
			}
		})
	}
}

func TestHideSecrets(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"no password", "host=a port=5432 user=r passfile=/p", "host=a port=5432 user=r passfile=/p"},
		{"plain", "host=a password=s3cret user=r", "host=a password=(hidden) user=r"},
		{"quoted with a space and a quote", `host=a password='s3 c\'ret' user=r`, "host=a password=(hidden) user=r"},
		{"spaces around =", "password = x", "password=(hidden)"},
		{"upper case", "PASSWORD=x", "password=(hidden)"},
		{"passfile is not a password", "passfile=/x/pgpass", "passfile=/x/pgpass"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := hideSecrets(tc.in); got != tc.want {
				t.Fatalf("hideSecrets(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
	items := settingChanges("n", "w", []string{"primary_conninfo = 'host=b passfile=/p'"}, "primary_conninfo = 'host=a password=topsecret'\n")
	if strings.Contains(items[0].Old, "topsecret") {
		t.Fatalf("a password reached the plan: %+v", items[0])
	}
}

// TestPlanSetGUCReadsTheServersConfiguration: a node whose configuration
// lives in config_dir (as Debian's clusters do) shows, as its settings'
// values now, those of config_dir's postgresql.conf and of its data
// directory's postgresql.auto.conf, not of a postgresql.conf lying in the
// data directory that its server does not read.
func TestPlanSetGUCReadsTheServersConfiguration(t *testing.T) {
	dir := t.TempDir()
	etc, data := filepath.Join(dir, "etc"), filepath.Join(dir, "data")
	for _, f := range []struct{ path, content string }{
		{filepath.Join(etc, "postgresql.conf"), "port = 5499\nhot_standby = off\n"},
		{filepath.Join(data, "postgresql.conf"), "port = 1111\nunix_socket_directories = '/decoy'\n"}, // not read by the server
		{filepath.Join(data, "postgresql.auto.conf"), "# Do not edit\nhot_standby = on\n"},
	} {
		if err := os.MkdirAll(filepath.Dir(f.path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f.path, []byte(f.content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e, n := readOnlyLocalEnv(t, cluster.Node{Name: "dc2-a", Host: "127.0.0.1", DataDir: data, ConfigDir: etc, PGPort: 5499,
		SocketDir: "/run/pg", BinDir: "/nonexistent"})
	// What step 2's checks learned (layoutOf, confOf) is given here.
	lay := nodeLayout{DataDir: data, Work: data + ".sdr"}
	_, _ = e.layouts.do(n.Name, func() (nodeLayout, error) { return lay, nil })
	_, _ = e.confs.do(n.Name, func() (nodeConf, error) {
		return nodeConf{ConfigFile: filepath.Join(etc, "postgresql.conf"), DataDirectory: data}, nil
	})
	items, err := e.planSetGUCNode(context.Background(), n, upstream{Node: "dc1-a", Host: "10.0.0.1", Port: 5432, Slot: "sdr_pair1_dc2_a"})
	if err != nil {
		t.Fatal(err)
	}
	old := map[string]string{}
	actions := map[string]string{}
	for _, it := range items[1:] {
		old[it.Name], actions[it.Name] = it.Old, it.Action
	}
	if items[0].Kind != "file" || items[0].Action != "create" {
		t.Errorf("the prepared file: %+v", items[0])
	}
	for name, want := range map[string]string{"port": "5499", "unix_socket_directories": notSet, "hot_standby": "on", "primary_slot_name": notSet} {
		if old[name] != want {
			t.Errorf("%s now = %q, want %q (items %+v)", name, old[name], want, items)
		}
	}
	if actions["port"] != "none" || actions["primary_slot_name"] != "set" {
		t.Errorf("actions %v: want port none (the same value) and primary_slot_name set", actions)
	}
}
