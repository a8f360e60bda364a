package steps

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/pgsdr/sdr/cluster"
)

// Re-protecting a former primary: rewind it with pg_rewind, or copy it
// again. The decisions here are pure; s7_rewind.go acts on them.

// rejoinMethod is how a DR node's data directory becomes a standby of the
// primary in 7_build_standby.
type rejoinMethod string

const (
	rejoinCopy   rejoinMethod = "copy"   // pg_basebackup into <work>/new, swapped in
	rejoinRewind rejoinMethod = "rewind" // pg_rewind in place, from the primary
	// rejoinCopyKeep: a copy after a pg_rewind that did not finish; the
	// directory it left is moved aside and kept whatever it looks like now.
	rejoinCopyKeep rejoinMethod = "copy-keep"
)

// methodPart is the phase-record key that holds the method chosen for a node.
func methodPart(node string) string { return node + "/method" }

// The phases of the rewind path, recorded like the copy path's (saved and
// configured are shared with it).
const (
	phaseKept      = "kept"      // what the former primary wrote after the fork is kept in <work>/diverged-<id>
	phaseRewinding = "rewinding" // pg_rewind was started; the data directory is being changed in place
	phaseRewound   = "rewound"   // pg_rewind finished
)

// minRewindVersion is the first major version whose pg_rewind runs crash
// recovery on a target that was not shut down cleanly (a killed primary).
const minRewindVersion = 13

// configFileRewindVersion is the first major version whose pg_rewind
// takes --config-file, needed when the configuration is not in the data
// directory and the target must go through crash recovery first.
const configFileRewindVersion = 15

// rejoinObs is what decides between a rewind and a copy for one node.
type rejoinObs struct {
	Node     string
	Kind     DirKind // the classifier's verdict on its data directory
	IsMain   bool    // the main standby (streams from the primary itself)
	NoRewind bool    // --no-rewind
	// Recorded is the method this workflow recorded for the node, and
	// Phase its recorded phase.
	Recorded rejoinMethod
	Phase    string

	VersionNum     int // the primary's server_version_num
	Control        cluster.ControlData
	SeparateConfig bool // config_dir is outside the data directory
	Tablespaces    int  // the primary's tablespaces outside the data directory
	SocketPath     string

	// ForkKnown: the primary's timeline history says where it left the
	// node's timeline; WALFromFork: the node's pg_wal holds every segment
	// of its timeline from that point on (walToKeep).
	ForkKnown   bool
	WALFromFork bool

	// SourceProblem says why sdr cannot run pg_rewind against the primary
	// (no SSH to it, no admin connection, full_page_writes off, not a
	// superuser); "" when it can.
	SourceProblem string
}

