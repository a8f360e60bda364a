package steps

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/pgsdr/sdr/cluster"
)

// Decisions of the switchover, without I/O. Each is table-tested.

// switchToken is what the demote half records of the old primary's clean
// shutdown, before anything restarts: the point the new primary must
// have replayed, and that the old primary rejoins from.
type switchToken struct {
	Pair          string `json:"pair"`
	Node          string `json:"node"`
	SystemID      string `json:"system_identifier"`
	TimeLineID    int    `json:"timeline"`
	CheckpointLSN string `json:"checkpoint_lsn"`
	RedoLSN       string `json:"redo_lsn"`
	RedoWALFile   string `json:"redo_wal_file"`
	Time          string `json:"time"`
}

// Encode is the token as the operator passes it to the promote half.
func (t switchToken) Encode() string {
	raw, _ := json.Marshal(t)
	return base64.RawURLEncoding.EncodeToString(raw)
}

// CheckToken tells whether s reads as a switchover token at all (its
// checks against the main standby come later); for the command line.
func CheckToken(s string) error {
	_, err := decodeToken(s)
	return err
}

// decodeToken reads a token given on the command line.
func decodeToken(s string) (switchToken, error) {
	var t switchToken
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return t, fmt.Errorf("the switchover token is not base64: %w", err)
	}
	if err := json.Unmarshal(raw, &t); err != nil {
		return t, fmt.Errorf("the switchover token is not sdr's: %w", err)
	}
	if t.SystemID == "" || t.TimeLineID == 0 || t.CheckpointLSN == "" || t.RedoLSN == "" {
		return t, errors.New("the switchover token lacks a field (system identifier, timeline, checkpoint or REDO location)")
	}
	return t, nil
}

// tokenFromControl builds the token from the stopped primary's pg_control:
// it must say "shut down" (a fast or smart shutdown wrote a shutdown
// checkpoint), whose REDO points at itself.
func tokenFromControl(pair, node string, cd cluster.ControlData) (switchToken, error) {
	if cd.State != cluster.StateShutDown {
		return switchToken{}, permanent(fmt.Errorf("the primary %s stopped, but pg_control says %q, not \"shut down\": "+
			"it did not write a clean shutdown checkpoint, so the DR side cannot be proven to have all of its WAL", node, cd.State))
	}
	if cd.RedoLSN != cd.CheckpointLSN {
		return switchToken{}, permanent(fmt.Errorf("the primary %s's last checkpoint (%s) is not a shutdown checkpoint (REDO %s)", node, cd.CheckpointLSN, cd.RedoLSN))
	}
	return switchToken{Pair: pair, Node: node, SystemID: cd.SystemID, TimeLineID: cd.TimeLineID, CheckpointLSN: cd.CheckpointLSN.String(),
		RedoLSN: cd.RedoLSN.String(), RedoWALFile: cd.RedoWALFile, Time: cd.CheckpointTime}, nil
}

// checkDemoteLag refuses a switchover unless the main standby streams
// from the primary with at most max bytes of replay lag.
func checkDemoteLag(main string, streaming bool, lagBytes, max int64) error {
	switch {
	case !streaming:
		return permanent(fmt.Errorf("the main standby %s does not stream from the primary: a switchover needs the DR side streaming and caught up; nothing was changed", main))
	case lagBytes > max:
		return permanent(fmt.Errorf("the main standby %s is %d bytes behind the primary, more than --max-lag %d: wait until it catches up; nothing was changed", main, lagBytes, max))
	}
	return nil
}

// replayObs is what the promote half sees on the main standby, after a
// CHECKPOINT (a restartpoint) on it.
type replayObs struct {
	Receiver    string      // pg_stat_wal_receiver.status, "" when no walreceiver runs
	ReceivedLSN cluster.LSN // pg_last_wal_receive_lsn()
	ReplayedLSN cluster.LSN // pg_last_wal_replay_lsn()
	ReplayTLI   int         // timeline of the main standby (pg_control's latest checkpoint)
	SystemID    string
	Control     cluster.ControlData // after the restartpoint
}

// maxShutdownRecord bounds how far a shutdown checkpoint record can end
// after it starts: the record (about 120 bytes) and a page header if it
// crosses a page.
const maxShutdownRecord = 8192 + 256

