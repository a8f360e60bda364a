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
	out, err := runReadScript(ctx, a, "examining "+strings.Join(paths, " "), b.String())
	if err != nil {
		return Machine{}, nil, fmt.Errorf("while examining %s: %w", strings.Join(paths, ", "), err)
	}
	recs, err := parseRecords(out)
	if err != nil {
		return Machine{}, nil, fmt.Errorf("on %s: while examining %s: %w", node, strings.Join(paths, ", "), err)
	}
	r := &recordReader{recs: recs}
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
sdr_machine() {
	sdr_m=$(cat /etc/machine-id 2>/dev/null) || sdr_m=$(cat /var/lib/dbus/machine-id 2>/dev/null) || sdr_m=
	printf 'machine=%s\0hostname=%s\0' "$sdr_m" "$(uname -n)"
}
# sdr_path ID PATH: records path=ID, then what is known of PATH, then end=.
sdr_path() {
	printf 'path=%s\0' "$1"
	[ -L "$2" ] && printf 'link=1\0'
	if [ -e "$2" ]; then
		if sdr_r=$(readlink -e -- "$2") && [ -n "$sdr_r" ]; then
			printf 'real=%s\0' "$sdr_r"
			[ -d "$sdr_r" ] && printf 'dir=1\0'
			printf 'stat=%s\0' "$(stat -c '%d %i %m' -- "$sdr_r" 2>&1)"
			printf 'pdev=%s\0' "$(stat -c %d -- "$(sdr_parent "$sdr_r")" 2>&1)"
			mountpoint -q -- "$sdr_r" 2>/dev/null && printf 'mp=1\0'
			if [ -d "$sdr_r" ] && sdr_e=$(find "$sdr_r" -mindepth 1 -maxdepth 1 -print -quit 2>/dev/null) && [ -z "$sdr_e" ]; then
				printf 'empty=1\0'
			fi
		else
			printf 'err=%s\0' "cannot resolve it"
		fi
	fi
	printf 'end=\0'
}
`

// recordReader walks a script's records in order.
type recordReader struct {
	recs []record
	i    int
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
		if len(f) != 3 {
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
		_, mp := r.next("mp")
		pi.MountPoint = mp || pd != pi.Dev || pi.Mount == pi.RealPath
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