// decideRejoin chooses how a node rejoins: a former primary is rewound
// when everything pg_rewind needs is there, otherwise copied; anything
// else is copied. reason is one line for the operator ("" for a plain copy
// of a directory that was not a primary).
func decideRejoin(o rejoinObs) (m rejoinMethod, reason string) {
	switch o.Recorded {
	case rejoinCopy, rejoinCopyKeep:
		return o.Recorded, ""
	case rejoinRewind:
		switch o.Phase {
		case phaseRewinding:
			return rejoinCopyKeep, fmt.Sprintf("%s: an earlier pg_rewind of its data directory did not finish (sdr was killed or it failed); "+
				"PostgreSQL's documentation says the directory is then not in a state that can be recovered, so a new copy is made "+
				"and the directory is moved aside and kept", o.Node)
		case phaseRewound, phaseConfigured, phaseStarted:
			return rejoinRewind, ""
		}
	}
	if o.Kind != DirFormerPrimary {
		return rejoinCopy, ""
	}
	copyBecause := func(why string) (rejoinMethod, string) {
		return rejoinCopy, fmt.Sprintf("%s: the former primary is not rewound but copied again (its whole data directory is moved aside and kept): %s", o.Node, why)
	}
	cd := o.Control
	major := o.VersionNum / 10000
	unclean := cd.State != cluster.StateShutDown && cd.State != cluster.StateShutDownInRecovery
	switch {
	case o.NoRewind:
		return copyBecause("--no-rewind")
	case !o.IsMain:
		return copyBecause("only the main standby is rewound, from the primary; the other nodes are copied from the main standby")
	case !cd.WalLogHints && cd.DataChecksums == 0:
		return copyBecause("its pg_control shows wal_log_hints off and no data checksums, which pg_rewind needs " +
			"(set wal_log_hints = on, or initdb --data-checksums, on every node for next time)")
	case major < minRewindVersion:
		return copyBecause(fmt.Sprintf("PostgreSQL %d: sdr rewinds from PostgreSQL %d on", major, minRewindVersion))
	case unclean && o.SeparateConfig && major < configFileRewindVersion:
		return copyBecause(fmt.Sprintf("it was not shut down cleanly (pg_control: %q) and its configuration is outside the data directory: "+
			"pg_rewind of PostgreSQL %d cannot run its crash recovery (--config-file comes with PostgreSQL %d)", cd.State, major, configFileRewindVersion))
	case o.Tablespaces > 0:
		return copyBecause("the primary has tablespaces outside the data directory, which DR nodes keep in locations of their own")
	case len(o.SocketPath) > cluster.MaxSocketPath:
		return copyBecause(fmt.Sprintf("the socket through which pg_rewind reaches the primary, %s, would be longer than a Unix socket path may be", o.SocketPath))
	case !o.ForkKnown:
		return copyBecause("the primary's timeline history does not say where it left the former primary's timeline")
	case !o.WALFromFork:
		return copyBecause("its pg_wal no longer holds all of its WAL from the fork on, so keeping only that WAL would not keep everything it wrote after the fork")
	case o.SourceProblem != "":
		return copyBecause("pg_rewind cannot reach the primary: " + o.SourceProblem)
	case o.Recorded == rejoinRewind && o.Phase == phaseKept:
		return rejoinRewind, fmt.Sprintf("%s: the rewind of the former primary resumes: its WAL from the fork on is kept", o.Node)
	}
	return rejoinRewind, fmt.Sprintf("%s: the former primary is rewound with pg_rewind from the primary (wal_log_hints %s, data checksums %s); "+
		"what it wrote after the fork (its WAL and pg_control) is kept first", o.Node, onOff(cd.WalLogHints), onOff(cd.DataChecksums != 0))
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// rewindObs is what the rewind path knows of a node before acting: the
// recorded phase and rewind id, and one probe of the node.
type rewindObs struct {
	Node     string
	Phase    string // recorded phase ("" when the node has not started in this workflow)
	CopyID   string // recorded id of this rewind ("" when none)
	Kind     DirKind
	SameSys  bool   // the data directory holds the primary's system identifier
	DataCopy string // copy id in the data directory's sdr marker
	Running  bool
	InRecov  bool
	KeptDone bool // <work>/diverged-<id> exists (it is made under another name and renamed when complete)
}

type rewindAction string

const (
	rwDone      rewindAction = "done"      // the rewound directory runs as a standby
	rwStart     rewindAction = "start"     // configured: start it
	rwConfigure rewindAction = "configure" // rewound: configure it as a standby, then start
	rwRewind    rewindAction = "rewind"    // kept: run pg_rewind, then the rest
	rwKeep      rewindAction = "keep"      // saved: keep the WAL after the fork, then the rest
	rwSave      rewindAction = "save"      // save the node's own files, then the rest
)

// planRewind decides where a node's rewind resumes. A cut-short pg_rewind
// is not resumed here (decideRejoin turns it into a copy).
func planRewind(o rewindObs) (rewindAction, error) {
	if o.Running && !o.InRecov {
		return "", permanent(fmt.Errorf("%s: PostgreSQL runs as a primary in the data directory that sdr is rewinding; sdr does not touch it", o.Node))
	}
	ours := o.CopyID != "" && o.DataCopy == o.CopyID
	switch o.Phase {
	case phaseStarted, phaseConfigured:
		if !ours || !o.SameSys {
			return "", permanent(fmt.Errorf("%s: the data directory is not the one this run rewound and configured (its sdr marker says copy %q, "+
				"this run's is %q): something changed it; rerun with --restart", o.Node, o.DataCopy, o.CopyID))
		}
		if o.Running {
			return rwDone, nil
		}
		return rwStart, nil
	case phaseRewound:
		if !o.SameSys {
			return "", permanent(fmt.Errorf("%s: the data directory no longer holds the primary's system identifier after pg_rewind: something replaced it; rerun with --restart", o.Node))
		}
		if o.Running {
			return "", fmt.Errorf("%s: PostgreSQL runs in the rewound data directory before sdr configured it as a standby (something started it): "+
				"stop it and keep it stopped, then rerun", o.Node)
		}
		return rwConfigure, nil
	}
	if o.Running {
		return "", fmt.Errorf("%s: PostgreSQL runs in the data directory again after 5_stop_cluster (something restarted it): "+
			"stop it and keep it stopped, then rerun", o.Node)
	}
	if o.Kind != DirFormerPrimary {
		return "", permanent(fmt.Errorf("%s: the data directory is no longer the former primary sdr chose to rewind (it is %s now); rerun with --restart", o.Node, o.Kind))
	}
	switch {
	case o.Phase == phaseKept && o.KeptDone:
		return rwRewind, nil
	case o.Phase == phaseSaved || o.Phase == phaseKept:
		return rwKeep, nil
	}
	return rwSave, nil
}

// walSegRE is a WAL segment file name: timeline, log and segment, 8 hex digits each.
var walSegRE = regexp.MustCompile(`^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$`)

// walSegName is the name of the WAL segment of timeline tli that holds lsn.
func walSegName(tli int, lsn cluster.LSN, segSize uint64) string {
	segNo := uint64(lsn) / segSize
	perID := uint64(0x100000000) / segSize
	return fmt.Sprintf("%08X%08X%08X", tli, segNo/perID, segNo%perID)
}

// walSegNo reads a segment file name: its timeline and segment number.
func walSegNo(name string, segSize uint64) (tli int, segNo uint64, ok bool) {
	m := walSegRE.FindStringSubmatch(name)
	if m == nil {
		return 0, 0, false
	}
	t, _ := strconv.ParseUint(m[1], 16, 32)
	hi, _ := strconv.ParseUint(m[2], 16, 32)
	lo, _ := strconv.ParseUint(m[3], 16, 32)
	perID := uint64(0x100000000) / segSize
	if lo >= perID {
		return 0, 0, false
	}
	return int(t), hi*perID + lo, true
}

// walToKeep picks, from the names in a former primary's pg_wal, what is
// kept before it is rewound: every segment of its timeline tli from the
// one holding the fork point on (what it wrote after the primary's
// timeline left tli, with segments recycled ahead of its end of WAL, which
// cannot be told apart without reading them), and every timeline history
// file. complete is true when the segment holding the fork point is there
// and no segment after it is missing up to the last one kept.
func walToKeep(names []string, tli int, fork cluster.LSN, segSize uint64) (keep []string, complete bool) {
	if segSize == 0 {
		segSize = 16 << 20
	}
	forkSeg := uint64(fork) / segSize
	var segs []uint64
	bySeg := map[uint64]string{}
	for _, n := range names {
		if strings.HasSuffix(n, ".history") {
			keep = append(keep, n)
			continue
		}
		t, seg, ok := walSegNo(n, segSize)
		if !ok || t != tli || seg < forkSeg {
			continue
		}
		segs = append(segs, seg)
		bySeg[seg] = n
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i] < segs[j] })
	complete = len(segs) > 0 && segs[0] == forkSeg
	for i, s := range segs {
		if i > 0 && s != segs[i-1]+1 {
			complete = false
		}
		keep = append(keep, bySeg[s])
	}
	sort.Strings(keep)
	return keep, complete
}

