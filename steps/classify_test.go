package steps

import (
	"strings"
	"testing"

	"github.com/pgsdr/sdr/cluster"
)

func TestClassifyDataDir(t *testing.T) {
	const sys, other = "7300000000000000001", "7300000000000000999"
	primaryDir := DirIdentity{Node: "dc1-b", Machine: "m1", RealPath: "/pg/dc1-b", Dev: 10, Ino: 500}
	view := PrimaryView{Pair: "pair1", SystemID: sys, TimeLineID: 1,
		AppName: func(n string) string { return "sdr_pair1_" + n }, SlotName: func(n string) string { return "sdr_pair1_" + n },
		Nodes: []DirIdentity{
			{Node: "dc1-a", Machine: "m1", RealPath: "/pg/dc1-a", Dev: 10, Ino: 400}, primaryDir,
		}}
	mark := func(node, pair, sysid string) *CopyMarker {
		return &CopyMarker{Pair: pair, Node: node, SystemID: sysid, CopyID: "run1/" + node}
	}
	base := func(mut func(o *DirObs)) DirObs {
		o := DirObs{Node: "dc2-a", Path: "/pg/dc2-a", Identity: DirIdentity{Machine: "m2", RealPath: "/pg/dc2-a", Dev: 20, Ino: 7},
			Exists: true, HasControl: true, SystemID: sys, ClusterState: "shut down in recovery", TimeLineID: 1,
			Marker: mark("dc2-a", "pair1", sys)}
		if mut != nil {
			mut(&o)
		}
		return o
	}
	cases := []struct {
		name    string
		obs     DirObs
		named   bool
		kind    DirKind
		replace bool
		aside   bool
		reason  string // a part the reason must contain
	}{
		{"missing directory", base(func(o *DirObs) { o.Exists, o.HasControl = false, false }), false, DirMissing, true, false, "missing"},
		{"empty directory", base(func(o *DirObs) { o.Empty, o.HasControl = true, false }), false, DirMissing, true, false, "empty"},
		{"sdr copy, stopped standby", base(nil), false, DirSdrCopy, true, false, "sdr built"},
		{"sdr copy, running standby", base(func(o *DirObs) { o.Running, o.InRecovery, o.ClusterState = true, true, "in archive recovery" }), false, DirSdrCopy, true, false, ""},
		{"sdr copy, crashed standby (in archive recovery)", base(func(o *DirObs) { o.ClusterState = "in archive recovery" }), false, DirSdrCopy, true, false, ""},
		{"sdr copy by older sdr (work-dir marker)", base(func(o *DirObs) { o.Marker, o.LegacyMarker = nil, sys }), false, DirSdrCopy, true, false, "work directory"},
		{"other cluster, running primary (first start)", base(func(o *DirObs) {
			o.SystemID, o.Marker, o.Running, o.ClusterState = other, nil, true, "in production"
		}), false, DirOtherCluster, true, false, other},
		{"other cluster, stopped standby", base(func(o *DirObs) { o.SystemID, o.Marker = other, nil }), false, DirOtherCluster, true, false, "kept until 9_finish"},
		{"in-cluster standby of the primary under another host name (same inode)", base(func(o *DirObs) {
			o.Identity = DirIdentity{Machine: "m1", RealPath: "/pg/dc1-b", Dev: 10, Ino: 500}
			o.Marker, o.Running, o.InRecovery = nil, true, true
		}), true, DirPrimaryNode, false, false, "primary-cluster node dc1-b"},
		{"stopped primary-cluster node under another path spelling (same inode)", base(func(o *DirObs) {
			o.Path = "/pg/./dc1-b"
			o.Identity = DirIdentity{Machine: "m1", RealPath: "/pg/dc1-b", Dev: 10, Ino: 500}
			o.ClusterState, o.Marker = "shut down", nil
		}), true, DirPrimaryNode, false, false, "never stops, moves or deletes"},
		{"same path on another machine is not the same directory", base(func(o *DirObs) {
			o.Identity = DirIdentity{Machine: "m2", RealPath: "/pg/dc1-b", Dev: 10, Ino: 500}
		}), false, DirSdrCopy, true, false, ""},
		{"unknown machine never proves identity", base(func(o *DirObs) {
			o.Identity = DirIdentity{RealPath: "/pg/dc1-b", Dev: 10, Ino: 500}
		}), false, DirSdrCopy, true, false, ""},
		{"running primary with the primary's system identifier, no marker", base(func(o *DirObs) {
			o.Marker, o.Running, o.InRecovery, o.ClusterState = nil, true, false, "in production"
		}), true, DirPrimaryNode, false, false, "another host name"},
		{"running promoted sdr copy", base(func(o *DirObs) { o.Running, o.InRecovery, o.ClusterState = true, false, "in production" }), true, DirDiverged, false, false, "runs as a primary"},
		{"promoted by hand, written to, stopped (shut down, timeline 2)", base(func(o *DirObs) { o.ClusterState, o.TimeLineID = "shut down", 2 }), false, DirDiverged, false, false, "--replace-diverged dc2-a"},
		{"promoted by hand, named on the command line", base(func(o *DirObs) { o.ClusterState, o.TimeLineID = "shut down", 2 }), true, DirDiverged, true, true, "kept, never deleted"},
		{"promoted, timeline ahead, stopped as a standby", base(func(o *DirObs) { o.TimeLineID = 3 }), false, DirDiverged, false, false, "timeline 3"},
		{"promoted on the primary's timeline, shut down", base(func(o *DirObs) { o.ClusterState = "shut down" }), false, DirDiverged, false, false, "last a primary"},
		{"crashed as a primary (in production, not running)", base(func(o *DirObs) { o.ClusterState = "in production" }), false, DirDiverged, false, false, "in production"},
		{"sdr's copy that no server ran in (backup_label and standby.signal; pg_control of the primary)", base(func(o *DirObs) {
			o.ClusterState, o.NeverRan = "in production", true
		}), false, DirSdrCopy, true, false, "no server has run in"},
		{"the same without sdr's marker", base(func(o *DirObs) { o.ClusterState, o.NeverRan, o.Marker = "in production", true, nil }), false, DirDiverged, false, false, "sdr did not build it"},
		{"the same on another timeline than the primary's now", base(func(o *DirObs) {
			o.ClusterState, o.NeverRan, o.TimeLineID = "in production", true, 0
		}), false, DirDiverged, false, false, "made on timeline 0 while the primary is on timeline 1"},
		{"the same running as a primary", base(func(o *DirObs) {
			o.ClusterState, o.NeverRan, o.Running, o.InRecovery = "in production", true, true, false
		}), false, DirDiverged, false, false, "runs as a primary"},
		{"killed during shutdown as a primary (shutting down)", base(func(o *DirObs) { o.ClusterState = "shutting down" }), false, DirDiverged, false, false, "shutting down"},
		{"crash recovery as a primary (in crash recovery)", base(func(o *DirObs) { o.ClusterState = "in crash recovery" }), false, DirDiverged, false, false, "in crash recovery"},
		{"starting up: cannot tell", base(func(o *DirObs) { o.ClusterState = "starting up" }), false, DirUnknown, false, false, "starting up"},
		{"starting up, named", base(func(o *DirObs) { o.ClusterState = "starting up" }), true, DirUnknown, true, true, ""},
		{"stopped primary-cluster-like dir without marker", base(func(o *DirObs) { o.ClusterState, o.Marker = "shut down", nil }), false, DirDiverged, false, false, "sdr did not build it"},
		{"standby of the primary that sdr did not build", base(func(o *DirObs) { o.Marker = nil }), false, DirUnknown, false, false, "no sdr marker"},
		{"running standby of the primary that sdr did not build, named", base(func(o *DirObs) {
			o.Marker, o.Running, o.InRecovery = nil, true, true
		}), true, DirUnknown, true, true, ""},
		{"running standby on sdr's own stream, no marker", base(func(o *DirObs) {
			o.Marker, o.Running, o.InRecovery = nil, true, true
			o.Upstream = &UpstreamObs{Host: "10.0.1.1", Port: 5432, Slot: "sdr_pair1_dc2-a", AppName: "sdr_pair1_dc2-a"}
		}), false, DirSdrCopy, true, false, "sdr's own stream"},
		{"running standby on another stream, no marker", base(func(o *DirObs) {
			o.Marker, o.Running, o.InRecovery = nil, true, true
			o.Upstream = &UpstreamObs{Host: "/run/pg", Port: 5432, AppName: "dc1-b"}
		}), false, DirUnknown, false, false, "streams from /run/pg:5432 as dc1-b"},
		{"copy of another pair", base(func(o *DirObs) { o.Marker = mark("dc2-a", "pair2", sys) }), false, DirUnknown, false, false, "DR pair pair2"},
		{"copy built for another node", base(func(o *DirObs) { o.Marker = mark("dc2-b", "pair1", sys) }), false, DirUnknown, false, false, "built for node dc2-b"},
		{"marker of another system identifier", base(func(o *DirObs) { o.Marker = mark("dc2-a", "pair1", other) }), false, DirUnknown, false, false, "pg_control says"},
		{"not a data directory", base(func(o *DirObs) { o.HasControl, o.Marker = false, nil }), false, DirUnknown, false, false, "not a PostgreSQL data directory"},
		{"unreadable pg_control", base(func(o *DirObs) { o.HasControl, o.ControlErr = false, "invalid CRC" }), false, DirUnknown, false, false, "invalid CRC"},
		{"symlinked data_dir is named with its real path", base(func(o *DirObs) { o.Path = "/srv/link" }), false, DirSdrCopy, true, false, "really /pg/dc2-a"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := ClassifyDataDir(c.obs, view, c.named)
			if v.Kind != c.kind || v.Replace != c.replace || v.KeepAside != c.aside {
				t.Fatalf("got kind %s replace %v aside %v (%s), want %s %v %v", v.Kind, v.Replace, v.KeepAside, v.Reason, c.kind, c.replace, c.aside)
			}
			if !strings.Contains(v.Reason, c.obs.Node) || !strings.Contains(v.Reason, c.reason) {
				t.Errorf("reason %q should name the node and contain %q", v.Reason, c.reason)
			}
			// Only a directory replaceable because of its running stream is
			// adopted (marked before 5_stop_cluster stops it).
			if want := strings.Contains(c.name, "sdr's own stream, no marker"); v.Adopt != want {
				t.Errorf("Adopt = %v, want %v", v.Adopt, want)
			}
		})
	}
}

