package cluster

import (
	"context"
	"encoding/base64"
	"fmt"
	"path"
	"strconv"
	"strings"
)

// DataDirProbe is what one look at a node says about a data directory:
// everything the classifier of data directories needs, taken at one moment.
type DataDirProbe struct {
	Machine Machine
	Dir     PathInfo
	// Control is pg_controldata's view; nil when there is no
	// global/pg_control.
	Control *ControlData
	// ControlErr says why pg_controldata failed (or its output could not
	// be read) on an existing pg_control.
	ControlErr string
	// PostmasterPIDFile: postmaster.pid exists (a stale one is left by a
	// server that crashed or was killed).
	PostmasterPIDFile bool
	// PostmasterPID is the first line of postmaster.pid, 0 when none or
	// unreadable.
	PostmasterPID int
	// PostmasterAlive: that pid is alive AND its /proc/<pid>/cwd is
	// Dir.RealPath, so a reused pid does not count. A process whose working
	// directory the node's user may not read does not count either (it is
	// not that user's server; PostgreSQL itself reasons so about a pid it
	// may not signal).
	PostmasterAlive               bool
	StandbySignal, RecoverySignal bool
	// Files holds the contents of the requested files (keyed as asked:
	// relative to the data directory, or absolute); missing ones are absent.
	Files map[string][]byte
	// Tablespaces maps each entry of pg_tblspc (the tablespace's OID) to its
	// link target ("" for an entry that is not a symlink, such as an
	// in-place tablespace).
	Tablespaces map[string]string
	// Extra holds StatPaths of the extra paths asked, keyed as asked.
	Extra map[string]PathInfo
}

// ProbeDataDir looks at dataDir on the node in one remote command: the
// machine, the directory's identity (StatPaths), pg_controldata (from
// binDir, with LANG=C), postmaster.pid and whether that server is alive
// there, the signal files, the tablespace links, the contents of the small
// files asked for (relative to dataDir, or absolute) and StatPaths of the
// extra paths. The files are sent base64-encoded, so any byte in them is
// safe. A missing dataDir is not an error: Dir.Exists is false.
func ProbeDataDir(ctx context.Context, a Access, binDir, dataDir string, files []string, extra []string) (DataDirProbe, error) {
	node := a.Node().Name
	fail := func(err error) (DataDirProbe, error) {
		return DataDirProbe{}, fmt.Errorf("on %s: while probing data directory %s: %w", node, dataDir, err)
	}
	if err := checkPaths(append([]string{binDir, dataDir}, extra...)...); err != nil {
		return fail(err)
	}
	full := make([]string, len(files))
	for i, f := range files {
		full[i] = f
		if !path.IsAbs(f) {
			full[i] = path.Join(dataDir, f)
		}
		if err := checkPaths(full[i]); err != nil {
			return fail(err)
		}
	}
	var b strings.Builder
	b.WriteString(shFuncs + shPathFuncs + shProbeFuncs + "sdr_machine\n")
	fmt.Fprintf(&b, "d=%s\nsdr_path d \"$d\"\n", ShellQuote(path.Clean(dataDir)))
	for i, x := range extra {
		fmt.Fprintf(&b, "sdr_path x%d %s\n", i, ShellQuote(path.Clean(x)))
	}
	b.WriteString("sdr_mounts\n")
	fmt.Fprintf(&b, "sdr_probe \"$d\" %s\n", ShellQuote(path.Join(binDir, "pg_controldata")))
	for i, f := range full {
		fmt.Fprintf(&b, "sdr_file %d %s\n", i, ShellQuote(f))
	}
	out, err := runReadScript(ctx, a, "probing "+dataDir, b.String())
	if err != nil {
		return DataDirProbe{}, fmt.Errorf("while probing data directory %s: %w", dataDir, err)
	}
	recs, err := parseRecords(out)
	if err != nil {
		return fail(err)
	}
	r := newRecordReader(recs)
	p := DataDirProbe{Machine: r.machine(), Files: map[string][]byte{}, Tablespaces: map[string]string{}, Extra: map[string]PathInfo{}}
	if p.Dir, err = r.pathInfo("d", dataDir); err != nil {
		return fail(err)
	}
	for i, x := range extra {
		pi, err := r.pathInfo("x"+strconv.Itoa(i), x)
		if err != nil {
			return fail(fmt.Errorf("while examining %s: %w", x, err))
		}
		p.Extra[x] = pi
	}
	for ; r.i < len(r.recs); r.i++ {
		k, v := r.recs[r.i].key, r.recs[r.i].val
		switch {
		case k == "control":
			cd, err := ParseControlData(v)
			if err != nil {
				p.ControlErr = err.Error()
			} else {
				p.Control = &cd
			}
		case k == "controlerr":
			p.ControlErr = "pg_controldata failed: " + summarizeStderr(v)
		case k == "pmpid":
			p.PostmasterPIDFile = true
			if n, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(v), "-")); err == nil && n > 0 {
				p.PostmasterPID = n
			}
		case k == "pmalive":
			p.PostmasterAlive = true
		case k == "standby":
			p.StandbySignal = true
		case k == "recovery":
			p.RecoverySignal = true
		case k == "tblspc":
			oid, target, _ := strings.Cut(v, "=")
			p.Tablespaces[oid] = target
		case strings.HasPrefix(k, "fileerr"):
			i, _ := strconv.Atoi(strings.TrimPrefix(k, "fileerr"))
			if i >= 0 && i < len(files) {
				return fail(fmt.Errorf("reading %s: %s", full[i], v))
			}
			return fail(fmt.Errorf("unexpected record %q", k))
		case strings.HasPrefix(k, "file"):
			i, err := strconv.Atoi(strings.TrimPrefix(k, "file"))
			if err != nil || i < 0 || i >= len(files) {
				return fail(fmt.Errorf("unexpected record %q", k))
			}
			data, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				return fail(fmt.Errorf("reading %s: %w", full[i], err))
			}
			p.Files[files[i]] = data
		default:
			return fail(fmt.Errorf("unexpected record %q", k))
		}
	}
	return p, nil
}

