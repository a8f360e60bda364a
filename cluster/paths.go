package cluster

import (
	"context"
	"fmt"
	"path"
	"strconv"
	"strings"
)

// PathInfo is what a node says about one path: enough to tell two
// spellings of one directory apart from two directories, and to know
// whether a rename of it stays on one filesystem.
type PathInfo struct {
	Path       string // as asked
	Exists     bool   // the path, followed through symlinks, exists
	IsDir      bool   // it is (or links to) a directory
	IsSymlink  bool   // Path itself is a symlink (possibly dangling)
	RealPath   string // fully resolved ("" when missing)
	Dev, Ino   uint64 // of RealPath
	MountPoint bool   // RealPath is a mount point (its device or mount differs from its parent's)
	Mount      string // the mount point RealPath lives on (stat %m)
	Empty      bool   // an existing directory with no entries
}

// Machine identifies a host: its machine id (/etc/machine-id, or
// /var/lib/dbus/machine-id) and host name. Two nodes with one machine id
// are one machine, however the config spells their hosts.
type Machine struct{ MachineID, Hostname string }

// StatPaths reports on each path (absolute) and on the machine, in one
// round trip. Each path is cleaned first (path.Clean), so a trailing slash
// does not hide a symlink; the map is keyed by the paths as asked. A path
// that cannot be examined (a component not readable) is an error naming it.
func StatPaths(ctx context.Context, a Access, paths ...string) (Machine, map[string]PathInfo, error) {
	node := a.Node().Name
	if err := checkPaths(paths...); err != nil {
		return Machine{}, nil, fmt.Errorf("on %s: while examining paths: %w", node, err)
	}
	var b strings.Builder
	b.WriteString(shFuncs + shPathFuncs + "sdr_machine\n")
	for i, p := range paths {
		fmt.Fprintf(&b, "sdr_path %d %s\n", i, ShellQuote(path.Clean(p)))
	}
	b.WriteString("sdr_mounts\n")
	out, err := runReadScript(ctx, a, "examining "+strings.Join(paths, " "), b.String())
	if err != nil {
		return Machine{}, nil, fmt.Errorf("while examining %s: %w", strings.Join(paths, ", "), err)
	}
	recs, err := parseRecords(out)
	if err != nil {
		return Machine{}, nil, fmt.Errorf("on %s: while examining %s: %w", node, strings.Join(paths, ", "), err)
	}
	r := newRecordReader(recs)
	m := r.machine()
	infos := make(map[string]PathInfo, len(paths))
	for i, p := range paths {
		pi, err := r.pathInfo(strconv.Itoa(i), p)
		if err != nil {
			return Machine{}, nil, fmt.Errorf("on %s: while examining %s: %w", node, p, err)
		}
		infos[p] = pi
	}
	return m, infos, nil
}

// shPathFuncs report the machine and paths (see parsing in recordReader).
const shPathFuncs = `
sdr_mi=
sdr_machine() {
	sdr_m=
	if [ -r /etc/machine-id ]; then
		IFS= read -r sdr_m 2>/dev/null </etc/machine-id
	elif [ -r /var/lib/dbus/machine-id ]; then
		IFS= read -r sdr_m 2>/dev/null </var/lib/dbus/machine-id
	fi
	sdr_h=
	IFS= read -r sdr_h 2>/dev/null </proc/sys/kernel/hostname
	[ -n "$sdr_h" ] || sdr_h=$(uname -n)
	printf 'machine=%s\0hostname=%s\0' "$sdr_m" "$sdr_h"
}
sdr_nl='
'
# sdr_path ID PATH: records path=ID, then what is known of PATH, then end=.
# Whether it is a mount point (a bind mount of the same filesystem too)
# comes from sdr_mounts, once for every path.
sdr_path() {
	printf 'path=%s\0' "$1"
	[ -L "$2" ] && printf 'link=1\0'
	if [ -e "$2" ]; then
		if sdr_real "$2"; then
			sdr_mi=1
			printf 'real=%s\0' "$sdr_r"
			[ -d "$sdr_r" ] && printf 'dir=1\0'
			sdr_dir "$sdr_r"
			# One stat for the path and its directory: two lines.
			if sdr_st=$(stat -c '%d %i %m' -- "$sdr_r" "$sdr_pp" 2>&1); then
				case $sdr_st in
				*"$sdr_nl"*"$sdr_nl"*) printf 'stat=%s\0' "$sdr_st" ;;
				*"$sdr_nl"*)
					sdr_p2=${sdr_st#*"$sdr_nl"}
					printf 'stat=%s\0pdev=%s\0' "${sdr_st%%"$sdr_nl"*}" "${sdr_p2%% *}"
					;;
				*) printf 'stat=%s\0' "$sdr_st" ;;
				esac
			else
				printf 'stat=%s\0' "$sdr_st"
			fi
			[ -d "$sdr_r" ] && sdr_empty "$sdr_r" && printf 'empty=1\0'
		else
			printf 'err=%s\0' "cannot resolve it"
		fi
	fi
	printf 'end=\0'
}
# sdr_empty DIR: DIR, which may be read, has no entries.
sdr_empty() {
	[ -r "$1" ] && [ -x "$1" ] || return 1
	for sdr_e in "$1"/* "$1"/.[!.]* "$1"/..?*; do
		[ -e "$sdr_e" ] || [ -L "$sdr_e" ] && return 1
	done
	return 0
}
# sdr_mounts: after the paths, when one of them existed, the mount points
# (the fifth field of mountinfo, escaped as there), one per line.
sdr_mounts() {
	[ -n "$sdr_mi" ] || return 0
	sdr_o=$(cut -d ' ' -f 5 /proc/self/mountinfo 2>/dev/null) && printf 'mounts=%s\0' "$sdr_o"
	return 0
}
`

