package steps

import (
	"fmt"
	"path"
)

// The phases a node goes through in 7_build_standby, recorded in the
// store after each one (RunContext.SetPhase) and checked against the node
// before a rerun skips anything.
const (
	phaseSaved      = "saved"      // the node's own pg_hba.conf and pg_ident.conf are kept aside
	phaseCopied     = "copied"     // pg_basebackup finished into <work>/new
	phaseConfigured = "configured" // the copy in <work>/new is a fully configured standby
	phaseSwapped    = "swapped"    // the copy is the data directory
	phaseStarted    = "started"    // PostgreSQL runs the copy
)

// copyPart is the phase-record key that holds a node's copy id.
func copyPart(node string) string { return node + "/copy" }

// buildObs is what 7_build_standby knows of a node before acting: the
// recorded phase and copy, and one probe of the node.
type buildObs struct {
	Node    string
	Phase   string // recorded phase ("" when the node has not started in this run)
	CopyID  string // recorded copy id ("" when none)
	Verdict Verdict

	DataCopy   string // copy id in the data directory's sdr marker
	DataFrom   string // "from" in that marker (cascades)
	Running    bool
	InRecovery bool

	NewComplete string // copy id in <work>/new.complete ("" when the copy is not complete)
	NewReady    bool   // <work>/new holds standby.signal and the marker of that copy
	WantFrom    string // for a cascade: the main standby's copy id; "" for the main standby
}

type buildAction string

const (
	actDone      buildAction = "done"      // this run's copy runs as a standby
	actStart     buildAction = "start"     // this run's copy is in place: start it
	actSwap      buildAction = "swap"      // the configured copy is ready: swap it in, then start
	actConfigure buildAction = "configure" // the copy is complete: configure it, swap, start
	actCopy      buildAction = "copy"      // make a new copy, then the rest
)

// planNodeBuild decides where a node's rebuild resumes. A copy is never
// made again once this run's copy is complete: the slot has kept the WAL
// it needs.
func planNodeBuild(o buildObs) (buildAction, error) {
	inPlace := o.CopyID != "" && o.DataCopy == o.CopyID && o.DataFrom == o.WantFrom
	if inPlace {
		switch {
		case o.Running && o.InRecovery:
			return actDone, nil
		case o.Running:
			return "", permanent(fmt.Errorf("%s: the copy built by this run runs as a primary: it was promoted; sdr does not touch it", o.Node))
		}
		return actStart, nil
	}
	if !o.Verdict.Replace {
		return "", permanent(fmt.Errorf("%s", o.Verdict.Reason))
	}
	if o.Running {
		return "", fmt.Errorf("%s: PostgreSQL runs in the data directory again after 5_stop_cluster (something restarted it): "+
			"stop it and keep it stopped, then rerun", o.Node)
	}
	complete := o.CopyID != "" && o.NewComplete == o.CopyID
	switch {
	case complete && o.NewReady && (o.Phase == phaseConfigured || o.Phase == phaseSwapped):
		return actSwap, nil
	case complete && (o.Phase == phaseCopied || o.Phase == phaseConfigured || o.Phase == phaseSwapped):
		return actConfigure, nil
	}
	return actCopy, nil
}

// swapObs is what the swap sees of the data directory's surroundings.
type swapObs struct {
	Verdict   Verdict
	DataDir   string // real path of the data directory
	DataExist bool
	OldExists bool   // <work>/old exists: the original is already kept there
	Keep      string // where a diverged directory is kept (never deleted)
	Old       string // <work>/old
	New       string // <work>/new
	Trash     string // a name in <work>/trash for what is to be deleted
}

type renameOp struct{ From, To string }

// planSwap plans the swap of a configured copy into place, as renames
// done in one remote action. The data directory that was there is kept as
// <work>/old until 9_finish (or in its own kept place when it is
// diverged); an empty directory, or an earlier sdr copy when the original
// is already kept, is renamed into the trash (emptied after the swap).
func planSwap(node string, o swapObs) ([]renameOp, error) {
	var ops []renameOp
	if o.DataExist {
		switch {
		case !o.Verdict.Replace:
			return nil, permanent(fmt.Errorf("%s", o.Verdict.Reason))
		case o.Verdict.KeepAside:
			ops = append(ops, renameOp{o.DataDir, o.Keep})
		case o.Verdict.Kind == DirMissing: // an empty directory
			ops = append(ops, renameOp{o.DataDir, o.Trash})
		case !o.OldExists:
			ops = append(ops, renameOp{o.DataDir, o.Old})
		case o.Verdict.Kind == DirSdrCopy:
			ops = append(ops, renameOp{o.DataDir, o.Trash})
		default:
			return nil, permanent(fmt.Errorf("%s: both the data directory %s (%s) and a kept old data directory %s exist; "+
				"sdr removes neither: move one of them away, then rerun", node, o.DataDir, o.Verdict.Kind, o.Old))
		}
	}
	return append(ops, renameOp{o.New, o.DataDir}), nil
}

// tablespaceSwap plans the swap of one tablespace location live, whose
// new copy is in <live>.sdr/new: the current one goes to <live>.sdr/old,
// or, when an old one is already kept there, it is an earlier sdr copy and
// goes to trash. When keep is set (the data directory is kept aside:
// diverged, or a former primary), the current one is kept there instead,
// whatever else is there. Nothing to do when there is no new copy
// (swapped already).
func tablespaceSwap(live, trash, keep string, liveExists, newExists, oldExists bool) []renameOp {
	if !newExists {
		return nil
	}
	var ops []renameOp
	w := live + ".sdr"
	if liveExists {
		if keep != "" {
			ops = append(ops, renameOp{live, keep})
		} else if oldExists {
			ops = append(ops, renameOp{live, trash})
		} else {
			ops = append(ops, renameOp{live, path.Join(w, "old")})
		}
	}
	return append(ops, renameOp{path.Join(w, "new"), live})
}
