package steps

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// wal_keep_size on the primary.
//
// 4_retain_wal raises wal_keep_size to raisedWalKeepSizeMB while the main
// standby's copy is made, only when it is lower, and records what it did:
// "changed from X (set in file F or not) to Y". 9_finish consumes that
// record: it puts the value back only while the setting is still exactly
// the Y that sdr set and still comes from postgresql.auto.conf (where
// ALTER SYSTEM writes), and then deletes the record. So:
//
//   - a DBA's later ALTER SYSTEM SET wal_keep_size is never undone: a later
//     run either leaves a value >= Y alone (no record), or records the DBA's
//     value as the one to put back;
//   - several DR pairs on one primary do not fight: a pair raises only a
//     lower value and restores only its own value, and each pair keeps
//     the WAL its standby needs through its own slot, not through
//     wal_keep_size. When two pairs overlap, the first to finish puts the
//     value back and the other finds nothing of its own to undo.

// Saved values (never secrets).
const (
	// valWalKeepChange is the record of 4_retain_wal's change, consumed and
	// deleted by 9_finish.
	valWalKeepChange = "primary.wal_keep_size.change"
	// Written by earlier versions of sdr (write-once, never deleted there):
	// the value before the first raise. 9_finish reads them only when there
	// is no change record, then deletes them.
	valLegacyWalKeepSize     = "primary.wal_keep_size.original"
	valLegacyWalKeepSizeAuto = "primary.wal_keep_size.in_auto_conf"
)

// raisedWalKeepSizeMB is what 4_retain_wal raises wal_keep_size to (when
// it is lower) while the main standby is being built.
const raisedWalKeepSizeMB = 1024

// walKeepObs is wal_keep_size as pg_settings shows it.
type walKeepObs struct {
	MB         int
	Source     string // pg_settings.source: "default", "configuration file", ...
	SourceFile string // pg_settings.sourcefile, "" when NULL
}

// inAutoConf reports whether the value comes from postgresql.auto.conf.
func (o walKeepObs) inAutoConf() bool {
	return o.Source == "configuration file" &&
		(o.SourceFile == "postgresql.auto.conf" || strings.HasSuffix(o.SourceFile, "/postgresql.auto.conf"))
}

func (o walKeepObs) String() string {
	switch {
	case o.SourceFile != "":
		return fmt.Sprintf("%d MB from %s", o.MB, o.SourceFile)
	case o.Source != "":
		return fmt.Sprintf("%d MB (%s)", o.MB, o.Source)
	}
	return fmt.Sprintf("%d MB", o.MB)
}

const walKeepSQL = `SELECT setting::int, source, coalesce(sourcefile, '') FROM pg_settings WHERE name = 'wal_keep_size'`

func queryWalKeep(ctx context.Context, c *pgx.Conn) (walKeepObs, error) {
	var o walKeepObs
	err := c.QueryRow(ctx, walKeepSQL).Scan(&o.MB, &o.Source, &o.SourceFile)
	return o, err
}

// walKeepChange is the record of one raise.
type walKeepChange struct {
	FromMB   int
	FromAuto bool // the value before came from postgresql.auto.conf
	ToMB     int
}

func (c walKeepChange) String() string {
	return fmt.Sprintf("from=%d;from_auto=%t;to=%d", c.FromMB, c.FromAuto, c.ToMB)
}

// parseMB parses a wal_keep_size in MB as saved by sdr: a plain
// non-negative integer. It is the only way a saved value reaches SQL.
func parseMB(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || strconv.Itoa(n) != s {
		return 0, fmt.Errorf("%q is not a number of MB", s)
	}
	return n, nil
}

// parseWalKeepChange reads a record written by walKeepChange.String.
func parseWalKeepChange(s string) (walKeepChange, error) {
	var c walKeepChange
	fields := map[string]string{}
	for _, kv := range strings.Split(s, ";") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return c, fmt.Errorf("saved wal_keep_size change %q: %q is not key=value", s, kv)
		}
		fields[k] = v
	}
	var err error
	if c.FromMB, err = parseMB(fields["from"]); err != nil {
		return c, fmt.Errorf("saved wal_keep_size change %q: from: %w", s, err)
	}
	if c.ToMB, err = parseMB(fields["to"]); err != nil {
		return c, fmt.Errorf("saved wal_keep_size change %q: to: %w", s, err)
	}
	if c.FromAuto, err = strconv.ParseBool(fields["from_auto"]); err != nil || len(fields) != 3 {
		return c, fmt.Errorf("saved wal_keep_size change %q: from_auto must be true or false, and nothing else may be saved", s)
	}
	return c, nil
}

