package cluster

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
)

// LSN is a PostgreSQL write-ahead log location.
type LSN uint64

// ParseLSN reads an LSN in PostgreSQL's form "16/B374D848" (the low half
// may be zero-padded, as PostgreSQL 18 prints it).
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok || hi == "" || lo == "" || len(hi) > 8 || len(lo) > 8 {
		return 0, fmt.Errorf("LSN %q is not of the form X/X", s)
	}
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("LSN %q is not of the form X/X (hexadecimal)", s)
	}
	return LSN(h<<32 | l), nil
}

// String prints the LSN as PostgreSQL does: "16/B374D848".
func (l LSN) String() string {
	return fmt.Sprintf("%X/%X", uint32(l>>32), uint32(l))
}

// The states pg_controldata reports as "Database cluster state".
const (
	StateStartingUp          = "starting up"
	StateShutDown            = "shut down"
	StateShutDownInRecovery  = "shut down in recovery"
	StateShuttingDown        = "shutting down"
	StateInCrashRecovery     = "in crash recovery"
	StateInArchiveRecovery   = "in archive recovery"
	StateInProduction        = "in production"
	controlStateUnrecognized = "unrecognized status code"
)

var controlStates = map[string]bool{
	StateStartingUp: true, StateShutDown: true, StateShutDownInRecovery: true, StateShuttingDown: true,
	StateInCrashRecovery: true, StateInArchiveRecovery: true, StateInProduction: true,
}

// ControlData is what pg_controldata says about a data directory.
type ControlData struct {
	SystemID       string // "Database system identifier"
	State          string // "Database cluster state": one of the State* constants
	CheckpointLSN  LSN    // "Latest checkpoint location"
	RedoLSN        LSN    // "Latest checkpoint's REDO location"
	RedoWALFile    string // "Latest checkpoint's REDO WAL file"
	TimeLineID     int    // "Latest checkpoint's TimeLineID"
	PrevTimeLineID int    // "Latest checkpoint's PrevTimeLineID"
	CheckpointTime string // "Time of latest checkpoint" (as printed, in the node's time zone)
	MinRecoveryLSN LSN    // "Minimum recovery ending location"
	MinRecoveryTLI int    // "Min recovery ending loc's timeline"
	DataChecksums  int    // "Data page checksum version" (0 = off)
	WalLogHints    bool   // "wal_log_hints setting" on/off
	ControlVersion int    // "pg_control version number"
	WALSegSize     uint64 // "Bytes per WAL segment" (0 when pg_controldata did not print it)
}

// ParseControlData reads the output of pg_controldata run with LANG=C
// (PostgreSQL 13 and later print these labels). A missing or garbled field,
// an unknown cluster state, or pg_controldata's warning that pg_control is
// corrupt is an error wrapping ErrBadControlData that names the field.
func ParseControlData(out string) (ControlData, error) {
	var cd ControlData
	fields := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "WARNING:") {
			return cd, fmt.Errorf("%w: pg_controldata warns %q", ErrBadControlData, strings.TrimSpace(line))
		}
		label, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		if _, dup := fields[label]; !dup {
			fields[label] = strings.TrimSpace(val)
		}
	}
	var errs []error
	get := func(label string) (string, bool) {
		v, ok := fields[label]
		if !ok {
			errs = append(errs, fmt.Errorf("no %q line", label))
		} else if v == "" {
			errs = append(errs, fmt.Errorf("%q is empty", label))
			ok = false
		}
		return v, ok
	}
	str := func(label string, dst *string) {
		if v, ok := get(label); ok {
			*dst = v
		}
	}
	num := func(label string, dst *int) {
		if v, ok := get(label); ok {
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				errs = append(errs, fmt.Errorf("%q is %q, not a number", label, v))
				return
			}
			*dst = int(n)
		}
	}
	lsn := func(label string, dst *LSN) {
		if v, ok := get(label); ok {
			l, err := ParseLSN(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%q: %w", label, err))
				return
			}
			*dst = l
		}
	}
	num("pg_control version number", &cd.ControlVersion)
	str("Database system identifier", &cd.SystemID)
	if cd.SystemID != "" {
		if _, err := strconv.ParseUint(cd.SystemID, 10, 64); err != nil {
			errs = append(errs, fmt.Errorf("%q is %q, not a number", "Database system identifier", cd.SystemID))
		}
	}
	str("Database cluster state", &cd.State)
	if cd.State != "" && !controlStates[cd.State] {
		errs = append(errs, fmt.Errorf("%q is %q, not a known state", "Database cluster state", cd.State))
	}
	lsn("Latest checkpoint location", &cd.CheckpointLSN)
	lsn("Latest checkpoint's REDO location", &cd.RedoLSN)
	str("Latest checkpoint's REDO WAL file", &cd.RedoWALFile)
	num("Latest checkpoint's TimeLineID", &cd.TimeLineID)
	num("Latest checkpoint's PrevTimeLineID", &cd.PrevTimeLineID)
	str("Time of latest checkpoint", &cd.CheckpointTime)
	lsn("Minimum recovery ending location", &cd.MinRecoveryLSN)
	num("Min recovery ending loc's timeline", &cd.MinRecoveryTLI)
	num("Data page checksum version", &cd.DataChecksums)
	var hints string
	str("wal_log_hints setting", &hints)
	switch hints {
	case "on":
		cd.WalLogHints = true
	case "off", "":
	default:
		errs = append(errs, fmt.Errorf("%q is %q, not on or off", "wal_log_hints setting", hints))
	}
	if v, ok := fields["Bytes per WAL segment"]; ok {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 || n&(n-1) != 0 {
			errs = append(errs, fmt.Errorf("%q is %q, not a power of two", "Bytes per WAL segment", v))
		}
		cd.WALSegSize = n
	}
	if len(errs) > 0 {
		return cd, fmt.Errorf("%w: %w", ErrBadControlData, errors.Join(errs...))
	}
	return cd, nil
}

// ReadControlData runs LANG=C LC_ALL=C <binDir>/pg_controldata -D dataDir
// on the node and parses its output. When the directory has no
// global/pg_control the error wraps fs.ErrNotExist.
func ReadControlData(ctx context.Context, a Access, binDir, dataDir string) (ControlData, error) {
	node := a.Node().Name
	if err := checkPaths(binDir, dataDir); err != nil {
		return ControlData{}, fmt.Errorf("on %s: while reading the control data of %s: %w", node, dataDir, err)
	}
	script := fmt.Sprintf(`d=%s
[ -f "$d/global/pg_control" ] || { printf '%%s\n' "no $d/global/pg_control" >&2; exit %d; }
LANG=C LC_ALL=C exec %s -D "$d"`, ShellQuote(dataDir), exitNotExist, ShellQuote(path.Join(binDir, "pg_controldata")))
	out, err := runReadScript(ctx, a, "pg_controldata -D "+dataDir, script)
	var ce *CommandError
	if errors.As(err, &ce) && ce.ExitCode == exitNotExist {
		return ControlData{}, fmt.Errorf("on %s: %s has no global/pg_control: %w", node, dataDir, fs.ErrNotExist)
	}
	if err != nil {
		return ControlData{}, fmt.Errorf("while reading the control data of %s: %w", dataDir, err)
	}
	cd, err := ParseControlData(string(out))
	if err != nil {
		return cd, fmt.Errorf("on %s: pg_controldata -D %s: %w", node, dataDir, err)
	}
	return cd, nil
}
