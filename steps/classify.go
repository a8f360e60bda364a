package steps

import (
	"fmt"
	"strings"

	"github.com/pgsdr/sdr/cluster"
)

// The data-directory classifier. Every stop, move and delete of a DR
// node's data directory is decided by ClassifyDataDir over what one probe
// of the node saw (DirObs) and what is known of the primary (PrimaryView).
// How the config spells a host or a path never decides safety on its own:
// identity is the machine, the device and the inode; what a directory is
// comes from pg_control, the postmaster and sdr's own marker.

// DirKind is what a data directory is, as far as a rebuild is concerned.
type DirKind string

// The kinds a data directory can be.
const (
	// DirMissing: nothing there, or an empty directory. A copy is built.
	DirMissing DirKind = "missing"
	// DirSdrCopy: a standby copy that sdr built of this primary for this
	// node of this pair. Replaceable.
	DirSdrCopy DirKind = "sdr-copy"
	// DirOtherCluster: a PostgreSQL cluster with another system identifier:
	// what the DR node held before it became part of the pair. Replaced,
	// and kept until 9_finish.
	DirOtherCluster DirKind = "other-cluster"
	// DirPrimaryNode: the data directory of a node of the primary cluster.
	// Never stopped, moved or deleted.
	DirPrimaryNode DirKind = "primary-cluster-node"
	// DirDiverged: last ran as a primary with the primary's system
	// identifier, or its timeline is ahead of the primary's: it may hold
	// writes the primary does not have. Replaced only when the operator
	// names the node, and then kept aside, never deleted.
	DirDiverged DirKind = "diverged"
	// DirFormerPrimary: the primary of an earlier timeline of this system,
	// from which the primary's timeline forked (the old primary after a
	// failover, when the roles moved). It may hold writes made after the
	// fork: it is replaced, and kept aside, never deleted.
	DirFormerPrimary DirKind = "former-primary"
	// DirFormerStandby: a standby of an earlier timeline of this system
	// that sdr did not build (an in-cluster standby of the old primary).
	// It holds nothing the old primary did not have: it is replaced.
	DirFormerStandby DirKind = "former-standby"
	// DirUnknown: sdr cannot tell what it is (not a data directory, a
	// standby of the primary that sdr did not build for this node, a
	// state pg_control leaves open). Treated like DirDiverged.
	DirUnknown DirKind = "unknown"
)

// CopyMarker is sdr's marker inside a copy it built (file markerName in
// the data directory).
type CopyMarker struct {
	Pair     string
	Node     string
	SystemID string
	CopyID   string // unique per copy
	From     string // for a cascade: the copy id of the main standby it was made from
}

// markerName is the marker file sdr writes into every copy it builds.
const markerName = "sdr_copy"

// String is the marker file's content.
func (m CopyMarker) String() string {
	return fmt.Sprintf("pair=%s\nnode=%s\nsystem_identifier=%s\ncopy=%s\nfrom=%s\n", m.Pair, m.Node, m.SystemID, m.CopyID, m.From)
}

// ParseCopyMarker reads a marker file's content; ok is false when it is
// not one.
func ParseCopyMarker(s string) (CopyMarker, bool) {
	var m CopyMarker
	for _, line := range strings.Split(s, "\n") {
		k, v, found := strings.Cut(strings.TrimSpace(line), "=")
		if !found {
			continue
		}
		switch k {
		case "pair":
			m.Pair = v
		case "node":
			m.Node = v
		case "system_identifier":
			m.SystemID = v
		case "copy":
			m.CopyID = v
		case "from":
			m.From = v
		}
	}
	return m, m.Pair != "" && m.Node != "" && m.SystemID != "" && m.CopyID != ""
}

// DirIdentity is where a data directory really is.
type DirIdentity struct {
	Node     string // the config's name for the node it was probed as
	Machine  string // machine id ("" when unknown)
	RealPath string
	Dev, Ino uint64
}

// same reports whether a and b are provably the same directory: the same
// machine, and the same device and inode (or, when the inode is unknown,
// the same real path).
func (a DirIdentity) same(b DirIdentity) bool {
	if a.Machine == "" || a.Machine != b.Machine {
		return false
	}
	if a.Ino != 0 && b.Ino != 0 {
		return a.Dev == b.Dev && a.Ino == b.Ino
	}
	return a.RealPath != "" && a.RealPath == b.RealPath
}

