package steps

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pgsdr/sdr/cluster"
)

// Decisions of the failover workflow, without I/O. Each is table-tested.

// oldPrimaryObs is what the failover learns of one node of the old
// primary cluster, over every path it has.
type oldPrimaryObs struct {
	Node string
	// From the DR side's main standby, as the replication user (the path
	// the WAL came over).
	PGAnswered bool // PostgreSQL answered there
	PGPrimary  bool // ... and is not in recovery
	PGErr      string
	// Over SSH from where sdr runs.
	SSH             bool   // the node's SSH answered
	SSHErr          string // why not
	PostmasterAlive bool   // a postmaster runs in its data directory
	AdminAnswered   bool   // PostgreSQL answered on its socket through SSH
	AdminPrimary    bool   // ... and is not in recovery
	State           string // pg_control's cluster state ("" unknown)
	CheckpointLSN   cluster.LSN
	SystemID        string
	Fenced          bool // already carries sdr's fence marker
}

// mergeOldPrimaryObs joins what the two paths saw of node: the answer
// to the main standby from dr, everything seen over SSH from ssh. PGErr
// says why PostgreSQL did not answer the main standby, or, when it did
// not fail there, why it did not answer on its own socket.
func mergeOldPrimaryObs(node string, dr, ssh oldPrimaryObs) oldPrimaryObs {
	o := ssh
	o.Node = node
	o.PGAnswered, o.PGPrimary = dr.PGAnswered, dr.PGPrimary
	if dr.PGErr != "" {
		o.PGErr = dr.PGErr
	}
	return o
}

// answersAsPrimary reports whether the node answered as a primary on any path.
func (o oldPrimaryObs) answersAsPrimary() bool {
	return (o.PGAnswered && o.PGPrimary) || (o.AdminAnswered && o.AdminPrimary)
}

// lossWindow is what the main standby had of the old primary's WAL when
// the failover decided: the data-loss window, as far as it is known.
type lossWindow struct {
	ReceivedLSN   string    `json:"received_lsn"`
	ReplayedLSN   string    `json:"replayed_lsn"`
	LastMessage   time.Time `json:"last_message,omitzero"`   // last message from the primary (walreceiver), zero when unknown
	LastReplayTx  time.Time `json:"last_replay_tx,omitzero"` // commit time of the last replayed transaction
	UpstreamEnd   string    `json:"upstream_end_lsn"`        // the primary's last reported end of WAL (walreceiver), "" when unknown
	LagBytes      *int64    `json:"lag_bytes,omitempty"`     // UpstreamEnd - ReceivedLSN, when known
	NoLoss        bool      `json:"no_loss"`                 // proven: the old primary shut down cleanly and all its WAL was replayed
	NoLossBecause string    `json:"no_loss_because,omitempty"`
	// noLossWhyNot says, when NoLoss is false, what stands in the way of
	// the proof (for the refusal's message; not recorded).
	noLossWhyNot string
}

func (w lossWindow) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "the main standby received WAL up to %s and replayed up to %s", orDashStr(w.ReceivedLSN), orDashStr(w.ReplayedLSN))
	if !w.LastMessage.IsZero() {
		fmt.Fprintf(&b, "; last message from the primary at %s", w.LastMessage.UTC().Format(time.RFC3339))
	} else {
		b.WriteString("; time of the last message from the primary unknown (its walreceiver is gone)")
	}
	if !w.LastReplayTx.IsZero() {
		fmt.Fprintf(&b, "; last replayed transaction committed at %s", w.LastReplayTx.UTC().Format(time.RFC3339))
	}
	if w.LagBytes != nil {
		fmt.Fprintf(&b, "; the primary had reported WAL up to %s, %d bytes past what was received", w.UpstreamEnd, *w.LagBytes)
	} else {
		b.WriteString("; how much WAL the primary wrote past that is unknown")
	}
	if w.NoLoss {
		b.WriteString("; no data is lost: " + w.NoLossBecause)
	}
	return b.String()
}