func TestCopyMarkerRoundTrip(t *testing.T) {
	m := CopyMarker{Pair: "p", Node: "dc2-b", SystemID: "123", CopyID: "r/dc2-b", From: "r/dc2-a"}
	got, ok := ParseCopyMarker(m.String())
	if !ok || got != m {
		t.Fatalf("got %+v %v, want %+v", got, ok, m)
	}
	if _, ok := ParseCopyMarker("pair=p\nnode=x\n"); ok {
		t.Error("a marker without system identifier and copy id must not parse")
	}
}

// TestClassifyAfterRolesMoved: the primary forked onto timeline 2 from
// timeline 1 (a failover); the old cluster's directories are re-protected.
func TestClassifyAfterRolesMoved(t *testing.T) {
	const sys = "7300000000000000001"
	view := PrimaryView{Pair: "pair1", SystemID: sys, TimeLineID: 2, Ancestors: map[int]bool{1: true}}
	base := func(mut func(o *DirObs)) DirObs {
		o := DirObs{Node: "dc1-a", Path: "/pg/dc1-a", Identity: DirIdentity{Machine: "m1", RealPath: "/pg/dc1-a", Dev: 1, Ino: 2},
			Exists: true, HasControl: true, SystemID: sys, ClusterState: "in production", TimeLineID: 1}
		mut(&o)
		return o
	}
	cases := []struct {
		name    string
		obs     DirObs
		kind    DirKind
		replace bool
		aside   bool
	}{
		{"killed old primary", base(func(o *DirObs) {}), DirFormerPrimary, true, true},
		{"fenced old primary, shut down", base(func(o *DirObs) { o.ClusterState = "shut down" }), DirFormerPrimary, true, true},
		{"old in-cluster standby", base(func(o *DirObs) { o.ClusterState = "shut down in recovery" }), DirFormerStandby, true, false},
		{"a running old primary is never replaced", base(func(o *DirObs) { o.Running = true }), DirPrimaryNode, false, false},
		{"a primary of a timeline that is not an ancestor is diverged", base(func(o *DirObs) { o.TimeLineID = 3 }), DirDiverged, false, false},
		{"another system", base(func(o *DirObs) { o.SystemID = "9" }), DirOtherCluster, true, false},
	}
	// A DR copy sdr built, promoted by sdr's switchover onto timeline 2,
	// then left behind by a failover onto timeline 3: its own history
	// shows the primary's lineage. One promoted by hand onto a timeline 2
	// of its own forked elsewhere does not.
	view3 := PrimaryView{Pair: "pair1", SystemID: sys, TimeLineID: 3, Ancestors: map[int]bool{1: true, 2: true},
		Forks: map[int]cluster.LSN{1: 0x3000000, 2: 0x5000000}}
	sdrCopy := func(mut func(o *DirObs)) DirObs {
		return base(func(o *DirObs) {
			o.Node, o.TimeLineID = "dc2-a", 2
			o.Marker = &CopyMarker{Pair: "pair1", Node: "dc2-a", SystemID: sys, CopyID: "r1/dc2-a"}
			o.History = map[int]cluster.LSN{1: 0x3000000}
			mut(o)
		})
	}
	lineage := []struct {
		name    string
		obs     DirObs
		kind    DirKind
		replace bool
		aside   bool
	}{
		{"sdr's copy promoted by sdr, on the primary's lineage", sdrCopy(func(o *DirObs) {}), DirFormerPrimary, true, true},
		{"sdr's copy promoted apart (forked elsewhere)", sdrCopy(func(o *DirObs) { o.History = map[int]cluster.LSN{1: 0x3800000} }), DirDiverged, false, false},
		{"sdr's copy whose history cannot be read", sdrCopy(func(o *DirObs) {
			o.History, o.HistoryErr = nil, "while reading /pg/dc2-a/pg_wal/00000002.history on dc2-a: no such file"
		}), DirDiverged, false, false},
		{"sdr's copy whose history names a timeline the primary's does not", sdrCopy(func(o *DirObs) {
			o.History = map[int]cluster.LSN{1: 0x3000000, 7: 0x4000000}
		}), DirDiverged, false, false},
	}
	for _, c := range lineage {
		t.Run(c.name, func(t *testing.T) {
			v := ClassifyDataDir(c.obs, view3, false)
			if v.Kind != c.kind || v.Replace != c.replace || v.KeepAside != c.aside {
				t.Fatalf("got %s replace %v aside %v (%s)", v.Kind, v.Replace, v.KeepAside, v.Reason)
			}
			if v.Kind == DirFormerPrimary && !v.CopyOnly {
				t.Fatalf("a former primary known from its own history only must be copied, never rewound: %+v", v)
			}
			if c.obs.HistoryErr != "" && !strings.Contains(v.Reason, c.obs.HistoryErr) {
				t.Errorf("the refusal does not say why the history could not be read: %s", v.Reason)
			}
		})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := ClassifyDataDir(c.obs, view, false)
			if v.Kind != c.kind || v.Replace != c.replace || v.KeepAside != c.aside {
				t.Fatalf("got %s replace %v aside %v (%s)", v.Kind, v.Replace, v.KeepAside, v.Reason)
			}
		})
	}
}

