// Package benchcalls is the calls log shared by sdr-bench and its timing
// shim (e2e/cmd/sdr-bench-shim): one line per call of a shimmed
// PostgreSQL program, written with a single append so that concurrent
// calls do not interleave:
//
//	<program> TAB <mode> TAB <data dir> TAB <start unix ns> TAB <end unix ns> TAB <exit code> NL
//
// It uses the standard library only, to keep the shim small and quick to start.
package benchcalls

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// FileName is the calls log's name in the shim directory.
const FileName = "calls.log"

// Record is one timed call.
type Record struct {
	Prog  string // pg_ctl or pg_basebackup
	Mode  string // pg_ctl's mode (start, stop, status, ...); "-" for other programs, "?" when none is given
	Dir   string // the -D argument, "-" when none is given
	Start time.Time
	End   time.Time
	Exit  int
}

// Line is the record as one line of the log.
func (r Record) Line() string {
	return fmt.Sprintf("%s\t%s\t%s\t%d\t%d\t%d\n", r.Prog, r.Mode, r.Dir, r.Start.UnixNano(), r.End.UnixNano(), r.Exit)
}

// pgCtlModes are pg_ctl's operation modes.
var pgCtlModes = map[string]bool{"init": true, "initdb": true, "start": true, "stop": true, "restart": true,
	"reload": true, "status": true, "promote": true, "logrotate": true, "kill": true}

// Mode is the mode of a call of prog with args: for pg_ctl the first
// argument that is one of its modes.
func Mode(prog string, args []string) string {
	if prog != "pg_ctl" {
		return "-"
	}
	for _, a := range args {
		if pgCtlModes[a] {
			return a
		}
	}
	return "?"
}

// DataDir is the data directory given with -D DIR, -DDIR, --pgdata DIR or
// --pgdata=DIR ("-" when none is given).
func DataDir(args []string) string {
	for i, a := range args {
		switch {
		case (a == "-D" || a == "--pgdata") && i+1 < len(args):
			return args[i+1]
		case strings.HasPrefix(a, "--pgdata="):
			return strings.TrimPrefix(a, "--pgdata=")
		case strings.HasPrefix(a, "-D") && len(a) > 2:
			return a[2:]
		}
	}
	return "-"
}

// Parse reads a calls log.
func Parse(r io.Reader) ([]Record, error) {
	var out []Record
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		f := strings.Split(sc.Text(), "\t")
		if len(f) != 6 {
			return nil, fmt.Errorf("calls log line %d: %d fields, want 6: %q", n, len(f), sc.Text())
		}
		s, err1 := strconv.ParseInt(f[3], 10, 64)
		e, err2 := strconv.ParseInt(f[4], 10, 64)
		x, err3 := strconv.Atoi(f[5])
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, fmt.Errorf("calls log line %d: %w", n, err)
		}
		out = append(out, Record{Prog: f[0], Mode: f[1], Dir: f[2], Start: time.Unix(0, s), End: time.Unix(0, e), Exit: x})
	}
	return out, sc.Err()
}
