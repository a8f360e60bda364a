package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// The node primitives (paths.go, controldata.go, probe.go, fsops.go,
// longrun.go, nodelock.go) each run one POSIX sh script on the node through
// Access.Run, so that what they check and what they do happen in one
// remote call, with no window between them. The scripts use GNU coreutils
// and util-linux (stat, readlink, mv, mktemp, setsid, flock, mountpoint) as
// on Debian 12 and RHEL 9, and /proc.
//
// Scripts report to sdr in records "key=value\0" on stdout: values may hold
// any byte but NUL (paths cannot hold one; file contents are base64), so no
// file name can break the parse.

// shFuncs are shell functions the scripts share.
const shFuncs = `
# sdr_stat PID: sets sdr_state and sdr_pgid from /proc/PID/stat; fails when
# the process is gone. (The command name may hold spaces and parentheses:
# fields are counted after its last ")".) The shell's read is enough but
# for a command name with a newline in it.
sdr_stat() {
	sdr_sp=$1 sdr_s=
	IFS= read -r sdr_s 2>/dev/null <"/proc/$sdr_sp/stat" || [ -n "$sdr_s" ] || return 1
	sdr_s=${sdr_s##*) }
	set -- $sdr_s
	# A command name with a newline cuts the line short: read it all.
	if [ $# -lt 20 ]; then
		sdr_s=$(cat "/proc/$sdr_sp/stat" 2>/dev/null) && [ -n "$sdr_s" ] || return 1
		sdr_s=${sdr_s##*) }
		set -- $sdr_s
	fi
	sdr_state=$1 sdr_pgid=$3
}
# sdr_alive PID: the process exists and is not a zombie.
sdr_alive() {
	sdr_stat "$1" && [ "$sdr_state" != Z ] && [ "$sdr_state" != X ]
}
# sdr_grouplive PGID: a process of the group is alive (not a zombie: an
# init that is slow to reap must not look like a survivor).
sdr_grouplive() {
	cat /proc/[0-9]*/stat 2>/dev/null | awk -v g="$1" '{ sub(/.*\) /, ""); if ($3 == g && $1 != "Z" && $1 != "X") { f = 1; exit } } END { exit !f }'
}
# sdr_endgroup PGID: SIGTERM to the process group, SIGKILL after 3 s to
# what is left of it.
sdr_endgroup() {
	kill -TERM -"$1" 2>/dev/null || return 0
	sdr_g=0
	while sdr_grouplive "$1"; do
		sdr_g=$((sdr_g + 1))
		if [ "$sdr_g" -gt 30 ]; then
			kill -KILL -"$1" 2>/dev/null
			return 0
		fi
		sleep 0.1
	done
}
# sdr_busy DIR: prints the pid of a live postmaster in DIR and succeeds:
# postmaster.pid's first line names a live process whose working directory
# is DIR's real path (a reused pid has another one). A process whose
# working directory we may not read is not ours, so not DIR's postmaster
# (PostgreSQL reasons the same way about a pid it may not signal).
sdr_busy() {
	[ -f "$1/postmaster.pid" ] || return 1
	sdr_p=
	IFS= read -r sdr_p 2>/dev/null <"$1/postmaster.pid" || [ -n "$sdr_p" ] || return 1
	sdr_p=${sdr_p#-}
	case $sdr_p in '' | *[!0-9]*) return 1 ;; esac
	sdr_alive "$sdr_p" || return 1
	# The working directory as the process sees it (a deleted one gives
	# no path), against DIR's real path.
	sdr_c=$(CDPATH= cd -P -- "/proc/$sdr_p/cwd" 2>/dev/null && pwd -P 2>/dev/null) || return 1
	sdr_real "$1" || return 1
	[ -n "$sdr_c" ] && [ "$sdr_c" = "$sdr_r" ] || return 1
	printf '%s' "$sdr_p"
}
# sdr_mnt DIR: the id of the mount DIR's entries live on (from the fdinfo
# of an open descriptor, so a bind mount of the same filesystem counts as
# another mount).
sdr_mnt() {
	sed -n 's/^mnt_id:[[:space:]]*//p' /proc/self/fdinfo/8 8<"$1"
}
# sdr_dir PATH: sets sdr_pp to PATH's directory.
sdr_dir() {
	case $1 in
	*/*) sdr_pp=${1%/*} ;;
	*) sdr_pp=. ;;
	esac
	[ -n "$sdr_pp" ] || sdr_pp=/
}
# sdr_real PATH: sets sdr_r to the real path of PATH, which exists (every
# symlink resolved) and succeeds; fails when it cannot be resolved. The
# shell's cd -P and pwd -P resolve a directory it may enter, and the
# directory of a file that is not a symlink; readlink -e the rest.
sdr_real() {
	sdr_r=
	if [ -d "$1" ]; then
		sdr_r=$(CDPATH= cd -P -- "$1" 2>/dev/null && pwd -P 2>/dev/null)
	elif [ ! -L "$1" ] && [ -e "$1" ]; then
		sdr_dir "$1"
		sdr_r=$(CDPATH= cd -P -- "$sdr_pp" 2>/dev/null && pwd -P 2>/dev/null) &&
			case $sdr_r in /*) sdr_r=${sdr_r%/}/${1##*/} ;; esac
	fi
	case $sdr_r in
	/*) ;;
	*) sdr_r=$(readlink -e -- "$1" 2>/dev/null) ;;
	esac
	[ -n "$sdr_r" ]
}
`

// record is one "key=value" a script reported.
type record struct{ key, val string }

// parseRecords splits a script's stdout into records.
func parseRecords(out []byte) ([]record, error) {
	var recs []record
	for len(out) > 0 {
		i := bytes.IndexByte(out, 0)
		if i < 0 {
			return nil, fmt.Errorf("unterminated record %q", shorten(string(out), 80))
		}
		kv := string(out[:i])
		out = out[i+1:]
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("malformed record %q", shorten(kv, 80))
		}
		recs = append(recs, record{k, v})
	}
	return recs, nil
}

// checkPaths refuses paths that a script cannot take safely.
func checkPaths(paths ...string) error {
	for _, p := range paths {
		switch {
		case p == "":
			return errors.New("empty path")
		case strings.ContainsRune(p, 0):
			return fmt.Errorf("path %q holds a NUL byte", p)
		case !path.IsAbs(p):
			return fmt.Errorf("path %q is not absolute", p)
		}
	}
	return nil
}

// runReadScript runs the script of a primitive that only reads: marked
// so, it also runs through an Access made by ReadOnly.
func runReadScript(ctx context.Context, a Access, what, script string) ([]byte, error) {
	return runScript(ctx, a, what, readOnlyMark+script)
}

// runScript runs a primitive's script. A *CommandError from it gets what
// as its Cmd, so that messages name the operation, not the script text.
func runScript(ctx context.Context, a Access, what, script string) ([]byte, error) {
	return runScriptIn(ctx, a, what, script, nil)
}

// runScriptIn is runScript with stdin fed to the script.
func runScriptIn(ctx context.Context, a Access, what, script string, stdin io.Reader) ([]byte, error) {
	out, err := a.Run(ctx, script, RunOpts{Stdin: stdin})
	var ce *CommandError
	if errors.As(err, &ce) {
		ce.Cmd = what
	}
	return out, err
}