// TestNeverRanFromProbe: a copy no server has run in has pg_basebackup's
// backup_label and standby.signal; an exclusive backup's label (the
// operator's, PostgreSQL 13/14) or a missing standby.signal is not one.
func TestNeverRanFromProbe(t *testing.T) {
	n := &cluster.Node{Name: "dc2-a", DataDir: "/pg/dc2-a"}
	lay := nodeLayout{DataDir: "/pg/dc2-a", Work: "/pg/dc2-a.sdr"}
	basebackup := "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\n" +
		"BACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2026-11-22 05:30:39 UTC\nLABEL: pg_basebackup base backup\nSTART TIMELINE: 1\n"
	exclusive := strings.Replace(basebackup, "pg_basebackup base backup", "nightly", 1)
	for _, c := range []struct {
		name    string
		label   string // "" for none
		standby bool
		want    bool
	}{
		{"pg_basebackup's copy with standby.signal", basebackup, true, true},
		{"without standby.signal", basebackup, false, false},
		{"an exclusive backup's label", exclusive, true, false},
		{"no backup_label", "", true, false},
	} {
		pr := cluster.DataDirProbe{StandbySignal: c.standby, Files: map[string][]byte{}}
		if c.label != "" {
			pr.Files["backup_label"] = []byte(c.label)
		}
		if got := dirObsFromProbe(n, pr, lay).NeverRan; got != c.want {
			t.Errorf("%s: NeverRan %v, want %v", c.name, got, c.want)
		}
	}
}