// legacyWalKeepChange turns the values saved by an earlier version of sdr
// into a change record: that version raised wal_keep_size to
// raisedWalKeepSizeMB. ok is false when there is nothing to turn.
func legacyWalKeepChange(orig string, origSet bool, auto string) (walKeepChange, bool, error) {
	if !origSet {
		return walKeepChange{}, false, nil
	}
	mb, err := parseMB(orig)
	if err != nil {
		return walKeepChange{}, false, fmt.Errorf("saved %s: %w", valLegacyWalKeepSize, err)
	}
	if mb >= raisedWalKeepSizeMB {
		return walKeepChange{}, false, nil // that version did not raise it
	}
	return walKeepChange{FromMB: mb, FromAuto: auto == "true", ToMB: raisedWalKeepSizeMB}, true, nil
}

// walKeepRaise is what 4_retain_wal does.
type walKeepRaise struct {
	Raise  bool           // ALTER SYSTEM SET wal_keep_size to Record.ToMB
	Record *walKeepChange // the record to hold afterwards (nil: none)
	Why    string
}

// decideWalKeepRaise decides 4_retain_wal's change. prev is the record
// left by an earlier attempt or run (nil when none).
func decideWalKeepRaise(o walKeepObs, prev *walKeepChange, target int) walKeepRaise {
	if o.MB >= target {
		if prev != nil && o.MB == prev.ToMB && o.inAutoConf() {
			// sdr's own raise is still in effect (a rerun, or --restart
			// before 9_finish): keep the record so 9_finish puts it back.
			return walKeepRaise{Record: prev, Why: "raised earlier by sdr, still in effect"}
		}
		why := "already high enough; sdr does not change it"
		if prev != nil {
			why += " and forgets its earlier record (" + prev.String() + "): the value was changed since"
		}
		return walKeepRaise{Why: why}
	}
	rec := walKeepChange{FromMB: o.MB, FromAuto: o.inAutoConf(), ToMB: target}
	return walKeepRaise{Raise: true, Record: &rec, Why: "lower than needed while the copy is made"}
}

// walKeepRestore is what 9_finish does.
type walKeepRestore struct {
	SQL string // "" when nothing is to be changed
	Why string
}

// decideWalKeepRestore decides whether 9_finish puts wal_keep_size back.
// rec is the change 4_retain_wal recorded (nil when it changed nothing).
func decideWalKeepRestore(o walKeepObs, rec *walKeepChange) walKeepRestore {
	switch {
	case rec == nil:
		return walKeepRestore{Why: "sdr did not change wal_keep_size in this start"}
	case o.MB != rec.ToMB || !o.inAutoConf():
		return walKeepRestore{Why: fmt.Sprintf("wal_keep_size is now %s, not the %d MB sdr set in postgresql.auto.conf: "+
			"it was changed since, and sdr leaves it", o, rec.ToMB)}
	case rec.FromAuto:
		return walKeepRestore{SQL: fmt.Sprintf("ALTER SYSTEM SET wal_keep_size = '%dMB'", rec.FromMB),
			Why: fmt.Sprintf("back to %d MB in postgresql.auto.conf", rec.FromMB)}
	default:
		return walKeepRestore{SQL: "ALTER SYSTEM RESET wal_keep_size",
			Why: fmt.Sprintf("back to the value of postgresql.conf or the default (%d MB before)", rec.FromMB)}
	}
}

// walKeepRestored reports whether the reloaded setting shows that the
// restore took effect: the SET value, or (after RESET) a value that no
// longer comes from postgresql.auto.conf.
func walKeepRestored(o walKeepObs, rec walKeepChange) bool {
	if rec.FromAuto {
		return o.MB == rec.FromMB && o.inAutoConf()
	}
	return !o.inAutoConf()
}