// parseForks reads a timeline history file ("parentTLI<TAB>switchpoint<TAB>reason"
// per line) and returns, for each timeline it passed through, the switch
// point where it left that timeline.
func parseForks(text string) (map[int]cluster.LSN, error) {
	out := map[int]cluster.LSN{}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			return nil, fmt.Errorf("timeline history: cannot read line %q", line)
		}
		tli, err := strconv.Atoi(f[0])
		if err != nil {
			return nil, fmt.Errorf("timeline history: cannot read line %q", line)
		}
		lsn, err := cluster.ParseLSN(f[1])
		if err != nil {
			return nil, fmt.Errorf("timeline history: line %q: %w", line, err)
		}
		out[tli] = lsn
	}
	return out, nil
}

// rewindConninfo is pg_rewind's --source-server: the primary's Unix socket
// as sdr forwards it into the node's work directory (sockDir), as
// postgres.user, with no password (peer authentication on the primary).
func rewindConninfo(sockDir string, port int, user, database string) string {
	return strings.Join([]string{
		"host=" + conninfoQuote(sockDir),
		fmt.Sprintf("port=%d", port),
		"user=" + conninfoQuote(user),
		"dbname=" + conninfoQuote(database),
		"application_name=sdr_rewind",
		"connect_timeout=10",
	}, " ")
}