// shProbeFuncs look into a data directory.
const shProbeFuncs = `
# sdr_probe DIR PG_CONTROLDATA
sdr_probe() {
	[ -d "$1" ] || return 0
	if [ -f "$1/global/pg_control" ]; then
		if sdr_o=$(LANG=C LC_ALL=C "$2" -D "$1" 2>&1); then
			printf 'control=%s\0' "$sdr_o"
		else
			printf 'controlerr=%s\0' "$sdr_o"
		fi
	fi
	if [ -f "$1/postmaster.pid" ]; then
		sdr_p=
		IFS= read -r sdr_p 2>/dev/null <"$1/postmaster.pid"
		printf 'pmpid=%s\0' "$sdr_p"
		sdr_busy "$1" >/dev/null && printf 'pmalive=1\0'
	fi
	[ -e "$1/standby.signal" ] && printf 'standby=1\0'
	[ -e "$1/recovery.signal" ] && printf 'recovery=1\0'
	for sdr_t in "$1"/pg_tblspc/*; do
		[ -e "$sdr_t" ] || [ -L "$sdr_t" ] || continue
		printf 'tblspc=%s=%s\0' "${sdr_t##*/}" "$(readlink -- "$sdr_t")"
	done
	return 0
}
# sdr_file ID FILE: its contents in base64, if it is a regular file.
sdr_file() {
	[ -f "$2" ] || return 0
	if sdr_b=$(base64 -w 0 -- "$2" 2>&1); then
		printf 'file%s=%s\0' "$1" "$sdr_b"
	else
		printf 'fileerr%s=%s\0' "$1" "$sdr_b"
	fi
}
`
