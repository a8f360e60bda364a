package cluster

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"io"
	"sync"
)

// frame marks where a remote command's own stdout begins and ends.
//
// OpenSSH runs a command as `$SHELL -c '<command>'` in the user's login
// shell, whose startup files may print to stdout (a .bashrc that echoes)
// and whose syntax may not be POSIX (csh, fish). So SSH sends every command
// as
//
//	/bin/sh -c 'eval "$(printf %s <base64 of the script> | base64 -d)"'
//
// which every shell passes on unchanged (the quoted part holds no newline,
// backslash, "!" or quote of its own), and the script prints a random
// marker before and after the command, keeping its exit code:
//
//	printf %s <begin>; printf %s <begin> >&2
//	(
//	<command>
//	)
//	sdr_rc=$?
//	printf %s <end>
//	exit $sdr_rc
//
// When the login shell is a POSIX shell, a single-quoted word reaches
// /bin/sh unchanged whatever it holds, and the script goes as it is
// (plainCommand), without the base64 round: SSH tries that once per
// connection (plainProbe) and keeps the base64 form otherwise.
//
// Only what lies between the markers is the command's stdout, and only
// what follows the begin marker on stderr is the command's stderr (see
// stderrGate). The markers are new for every call, so neither the shell's
// noise nor the command's output can fake them.
type frame struct {
	begin, end []byte
}

func newFrame() frame {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("cluster: crypto/rand failed: " + err.Error())
	}
	id := hex.EncodeToString(b[:])
	return frame{begin: []byte("sdr-" + id + "-begin"), end: []byte("sdr-" + id + "-end")}
}

// script is line wrapped in the markers.
func (f frame) script(line string) string {
	return "printf %s " + string(f.begin) + "; printf %s " + string(f.begin) + " >&2\n(\n" + line + "\n)\nsdr_rc=$?\nprintf %s " + string(f.end) + "\nexit $sdr_rc\n"
}

// command is what SSH asks the node to run for line.
func (f frame) command(line string) string {
	enc := base64.StdEncoding.EncodeToString([]byte(f.script(line)))
	return `/bin/sh -c 'eval "$(printf %s ` + enc + ` | base64 -d)"'`
}

// plainCommand is command for a login shell that passes a single-quoted
// word on unchanged whatever it holds (newlines, backslashes, "!"), as
// POSIX shells do: the script goes to /bin/sh as it is, which spares the
// node a base64 process and a subshell per command. SSH uses it only once
// plainProbe has shown that the node's login shell does so.
func (f frame) plainCommand(line string) string {
	return "/bin/sh -c " + ShellQuote(f.script(line))
}

// plainProbe is a command whose output is plainWant only when the login
// shell passed the single-quoted script on unchanged.
const (
	plainProbe = `printf '%s|' 'one\\two\n' "three\"four" 'five'\''six' '$HOME' '!seven' '*'
printf '%s\n' 'multi
line'`
	plainWant = "one\\\\two\\n|three\"four|five'six|$HOME|!seven|*|multi\nline\n"
)

// strip returns the command's own stdout out of what the session printed.
// begun is false when the begin marker is missing (the script never ran);
// ended is false when the end marker is missing (the script was cut short).
func (f frame) strip(out []byte) (body []byte, begun, ended bool) {
	i := bytes.Index(out, f.begin)
	if i < 0 {
		return nil, false, false
	}
	rest := out[i+len(f.begin):]
	j := bytes.LastIndex(rest, f.end)
	if j < 0 {
		return rest, true, false
	}
	return rest[:j], true, true
}

// stderrGate passes a remote command's stderr on to w only from the begin
// marker on, dropping what the login shell printed before it. If the marker
// never comes (the shell failed before running the script), flush hands
// what was held back to w so that the error shows it.
type stderrGate struct {
	mu      sync.Mutex
	marker  []byte
	w       io.Writer
	open    bool
	pending []byte
}

func (g *stderrGate) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.open {
		return g.w.Write(p)
	}
	g.pending = append(g.pending, p...)
	if i := bytes.Index(g.pending, g.marker); i >= 0 {
		rest := g.pending[i+len(g.marker):]
		g.open, g.pending = true, nil
		if len(rest) > 0 {
			if _, err := g.w.Write(rest); err != nil {
				return 0, err
			}
		}
	} else if len(g.pending) > tailMax {
		g.pending = append([]byte(nil), g.pending[len(g.pending)-tailMax:]...)
	}
	return len(p), nil
}

// flush passes on what was held back when the marker never came.
func (g *stderrGate) flush() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.open && len(g.pending) > 0 {
		_, _ = g.w.Write(g.pending)
		g.pending = nil
	}
}

// streamFrame passes a remote command's own stdout on to w as it arrives,
// for commands whose output is too large to hold (a tar stream): it drops
// what comes before the begin marker, and holds back the last len(end)
// bytes, which must be the end marker when the command has ended. A
// failed write to w is kept (see err) and the rest of the output is
// drained, so that the remote side is never blocked by a reader that gave
// up.
type streamFrame struct {
	mu      sync.Mutex
	f       frame
	w       io.Writer
	begun   bool
	pending []byte // before the begin marker
	tail    []byte // the last bytes seen after it, up to len(f.end)
	n       int64  // bytes passed on to w
	werr    error
}

func newStreamFrame(f frame, w io.Writer) *streamFrame {
	return &streamFrame{f: f, w: w}
}

func (s *streamFrame) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(p)
	if !s.begun {
		s.pending = append(s.pending, p...)
		i := bytes.Index(s.pending, s.f.begin)
		if i < 0 {
			if len(s.pending) > tailMax {
				s.pending = append([]byte(nil), s.pending[len(s.pending)-tailMax:]...)
			}
			return n, nil
		}
		p = append([]byte(nil), s.pending[i+len(s.f.begin):]...)
		s.begun, s.pending = true, nil
	}
	keep := len(s.f.end)
	if len(p) >= keep {
		s.pass(s.tail)
		s.pass(p[:len(p)-keep])
		s.tail = append(s.tail[:0], p[len(p)-keep:]...)
		return n, nil
	}
	s.tail = append(s.tail, p...)
	if over := len(s.tail) - keep; over > 0 {
		s.pass(s.tail[:over])
		s.tail = append([]byte(nil), s.tail[over:]...)
	}
	return n, nil
}

// pass hands b on to w unless an earlier write failed.
func (s *streamFrame) pass(b []byte) {
	if len(b) == 0 || s.werr != nil {
		return
	}
	if _, err := s.w.Write(b); err != nil {
		s.werr = err
		return
	}
	s.n += int64(len(b))
}

// result says whether the begin and end markers were seen, and the first
// error w returned.
func (s *streamFrame) result() (begun, ended bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.begun, s.begun && bytes.Equal(s.tail, s.f.end), s.werr
}