// recordReader walks a script's records in order. The mount points
// (sdr_mounts) are taken out first, wherever they are.
type recordReader struct {
	recs []record
	i    int
	// mounts holds the mount points the node listed (unescaped); nil when
	// it listed none (no path existed, or /proc/self/mountinfo could not
	// be read).
	mounts map[string]bool
}

func newRecordReader(recs []record) *recordReader {
	r := &recordReader{}
	for _, rec := range recs {
		if rec.key != "mounts" {
			r.recs = append(r.recs, rec)
			continue
		}
		r.mounts = map[string]bool{}
		for _, l := range strings.Split(rec.val, "\n") {
			if l != "" {
				r.mounts[unescapeMountinfo(l)] = true
			}
		}
	}
	return r
}

// unescapeMountinfo undoes the octal escapes (\040 for a space, \011,
// \012, \134) of a path in /proc/self/mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) && isOctal(s[i+1:i+4]) {
			n, _ := strconv.ParseUint(s[i+1:i+4], 8, 8)
			b.WriteByte(byte(n))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if s[i] < '0' || s[i] > '7' {
			return false
		}
	}
	return true
}

// next returns the next record if its key is key.
func (r *recordReader) next(key string) (string, bool) {
	if r.i < len(r.recs) && r.recs[r.i].key == key {
		r.i++
		return r.recs[r.i-1].val, true
	}
	return "", false
}

func (r *recordReader) machine() Machine {
	var m Machine
	m.MachineID, _ = r.next("machine")
	m.Hostname, _ = r.next("hostname")
	return m
}

// pathInfo reads what sdr_path reported for id.
func (r *recordReader) pathInfo(id, asked string) (PathInfo, error) {
	pi := PathInfo{Path: asked}
	if v, ok := r.next("path"); !ok || v != id {
		return pi, fmt.Errorf("the node's report lacks the path (got %q)", v)
	}
	_, pi.IsSymlink = r.next("link")
	if v, ok := r.next("real"); ok {
		pi.Exists, pi.RealPath = true, v
		_, pi.IsDir = r.next("dir")
		st, _ := r.next("stat")
		f := strings.SplitN(st, " ", 3)
		if len(f) != 3 || strings.Contains(st, "\n") {
			return pi, fmt.Errorf("stat of %s failed: %s", pi.RealPath, st)
		}
		var err1, err2 error
		pi.Dev, err1 = strconv.ParseUint(f[0], 10, 64)
		pi.Ino, err2 = strconv.ParseUint(f[1], 10, 64)
		pi.Mount = f[2]
		if err1 != nil || err2 != nil {
			return pi, fmt.Errorf("stat of %s failed: %s", pi.RealPath, st)
		}
		pdev, _ := r.next("pdev")
		pd, err := strconv.ParseUint(pdev, 10, 64)
		if err != nil {
			return pi, fmt.Errorf("stat of the parent of %s failed: %s", pi.RealPath, pdev)
		}
		pi.MountPoint = r.mounts[pi.RealPath] || pd != pi.Dev || pi.Mount == pi.RealPath
		if pi.MountPoint {
			pi.Mount = pi.RealPath
		}
		_, pi.Empty = r.next("empty")
	} else if msg, ok := r.next("err"); ok {
		return pi, fmt.Errorf("it exists but %s", msg)
	}
	if _, ok := r.next("end"); !ok {
		return pi, fmt.Errorf("the node's report on it is incomplete")
	}
	return pi, nil
}