// DirObs is what one probe saw of a DR node's data directory.
type DirObs struct {
	Node     string
	Path     string // as configured
	Identity DirIdentity
	Exists   bool
	Empty    bool

	HasControl   bool   // global/pg_control exists
	ControlErr   string // pg_controldata failed on it
	SystemID     string // pg_controldata
	ClusterState string // "Database cluster state"
	TimeLineID   int    // "Latest checkpoint's TimeLineID"

	Running    bool // a live postmaster runs in this directory
	InRecovery bool // when Running: pg_is_in_recovery()

	Marker *CopyMarker // sdr's marker inside the directory, nil when none
	// NeverRan: a backup_label that pg_basebackup wrote and standby.signal
	// are both there. A server renames backup_label as its recovery
	// begins and removes standby.signal when it is promoted, so this is a
	// copy that no server has run in: its pg_control still shows the
	// state of the server it was copied from.
	NeverRan     bool
	LegacyMarker string // system identifier in <work>/built, written by older sdr versions

	// Upstream is, for a running standby, where its walreceiver streams from.
	Upstream *UpstreamObs
	// Files is, when Running, where that server reads its configuration
	// (asked in the same session; not used by the classifier).
	Files *nodeConf
	// History is, for a stopped former primary past timeline 1, its own
	// timeline history: the switch point where it left each earlier
	// timeline (nil when not read or unreadable).
	History map[int]cluster.LSN
	// HistoryErr says why History could not be read ("" when it was, or
	// was not asked for); a refusal that it would have decided names it.
	HistoryErr string
}

// onLineage tells whether a directory's own timeline history agrees with
// the primary's: it left every earlier timeline where the primary's
// history left it. Timeline numbers alone do not say so: a copy promoted
// apart from the primary cluster gets the next number too.
func onLineage(history, forks map[int]cluster.LSN) bool {
	if len(history) == 0 || forks == nil {
		return false
	}
	for tli, at := range history {
		if f, ok := forks[tli]; !ok || f != at {
			return false
		}
	}
	return true
}

// UpstreamObs is a running standby's pg_stat_wal_receiver.
type UpstreamObs struct {
	Host    string
	Port    int
	Slot    string
	AppName string // application_name in its conninfo
}

func (u *UpstreamObs) String() string {
	if u == nil {
		return "nothing (its walreceiver is not running)"
	}
	s := fmt.Sprintf("%s:%d", u.Host, u.Port)
	if u.AppName != "" {
		s += " as " + u.AppName
	}
	if u.Slot != "" {
		s += " through slot " + u.Slot
	}
	return s
}

// PrimaryView is what is known of the primary when a DR node is classified.
type PrimaryView struct {
	Pair string
	// AppName and SlotName give the application_name and slot sdr uses
	// for a node's stream (nil: none is sdr's).
	AppName    func(node string) string
	SlotName   func(node string) string
	SystemID   string
	TimeLineID int           // 0 when unknown
	Nodes      []DirIdentity // the primary-cluster nodes' data directories that could be probed
	// Ancestors are the timelines the primary's timeline forked from (its
	// timeline history), when known.
	Ancestors map[int]bool
	// Forks gives, for each ancestor timeline, the switch point where the
	// primary's history left it (from the same history).
	Forks map[int]cluster.LSN
}

// Verdict is the classifier's decision for one data directory.
type Verdict struct {
	Kind DirKind
	// Replace: the directory may be stopped, moved aside and replaced.
	Replace bool
	// KeepAside: when replaced, it is moved to a kept place and never
	// deleted by sdr (diverged or unknown directories named by the operator).
	KeepAside bool
	// Reason is one line for the operator, naming the node and directory.
	Reason string
	// CopyOnly: a former primary taken as such from its own timeline
	// history alone (a copy sdr built): copied again and kept aside whole,
	// never rewound, since two promotions may share a timeline's number
	// and switch point, which pg_rewind would take for one history.
	CopyOnly bool
	// Adopt: replaceable only because it runs sdr's own stream for this
	// node (it carries no sdr marker). Once stopped, nothing would show
	// that any more, so 5_stop_cluster writes sdr's marker into it before
	// stopping it.
	Adopt bool
}

// States pg_controldata reports, and what they say about the last run.
var (
	standbyStates = map[string]bool{"shut down in recovery": true, "in archive recovery": true}
	primaryStates = map[string]bool{"shut down": true, "in production": true, "shutting down": true, "in crash recovery": true}
)

