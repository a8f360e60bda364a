package steps

import (
	"fmt"
	"strings"

	"github.com/pgsdr/sdr/cluster"
)

// Decisions of the fan-out copy (copy.fan_out; s7_fanout.go): whether it
// is used, which cascades it copies, and whether a cascade's fan-out copy
// can be swapped in once the main standby runs. All pure.

// useFanOut decides whether 7_build_standby copies by fan-out, and says
// why not when the setting is on but the fan-out cannot be used.
func useFanOut(on bool, cascades, tablespaces int) (bool, string) {
	switch {
	case !on:
		return false, ""
	case cascades == 0:
		return false, "the DR cluster has no cascade: the main standby's copy is the only one"
	case tablespaces > 0:
		return false, fmt.Sprintf("the primary has %d tablespace(s) besides pg_default and pg_global, and pg_basebackup writes "+
			"a tar stream only for a cluster without them: the cascades are copied from the main standby", tablespaces)
	}
	return true, ""
}

// fanOutPart is the phase-record key of a cascade's fan-out record.
func fanOutPart(node string) string { return node + "/fanout" }

// fanOutRecord is what the fan-out copy records for a cascade once the
// copy is complete on it: the main standby's copy id of the same copy, the
// cascade's own copy id, and the LSN where the backup starts (the WAL the
// cascade needs from the main standby begins there at the latest).
type fanOutRecord struct {
	Main     string
	Copy     string
	StartLSN cluster.LSN
}

func (r fanOutRecord) String() string {
	return fmt.Sprintf("main=%s copy=%s start_lsn=%s", r.Main, r.Copy, r.StartLSN)
}

// parseFanOutRecord reads a fan-out record; ok is false when s is not one.
func parseFanOutRecord(s string) (fanOutRecord, bool) {
	var r fanOutRecord
	var lsn string
	for _, f := range strings.Fields(s) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "main":
			r.Main = v
		case "copy":
			r.Copy = v
		case "start_lsn":
			lsn = v
		}
	}
	l, err := cluster.ParseLSN(lsn)
	if err != nil || r.Main == "" || r.Copy == "" {
		return fanOutRecord{}, false
	}
	r.StartLSN = l
	return r, true
}

// cascadePath is how a cascade is built when the fan-out is on.
type cascadePath string

const (
	// pathJoin: the cascade takes part in this run's fan-out copy.
	pathJoin cascadePath = "fan-out copy"
	// pathResume: its part of an earlier fan-out copy is complete (copied
	// or configured): it goes on from there.
	pathResume cascadePath = "resume fan-out copy"
	// pathOrdinary: it is copied from the main standby once the main
	// standby runs, as without the fan-out.
	pathOrdinary cascadePath = "copy from the main standby"
)

// planFanOutCascade decides how a cascade is built. mainAction is where
// the main standby's rebuild resumes and mainCopy the main standby's
// recorded copy id; rec is the cascade's fan-out record (recOK false when
// there is none); o and action are the cascade's observation and plan
// (planNodeBuild with the main standby's copy as WantFrom).
//
// While the main standby needs a new copy, every cascade joins it: a
// cascade's copy must come from the main standby's copy. Once the main
// standby's copy is complete, the stream is gone: a cascade whose part of
// it is complete goes on, any other is copied from the main standby.
func planFanOutCascade(mainAction buildAction, mainCopy string, rec fanOutRecord, recOK bool, o buildObs, action buildAction) cascadePath {
	if mainAction == actCopy {
		return pathJoin
	}
	if recOK && rec.Copy == o.CopyID && rec.Main == mainCopy && (action == actConfigure || action == actSwap) {
		return pathResume
	}
	return pathOrdinary
}

// cascadeReadyObs is what decides, once the main standby runs, whether a
// cascade's fan-out copy may be swapped in and started.
type cascadeReadyObs struct {
	Node         string
	Rec          fanOutRecord
	MainNode     string
	MainDataCopy string // the copy id in the main standby's data directory
	Slot         string // the cascade's slot on the main standby
	SlotExists   bool
	RestartLSN   *cluster.LSN // nil when the slot reserves no WAL
	WalStatus    string
}

// decideCascadeReady says whether the cascade's fan-out copy can stream
// from the main standby: the main standby runs the same copy, and the
// cascade's slot there keeps the WAL from the backup's start on (a slot
// made on a standby reserves from its last restartpoint; the main standby
// has made none since it started from this copy unless it replayed a
// checkpoint and a restartpoint was due). When it cannot, why says so,
// and the cascade is copied from the main standby instead: its fan-out
// copy was never swapped in.
func decideCascadeReady(o cascadeReadyObs) (ok bool, why string) {
	switch {
	case o.MainDataCopy != o.Rec.Main:
		return false, fmt.Sprintf("the main standby %s holds copy %q, not %q, which the fan-out copy of %s is part of",
			o.MainNode, o.MainDataCopy, o.Rec.Main, o.Node)
	case !o.SlotExists:
		return false, fmt.Sprintf("slot %s for %s does not exist on the main standby %s", o.Slot, o.Node, o.MainNode)
	case o.WalStatus == "lost":
		return false, fmt.Sprintf("slot %s on the main standby %s has lost WAL", o.Slot, o.MainNode)
	case o.RestartLSN == nil:
		return false, fmt.Sprintf("slot %s on the main standby %s reserves no WAL", o.Slot, o.MainNode)
	case *o.RestartLSN > o.Rec.StartLSN:
		return false, fmt.Sprintf("slot %s on the main standby %s keeps WAL from %s on, the fan-out copy of %s needs it from %s "+
			"(the main standby made a restartpoint before the slot was created)", o.Slot, o.MainNode, *o.RestartLSN, o.Node, o.Rec.StartLSN)
	}
	return true, ""
}

// primarySlotObs is the pair's slot on the primary after the fan-out
// copy, which took no slot (-X fetch).
type primarySlotObs struct {
	Exists     bool
	RestartLSN *cluster.LSN
	WalStatus  string
}

// checkPrimarySlotKeeps refuses a fan-out copy whose WAL the primary may
// no longer keep: the main standby streams through the pair's slot from
// the end of the copy on, so the slot must reserve WAL from no later than
// the backup's start and must not have lost any.
func checkPrimarySlotKeeps(primary, slot string, start cluster.LSN, o primarySlotObs) error {
	switch {
	case !o.Exists:
		return fmt.Errorf("slot %s is gone from the primary %s: the main standby could not stream after the copy; rerun (the primary side recreates it)", slot, primary)
	case o.WalStatus == "lost":
		return fmt.Errorf("slot %s on the primary %s lost WAL during the copy (max_slot_wal_keep_size): the copy is not used; "+
			"run the primary side with --restart to recreate the slot, then rerun", slot, primary)
	case o.RestartLSN == nil:
		return fmt.Errorf("slot %s on the primary %s reserves no WAL: the copy is not used; rerun", slot, primary)
	case *o.RestartLSN > start:
		return fmt.Errorf("slot %s on the primary %s keeps WAL only from %s on, and the copy starts at %s: something else "+
			"streamed through it during the copy; the copy is not used: stop whatever uses the slot, then rerun", slot, primary, *o.RestartLSN, start)
	}
	return nil
}

// backupStartLSN reads "START WAL LOCATION: 0/5000028 (file ...)" from a
// backup_label.
func backupStartLSN(label string) (cluster.LSN, error) {
	for _, line := range strings.Split(label, "\n") {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "START WAL LOCATION:")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			break
		}
		return cluster.ParseLSN(f[0])
	}
	return 0, fmt.Errorf("no START WAL LOCATION in backup_label")
}