// shutdownReplayed decides, without a token, whether PostgreSQL alone
// proves that the main standby has everything the old primary wrote: no
// walreceiver streams (the old primary stopped), everything received is
// replayed, the last restartpoint is at a shutdown checkpoint (REDO equals
// its location) of the standby's timeline, and the replay ended right after
// it. It returns "" when proven, else what is still missing.
func shutdownReplayed(o replayObs) string {
	c := o.Control
	switch {
	case o.Receiver == "streaming":
		return "the walreceiver still streams: the old primary has not stopped"
	case o.ReceivedLSN != 0 && o.ReplayedLSN < o.ReceivedLSN:
		return fmt.Sprintf("received WAL up to %s is not all replayed (%s)", o.ReceivedLSN, o.ReplayedLSN)
	case c.RedoLSN != c.CheckpointLSN:
		return fmt.Sprintf("the last checkpoint replayed (%s) is not a shutdown checkpoint", c.CheckpointLSN)
	case c.TimeLineID != o.ReplayTLI:
		return fmt.Sprintf("the last checkpoint replayed is on timeline %d, the standby on %d", c.TimeLineID, o.ReplayTLI)
	case o.ReplayedLSN <= c.CheckpointLSN || o.ReplayedLSN-c.CheckpointLSN > maxShutdownRecord:
		return fmt.Sprintf("the replay ended at %s, not right after the shutdown checkpoint at %s", o.ReplayedLSN, c.CheckpointLSN)
	}
	return ""
}

// validateToken checks the main standby against the demote half's token,
// after a restartpoint: ready is true when the main standby has replayed
// exactly through the old primary's shutdown checkpoint. A wrong system
// identifier, an older token than the standby's timeline or replay, are
// terminal; "not there yet" is not.
func validateToken(t switchToken, o replayObs) (bool, error) {
	redo, err := cluster.ParseLSN(t.RedoLSN)
	if err != nil {
		return false, permanent(fmt.Errorf("the token's REDO location %q: %w", t.RedoLSN, err))
	}
	switch {
	case t.SystemID != o.SystemID:
		return false, permanent(fmt.Errorf("the token is of system %s, the main standby of %s: not this pair's switchover", t.SystemID, o.SystemID))
	case t.TimeLineID > o.ReplayTLI:
		return false, nil
	case t.TimeLineID < o.ReplayTLI:
		return false, permanent(fmt.Errorf("the token is of timeline %d, the main standby is on %d already: a stale token", t.TimeLineID, o.ReplayTLI))
	case o.Control.RedoLSN < redo:
		return false, nil
	case o.Control.RedoLSN > redo:
		return false, permanent(fmt.Errorf("the main standby replayed past the token (REDO %s > %s): a stale token, or the old primary wrote after it", o.Control.RedoLSN, redo))
	}
	return true, nil
}

// rejoinReady decides whether the old primary may start as a standby of
// the new primary: the new primary's timeline forked from the token's
// timeline at a point after the start of the old primary's shutdown
// checkpoint, so it holds all of the old primary's WAL. ready is false
// while the new primary is not promoted yet.
func rejoinReady(t switchToken, newTLI int, history string) (bool, error) {
	if newTLI <= t.TimeLineID {
		return false, nil
	}
	ckpt, err := cluster.ParseLSN(t.CheckpointLSN)
	if err != nil {
		return false, permanent(fmt.Errorf("the token's checkpoint location %q: %w", t.CheckpointLSN, err))
	}
	for _, line := range strings.Split(history, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(line, "#") {
			continue
		}
		parent, err := strconv.Atoi(f[0])
		if err != nil || parent != t.TimeLineID {
			continue
		}
		sp, err := cluster.ParseLSN(f[1])
		if err != nil {
			return false, permanent(fmt.Errorf("timeline history: switch point %q: %w", f[1], err))
		}
		if sp <= ckpt {
			return false, permanent(fmt.Errorf("the new primary left timeline %d at %s, before the old primary's shutdown checkpoint at %s: "+
				"it does not hold all of the old primary's WAL, so the old primary cannot follow it without a rewind or a new copy", t.TimeLineID, sp, ckpt))
		}
		return true, nil
	}
	return false, permanent(fmt.Errorf("the new primary's timeline %d does not descend from the old primary's timeline %d", newTLI, t.TimeLineID))
}

// abortAllowed decides whether the demote half may be aborted: only when
// the DR side provably did not promote: its main standby answers, is in
// recovery, and is still on the token's timeline.
func abortAllowed(t switchToken, reached bool, reachErr string, inRecovery bool, tli int) error {
	switch {
	case !reached:
		return permanent(fmt.Errorf("the DR side's main standby cannot be reached (%s): sdr cannot prove that it did not promote, so it does not "+
			"bring the old primary back; find out whether the DR side promoted", reachErr))
	case !inRecovery:
		return permanent(fmt.Errorf("the DR side's main standby is out of recovery (timeline %d): it promoted. Aborting now would make two primaries; "+
			"finish the switchover instead (run sdr switchover --role primary again)", tli))
	case tli != t.TimeLineID:
		return permanent(fmt.Errorf("the DR side's main standby is on timeline %d, not the old primary's %d: it promoted at some point; not aborting", tli, t.TimeLineID))
	}
	return nil
}
