package cluster

import (
	"context"
	"fmt"
	"path"
)

// ServerWait is what RunServerCommand may return on before its command
// ends.
type ServerWait int

const (
	// Started: a live postmaster in the data directory (sdr_busy) whose
	// postmaster.pid says "ready" or "standby".
	Started ServerWait = iota
	// Stopped: no postmaster.pid in the data directory.
	Stopped
)

// serverPoll is the pause between two looks at postmaster.pid.
const serverPoll = "0.02"

// RunServerCommand runs cmd, a command that starts or stops PostgreSQL in
// dataDir and waits for it (pg_ctl start -w, pg_ctl stop -w), and returns
// as soon as the data directory shows what w names, or when cmd ends,
// whichever comes first. pg_ctl looks at postmaster.pid only every 100 ms
// and so returns up to 100 ms after the server is ready or gone; this looks
// every 20 ms, with the shell's builtins. When the data directory shows it
// first, cmd is left to finish on its own (its output is discarded); when
// cmd ends first, its exit is the result and its output goes to stderr, so
// that a failure shows pg_ctl's message. cmd runs with stdin from
// /dev/null.
//
// A Started seen before cmd ends comes from postmaster.pid's own status
// line (PostgreSQL 10 and later), checked against a live process whose
// working directory is dataDir, so a stale file does not count.
func RunServerCommand(ctx context.Context, a Access, cmd, dataDir string, w ServerWait) error {
	node := a.Node().Name
	if err := checkPaths(dataDir); err != nil {
		return fmt.Errorf("on %s: %w", node, err)
	}
	seen := `[ -e "$d/postmaster.pid" ] || exit 0`
	if w == Started {
		// Line 8 of postmaster.pid is the postmaster's status.
		seen = `sdr_n=0
	sdr_st=
	if [ -f "$d/postmaster.pid" ]; then
		while IFS= read -r sdr_l; do
			sdr_n=$((sdr_n + 1))
			if [ "$sdr_n" -eq 8 ]; then
				sdr_st=$sdr_l
				break
			fi
		done <"$d/postmaster.pid"
	fi
	case $sdr_st in
	ready* | standby*) sdr_busy "$d" >/dev/null && exit 0 ;;
	esac`
	}
	script := shFuncs + fmt.Sprintf(`d=%s
sdr_o=$(mktemp) || exit 1
exec 3>"$sdr_o" 4<"$sdr_o"
rm -f -- "$sdr_o"
{ %s; } >&3 2>&3 </dev/null &
sdr_c=$!
exec 3>&-
while kill -0 "$sdr_c" 2>/dev/null; do
	%s
	sleep %s
done
wait "$sdr_c"
sdr_rc=$?
cat <&4 >&2
exit $sdr_rc
`, ShellQuote(path.Clean(dataDir)), cmd, seen, serverPoll)
	_, err := runScript(ctx, a, cmd, script)
	return err
}