// ClassifyDataDir decides what o is and whether a rebuild may replace it.
// named is true when the operator named this node on the command line
// (--replace-diverged): a diverged or unknown directory is then replaced,
// but kept aside.
func ClassifyDataDir(o DirObs, p PrimaryView, named bool) Verdict {
	where := fmt.Sprintf("DR node %s: data directory %s", o.Node, o.Path)
	if o.Identity.RealPath != "" && o.Identity.RealPath != o.Path {
		where += " (really " + o.Identity.RealPath + ")"
	}
	for _, pn := range p.Nodes {
		if o.Exists && o.Identity.same(pn) {
			return Verdict{Kind: DirPrimaryNode, Reason: fmt.Sprintf("%s is the data directory of primary-cluster node %s (same machine, same directory): "+
				"sdr never stops, moves or deletes it; check the host and data_dir of %s in the config", where, pn.Node, o.Node)}
		}
	}
	if !o.Exists || o.Empty {
		return Verdict{Kind: DirMissing, Replace: true, Reason: where + " is missing or empty: a copy is built there"}
	}
	refuse := func(kind DirKind, why string) Verdict {
		v := Verdict{Kind: kind, Reason: where + " " + why}
		if named && (!o.Running || o.InRecovery) {
			v.Replace, v.KeepAside = true, true
			v.Reason += "; named with --replace-diverged: it is moved aside and kept, never deleted"
		} else if o.Running && !o.InRecovery {
			v.Reason += "; it runs as a primary: sdr does not stop it"
		} else {
			v.Reason += "; sdr leaves it alone. If it must be replaced, rerun with --replace-diverged " + o.Node +
				" (it is then moved aside and kept, never deleted)"
		}
		return v
	}
	if !o.HasControl {
		if o.ControlErr != "" {
			return refuse(DirUnknown, "has a pg_control that pg_controldata cannot read ("+o.ControlErr+")")
		}
		return refuse(DirUnknown, "is not empty and is not a PostgreSQL data directory (no global/pg_control)")
	}
	if o.SystemID != p.SystemID {
		return Verdict{Kind: DirOtherCluster, Replace: true,
			Reason: fmt.Sprintf("%s holds another cluster (system identifier %s, the primary's is %s): it is replaced and kept until 9_finish",
				where, o.SystemID, p.SystemID)}
	}
	// The primary's system identifier from here on.
	mine := o.Marker != nil && o.Marker.Pair == p.Pair && o.Marker.Node == o.Node && o.Marker.SystemID == p.SystemID
	if o.Running && !o.InRecovery {
		if mine {
			return refuse(DirDiverged, "runs as a primary with the primary's system identifier: it was promoted and may have taken writes")
		}
		return Verdict{Kind: DirPrimaryNode, Reason: where + " runs as a primary with the primary's system identifier: " +
			"it is a primary of the primary cluster, reached under another host name; sdr never stops, moves or deletes it"}
	}
	// A copy sdr built is a former primary only when its own history shows
	// the primary's lineage (sdr's own switchover or failover promoted it):
	// a copy promoted by hand may share the timeline's number only.
	if former := p.TimeLineID > 0 && o.TimeLineID < p.TimeLineID && p.Ancestors[o.TimeLineID] && !o.Running; former && (!mine || onLineage(o.History, p.Forks)) {
		switch {
		case primaryStates[o.ClusterState] && mine:
			return Verdict{Kind: DirFormerPrimary, Replace: true, KeepAside: true, CopyOnly: true,
				Reason: fmt.Sprintf("%s is a copy sdr built that was the primary on timeline %d (its own timeline history shows the primary's "+
					"lineage), before the primary forked onto timeline %d (the roles moved): it is moved aside whole and kept, never deleted, "+
					"and a new copy is made", where, o.TimeLineID, p.TimeLineID)}
		case primaryStates[o.ClusterState]:
			return Verdict{Kind: DirFormerPrimary, Replace: true, KeepAside: true,
				Reason: fmt.Sprintf("%s was the primary on timeline %d, before the primary forked onto timeline %d (the roles moved): "+
					"it may hold writes made after the fork, which are kept, never deleted: it is rewound with pg_rewind when it can be (what it "+
					"wrote after the fork saved aside), else moved aside whole and a new copy is made (7_build_standby says which)", where, o.TimeLineID, p.TimeLineID)}
		case standbyStates[o.ClusterState]:
			return Verdict{Kind: DirFormerStandby, Replace: true,
				Reason: fmt.Sprintf("%s was a standby on timeline %d, before the primary forked onto timeline %d (the roles moved): it is replaced and kept until 9_finish",
					where, o.TimeLineID, p.TimeLineID)}
		}
	}
	if p.TimeLineID > 0 && o.TimeLineID > p.TimeLineID {
		return refuse(DirDiverged, fmt.Sprintf("is on timeline %d, ahead of the primary's timeline %d: it was promoted and may hold writes the primary does not have",
			o.TimeLineID, p.TimeLineID))
	}
	switch {
	case primaryStates[o.ClusterState]:
		// On the primary's timeline: a former primary (an older timeline)
		// is never taken for a copy, whatever files it holds.
		if mine && o.NeverRan && o.TimeLineID != p.TimeLineID {
			return refuse(DirDiverged, fmt.Sprintf("holds a copy sdr built that no server has run in (backup_label and standby.signal are there), "+
				"made on timeline %d while the primary is on timeline %d now: the primary cluster changed timeline since the copy, and sdr "+
				"replaces only a copy of the primary as it is", o.TimeLineID, p.TimeLineID))
		}
		if mine && o.NeverRan {
			return Verdict{Kind: DirSdrCopy, Replace: true, Reason: where + " is a copy sdr built that no server has run in yet (backup_label and " +
				"standby.signal are there; pg_control shows the primary's state at the copy): it can be replaced"}
		}
		if mine {
			why := fmt.Sprintf("was last a primary (pg_control: %q) with the primary's system identifier: it was promoted and may hold writes the primary does not have", o.ClusterState)
			if o.HistoryErr != "" && o.TimeLineID < p.TimeLineID {
				why += fmt.Sprintf(" (its own timeline history, which shows whether sdr's switchover or failover promoted it, could not be read: %s)", o.HistoryErr)
			}
			return refuse(DirDiverged, why)
		}
		return refuse(DirDiverged, fmt.Sprintf("was last a primary (pg_control: %q) with the primary's system identifier and sdr did not build it: it may be a stopped node of the primary cluster", o.ClusterState))
	case !standbyStates[o.ClusterState]:
		return refuse(DirUnknown, fmt.Sprintf("has the primary's system identifier and pg_control state %q, which does not tell whether it ran as a standby", o.ClusterState))
	}
	// A standby of the primary.
	switch {
	case mine:
		return Verdict{Kind: DirSdrCopy, Replace: true, Reason: where + " is a standby copy sdr built of this primary: it can be replaced"}
	case o.Marker == nil && o.LegacyMarker == p.SystemID:
		return Verdict{Kind: DirSdrCopy, Replace: true, Reason: where + " is a standby copy sdr built of this primary (marker in its work directory): it can be replaced"}
	case o.Marker != nil && o.Marker.Pair != p.Pair:
		return refuse(DirUnknown, fmt.Sprintf("is a standby copy sdr built for DR pair %s, not %s", o.Marker.Pair, p.Pair))
	case o.Marker != nil && o.Marker.Node != o.Node:
		return refuse(DirUnknown, fmt.Sprintf("is a standby copy sdr built for node %s, not %s: do two config entries name the same directory?", o.Marker.Node, o.Node))
	case o.Marker != nil:
		return refuse(DirUnknown, fmt.Sprintf("carries an sdr marker for system identifier %s, but pg_control says %s", o.Marker.SystemID, o.SystemID))
	}
	if o.Running && o.Upstream != nil && p.AppName != nil && p.SlotName != nil && o.Upstream.AppName == p.AppName(o.Node) && o.Upstream.Slot != "" && o.Upstream.Slot == p.SlotName(o.Node) {
		return Verdict{Kind: DirSdrCopy, Replace: true, Adopt: true, Reason: fmt.Sprintf("%s is a standby that streams from %s, sdr's own stream for this node: it can be replaced", where, o.Upstream)}
	}
	why := "is a standby of the primary that sdr did not build (no sdr marker)"
	if o.Running {
		why += "; it streams from " + o.Upstream.String()
	}
	return refuse(DirUnknown, why+": it may be an in-cluster standby of the primary cluster, reached under another host name")
}
