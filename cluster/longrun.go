package cluster

import (
	"context"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// TaskEnv is the environment variable that marks every process RunLong
// starts: SDR_TASK=<tag>, inherited by all its children.
const TaskEnv = "SDR_TASK"

// longRunGrace is how long the watcher of a RunLong command waits after
// SIGTERM before it sends SIGKILL to the command's process group.
const longRunGrace = 3 * time.Second

var tagRE = regexp.MustCompile(`^[A-Za-z0-9_.:@+,-]{1,200}$`)

func checkTag(tag string) error {
	if !tagRE.MatchString(tag) {
		return fmt.Errorf("task tag %q is not valid (letters, digits and _.:@+,- only)", tag)
	}
	return nil
}

// RunLong runs cmd on the node so that it ends with the run: cmd runs in a
// new session and process group (setsid) with SDR_TASK=<tag> in its
// environment (inherited by every child, e.g. pg_basebackup's -X stream
// child), and a watcher on the node ends the whole group (SIGTERM, then
// SIGKILL after a few seconds) as soon as sdr's side goes away - sdr died or
// the SSH connection dropped, seen as EOF on a stdin pipe that sdr holds
// open for the life of the command - or when ctx ends; RunLong then waits
// for that before it returns ctx's error. When cmd ends by itself, whatever
// it left in its group is ended too. opts.Stderr streams stderr; opts.Env
// is exported; opts.Stdin must be nil; stdout is returned, or streamed to
// opts.Stdout (see RunOpts). A non-zero exit is a *CommandError whose Cmd
// is cmd.
//
// A process that leaves the group (its own setsid) escapes the watcher but
// still carries the tag: KillTagged finds it.
func RunLong(ctx context.Context, a Access, tag, cmd string, opts RunOpts) ([]byte, error) {
	node := a.Node().Name
	if err := checkTag(tag); err != nil {
		return nil, fmt.Errorf("on %s: %w", node, err)
	}
	if opts.Stdin != nil {
		return nil, fmt.Errorf("on %s: RunLong takes no stdin", node)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("on %s: %q not started: %w", node, shorten(cmd, 200), context.Cause(ctx))
	}
	script := shFuncs + fmt.Sprintf(`exec 3<&0 </dev/null
%s=%s setsid /bin/sh -c %s 3<&- &
sdr_p=$!
{
	cat <&3
	sdr_endgroup "$sdr_p"
} >/dev/null 2>&1 &
sdr_w=$!
exec 3<&-
wait "$sdr_p"
sdr_rc=$?
kill "$sdr_w" 2>/dev/null
sdr_endgroup "$sdr_p"
exit $sdr_rc
`, TaskEnv, tag, ShellQuote(cmd))
	// The command must outlive nothing but sdr's side: ctx is handled here,
	// by closing stdin, so that the watcher ends the group.
	p, err := a.Start(context.WithoutCancel(ctx), script, RunOpts{Stdout: opts.Stdout, Stderr: opts.Stderr, Env: opts.Env})
	if err != nil {
		return nil, err
	}
	type result struct {
		out []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := p.Wait()
		done <- result{out, err}
	}()
	var res result
	select {
	case res = <-done:
	case <-ctx.Done():
		_ = p.Stdin().Close()
		select {
		case <-done:
		case <-time.After(longRunGrace + 5*time.Second):
			_ = p.Kill()
			select {
			case <-done:
			case <-time.After(2 * time.Second):
			}
		}
		return nil, fmt.Errorf("on %s: %q stopped: %w", node, shorten(cmd, 200), context.Cause(ctx))
	}
	var ce *CommandError
	if errors.As(res.err, &ce) {
		ce.Cmd = cmd
	}
	return res.out, res.err
}

// TaggedProc is a process KillTagged found.
type TaggedProc struct {
	PID  int
	Comm string // /proc/<pid>/comm
	Args string // the command line, arguments separated by spaces
}

// KillTagged ends every process of the node's OS user whose environment
// (/proc/<pid>/environ) holds exactly SDR_TASK=<tag> - what a killed run's
// RunLong left behind - except the script's own process group and except
// any PostgreSQL server process (comm postgres or postmaster: a server
// started by a tagged command is never killed). It sends SIGTERM, then
// SIGKILL to those still there (and still tagged) after grace, and looks
// again (a dying process may have started others), up to five rounds. It
// returns what it found. Processes that survive all that are an error.
func KillTagged(ctx context.Context, a Access, tag string, grace time.Duration) ([]TaggedProc, error) {
	return KillTaggedThen(ctx, a, tag, grace, Then{})
}

// Then is what KillTaggedThen does once no tagged process is left, in the
// same remote script: first it empties each trash in Empty, in order, as
// EmptyTrash does, then it retires the trees in Retire as RetireTrees does
// (renamed into their trash, deleted there in the background).
type Then struct {
	Empty  []string
	Retire []Retire
}

func (t Then) none() bool { return len(t.Empty) == 0 && len(t.Retire) == 0 }

// script checks t's paths and returns its shell lines.
func (t Then) script(node string) (string, error) {
	var b strings.Builder
	for _, tr := range t.Empty {
		if err := checkPaths(tr); err != nil {
			return "", fmt.Errorf("on %s: while emptying trash: %w", node, err)
		}
		if path.Clean(tr) == "/" {
			return "", fmt.Errorf("on %s: refusing to empty / as trash", node)
		}
		fmt.Fprintf(&b, "\tprintf 'trash=%%s\\0' %[1]s\n\tsdr_empty %[1]s\n", ShellQuote(path.Clean(tr)))
	}
	if len(t.Retire) > 0 {
		lines, err := retireLines(node, t.Retire)
		if err != nil {
			return "", err
		}
		b.WriteString("\tprintf 'retire=1\\0'\n")
		for _, l := range strings.Split(strings.TrimSuffix(lines, "\n"), "\n") {
			b.WriteString("\t" + l + "\n")
		}
	}
	return b.String(), nil
}

// KillTaggedThen is KillTagged, then, in the same remote script and only
// when no tagged process is left, then's deletes. A delete that fails is an
// error naming the trash or the tree (as EmptyTrash's and RetireTrees'
// errors do), with the processes found returned all the same. Emptying a
// full trash takes time: bound ctx by the run's deadline.
func KillTaggedThen(ctx context.Context, a Access, tag string, grace time.Duration, then Then) ([]TaggedProc, error) {
	node := a.Node().Name
	if err := checkTag(tag); err != nil {
		return nil, fmt.Errorf("on %s: %w", node, err)
	}
	thenLines, err := then.script(node)
	if err != nil {
		return nil, err
	}
	funcs := shFuncs
	if !then.none() {
		funcs += shFsFuncs
	}
	tenths := int((grace + 99*time.Millisecond) / (100 * time.Millisecond))
	script := funcs + fmt.Sprintf(`t=%s
sdr_tagged() {
	grep -qzxF -e "$t" "/proc/$1/environ" 2>/dev/null
}
# sdr_done: no tagged process is left; what comes after, then success.
sdr_done() {
%s	exit 0
}
sdr_stat $$
sdr_own=$sdr_pgid
# sdr_scan: finds the tagged processes, reports them and sends SIGTERM.
sdr_scan() {
	sdr_found=
	for sdr_f in $(grep -lzxF -e "$t" /proc/[0-9]*/environ 2>/dev/null); do
		sdr_p=${sdr_f#/proc/}
		sdr_p=${sdr_p%%%%/environ}
		[ -O "/proc/$sdr_p" ] && [ "$sdr_p" != "$$" ] || continue
		sdr_alive "$sdr_p" && [ "$sdr_pgid" != "$sdr_own" ] || continue
		sdr_c=$(cat "/proc/$sdr_p/comm" 2>/dev/null) || continue
		case $sdr_c in postgres | postmaster) continue ;; esac
		sdr_a=$(tr '\0\n' '  ' <"/proc/$sdr_p/cmdline" 2>/dev/null)
		printf 'proc=%%s\0comm=%%s\0args=%%s\0' "$sdr_p" "$sdr_c" "$sdr_a"
		sdr_found="$sdr_found $sdr_p"
		kill -TERM "$sdr_p" 2>/dev/null
	done
}
# sdr_left: those still alive and still tagged (a pid reused meanwhile is
# someone else's).
sdr_left() {
	sdr_l=
	for sdr_p in $sdr_found; do
		sdr_alive "$sdr_p" && sdr_tagged "$sdr_p" && sdr_l="$sdr_l $sdr_p"
	done
	sdr_found=$sdr_l
	[ -n "$sdr_found" ]
}
# Rounds, because a process that dies may have started others meanwhile.
sdr_round=0
while [ "$sdr_round" -lt 5 ]; do
	sdr_scan
	[ -n "$sdr_found" ] || sdr_done
	sdr_i=0
	while sdr_left && [ "$sdr_i" -lt %d ]; do
		sleep 0.1
		sdr_i=$((sdr_i + 1))
	done
	if sdr_left; then
		for sdr_p in $sdr_found; do
			kill -KILL "$sdr_p" 2>/dev/null
		done
		sdr_i=0
		while sdr_left && [ "$sdr_i" -lt 20 ]; do
			sleep 0.1
			sdr_i=$((sdr_i + 1))
		done
		if sdr_left; then
			printf 'left=%%s\0' "$sdr_found"
			exit 1
		fi
	fi
	sdr_round=$((sdr_round + 1))
done
sdr_scan
[ -z "$sdr_found" ] && sdr_done
printf 'left=%%s\0' "$sdr_found"
exit 1
`, ShellQuote(TaskEnv+"="+tag), thenLines, tenths)
	out, err := runScript(ctx, a, "ending processes tagged "+TaskEnv+"="+tag, script)
	var ce *CommandError
	if err != nil && !errors.As(err, &ce) {
		return nil, fmt.Errorf("while ending processes tagged %s=%s: %w", TaskEnv, tag, err)
	}
	recs, perr := parseRecords(out)
	if perr != nil {
		return nil, fmt.Errorf("on %s: while ending processes tagged %s=%s: %w", node, TaskEnv, tag, perr)
	}
	var found []TaggedProc
	var left, trash string
	retiring := false
	seen := map[int]bool{}
	for i, r := range recs {
		switch r.key {
		case "proc":
			pid, _ := strconv.Atoi(r.val)
			if seen[pid] || i+2 >= len(recs) {
				continue
			}
			seen[pid] = true
			found = append(found, TaggedProc{PID: pid, Comm: recs[i+1].val, Args: strings.TrimSpace(recs[i+2].val)})
		case "left":
			left = strings.TrimSpace(r.val)
		case "trash":
			trash = r.val
		case "retire":
			retiring = true
		}
	}
	switch {
	case left != "":
		return found, fmt.Errorf("on %s: processes tagged %s=%s still alive after SIGKILL: %s", node, TaskEnv, tag, left)
	case err == nil:
		return found, nil
	case retiring:
		rep := readFsReport(out)
		where := fmt.Sprintf("on %s: moving old trees into the trash", node)
		if rep.dir != "" {
			where = fmt.Sprintf("on %s: removing %s", node, rep.dir)
		}
		return found, removeError(where, rep, ce, err)
	case trash != "":
		if rep := readFsReport(out); rep.why != "" {
			return found, fmt.Errorf("on %s: emptying trash %s: %s: %w", node, trash, rep.why, err)
		}
		return found, fmt.Errorf("on %s: while emptying trash %s: %w", node, trash, err)
	}
	return found, fmt.Errorf("while ending processes tagged %s=%s: %w", TaskEnv, tag, err)
}

// StartFed starts cmd on the node to read what the caller writes to the
// returned Proc's Stdin: a stream that sdr relays from another command,
// such as a tar archive. Like RunLong's commands, cmd runs with
// SDR_TASK=<tag> in its environment, so that KillTagged finds it if it
// outlives a killed run. It reads EOF, and so ends, when the caller closes
// Stdin, when sdr dies or when the SSH connection drops; when ctx ends it
// is killed (Proc.Kill). opts.Stdin must be nil.
func StartFed(ctx context.Context, a Access, tag, cmd string, opts RunOpts) (Proc, error) {
	node := a.Node().Name
	if err := checkTag(tag); err != nil {
		return nil, fmt.Errorf("on %s: %w", node, err)
	}
	env := map[string]string{TaskEnv: tag}
	for k, v := range opts.Env {
		if k != TaskEnv {
			env[k] = v
		}
	}
	opts.Env = env
	return a.Start(ctx, cmd, opts)
}