func orDashStr(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// noLossProof decides whether the failover provably loses nothing: every
// node of the old primary cluster was reached over SSH and is stopped,
// and the one that was the primary shut down cleanly at a checkpoint the
// main standby has replayed. It returns the reason, or "".
func noLossProof(obs []oldPrimaryObs, sysID string, replayed cluster.LSN) string {
	proof, _ := noLossProofWhy(obs, sysID, replayed)
	return proof
}

// noLossProofWhy is noLossProof with, when there is no proof, what stands
// in its way (naming the node).
func noLossProofWhy(obs []oldPrimaryObs, sysID string, replayed cluster.LSN) (proof, whyNot string) {
	var clean *oldPrimaryObs
	for i := range obs {
		o := &obs[i]
		switch {
		case !o.SSH:
			return "", o.Node + " was not reached over SSH"
		case o.PostmasterAlive:
			return "", o.Node + " still runs PostgreSQL"
		case o.SystemID != sysID:
			return "", o.Node + "'s pg_control could not be read, or is of another system"
		}
		switch o.State {
		case cluster.StateShutDown:
			if clean != nil {
				return "", "both " + clean.Node + " and " + o.Node + " shut down as primaries" // not a clean picture
			}
			clean = o
		case cluster.StateShutDownInRecovery:
		default:
			return "", fmt.Sprintf("%s's pg_control says %q: it did not shut down cleanly", o.Node, o.State)
		}
	}
	switch {
	case clean == nil:
		return "", "no node of it shut down cleanly as the primary"
	case clean.CheckpointLSN == 0 || replayed <= clean.CheckpointLSN:
		return "", fmt.Sprintf("the main standby has not replayed past %s's shutdown checkpoint (%s; replayed %s)", clean.Node, clean.CheckpointLSN, replayed)
	}
	return fmt.Sprintf("the old primary %s shut down cleanly with its last checkpoint at %s, and the main standby has replayed past it (%s)",
		clean.Node, clean.CheckpointLSN, replayed), ""
}

// decideFailover decides whether the failover may go ahead, from what was
// seen of the old primary cluster. accepted is the operator's
// --accept-data-loss.
func decideFailover(obs []oldPrimaryObs, w lossWindow, accepted bool) error {
	var primaries []string
	for _, o := range obs {
		if o.answersAsPrimary() {
			how := "to the DR side's main standby"
			if !o.PGPrimary {
				how = "on its own socket, over SSH"
			}
			primaries = append(primaries, fmt.Sprintf("%s (%s)", o.Node, how))
		}
	}
	if len(primaries) > 0 {
		return permanent(fmt.Errorf("the old primary cluster is not lost: %s answers as a primary. "+
			"A failover now would leave two writable primaries. If the DR side must take over while the primary runs, "+
			"use a switchover; if the DR side only lost its link, fix the link. Nothing was changed",
			strings.Join(primaries, ", ")))
	}
	if w.NoLoss || accepted {
		return nil
	}
	var unreached []string
	for _, o := range obs {
		if !o.SSH {
			unreached = append(unreached, o.Node)
		}
	}
	why := "the old primary cluster cannot prove that it lost nothing"
	if w.noLossWhyNot != "" {
		why += " (" + w.noLossWhyNot + ")"
	}
	if len(unreached) > 0 {
		why = "the old primary cluster cannot be reached (" + strings.Join(unreached, ", ") + ")"
	}
	return permanent(fmt.Errorf("%s: promoting the DR side may lose the transactions it did not receive. "+
		"Data-loss window: %s. To fail over anyway, rerun with --accept-data-loss. Nothing was changed", why, w))
}

// fenceAction is what the fence step does to one reachable old-primary node.
type fenceAction string

const (
	fenceNone    fenceAction = "none"    // already fenced and down
	fenceMark    fenceAction = "mark"    // down: mark it (standby.signal and sdr's fence marker)
	fenceStop    fenceAction = "stop"    // running: stop it (fast, then immediate), then mark it
	fenceUnreach fenceAction = "unreach" // SSH does not answer: cannot be fenced; the operator must keep it down
)

// decideFence decides what to do with one old-primary node.
func decideFence(o oldPrimaryObs) fenceAction {
	switch {
	case !o.SSH:
		return fenceUnreach
	case o.PostmasterAlive:
		return fenceStop
	case o.Fenced:
		return fenceNone
	}
	return fenceMark
}

// promotionRecord is what the failover records of the promotion, for
// later commands on both sides: the old side recognises itself as stale
// by the epoch.
type promotionRecord struct {
	Node        string     `json:"node"`
	SystemID    string     `json:"system_identifier"`
	OldTimeline int        `json:"old_timeline"`
	Timeline    int        `json:"timeline"`
	SwitchPoint string     `json:"switch_point"`
	Epoch       int        `json:"epoch"`
	At          time.Time  `json:"at"`
	Window      lossWindow `json:"data_loss_window"`
	Cluster     string     `json:"cluster"` // the cluster that is primary now
	Unfenced    []string   `json:"unfenced,omitempty"`
}

// parseHistory reads a timeline history file ("parentTLI<TAB>switchpoint<TAB>reason"
// per line) and returns the switch point into tli, the last line's.
func parseHistory(text string, tli int) (parent int, switchPoint string, err error) {
	var last []string
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			return 0, "", fmt.Errorf("timeline history for %d: cannot read line %q", tli, line)
		}
		last = f
	}
	if last == nil {
		return 0, "", fmt.Errorf("timeline history for %d is empty", tli)
	}
	parent, err = strconv.Atoi(last[0])
	if err != nil {
		return 0, "", fmt.Errorf("timeline history for %d: parent %q: %w", tli, last[0], err)
	}
	if _, err := cluster.ParseLSN(last[1]); err != nil {
		return 0, "", fmt.Errorf("timeline history for %d: switch point %q: %w", tli, last[1], err)
	}
	return parent, last[1], nil
}

// promotedAlready decides, on a rerun, whether the main standby was
// already promoted by this failover: it is out of recovery, with the
// system identifier and on a timeline after the one recorded before
// promoting. A main standby out of recovery that does not fit is not
// promoted again, and not ours: refuse.
func promotedAlready(node string, inRecovery bool, sysID string, tli int, intentSysID string, intentTLI int) (bool, error) {
	if inRecovery {
		return false, nil
	}
	if intentSysID == "" {
		return false, permanent(fmt.Errorf("the main standby %s is already out of recovery, and this failover did not promote it: "+
			"someone else did. sdr does not promote anything else; find out who promoted it", node))
	}
	if sysID != intentSysID || tli <= intentTLI {
		return false, permanent(fmt.Errorf("the main standby %s is out of recovery but not as this failover's promotion would leave it "+
			"(system identifier %s timeline %d, before the promotion %s timeline %d)", node, sysID, tli, intentSysID, intentTLI))
	}
	return true, nil
}
