package cluster

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"testing"
)

func TestFrameStrip(t *testing.T) {
	f := frame{begin: []byte("<B>"), end: []byte("<E>")}
	cases := []struct {
		name         string
		out          string
		body         string
		begun, ended bool
	}{
		{"clean", "<B>hello\n<E>", "hello\n", true, true},
		{"login shell noise before", "Welcome\n<B>hello<E>", "hello", true, true},
		{"noise after", "<B>hello<E>bye\n", "hello", true, true},
		{"empty output", "motd<B><E>", "", true, true},
		{"output holding the end marker", "<B>a<E>b<E>", "a<E>b", true, true},
		{"cut short", "<B>partial", "partial", true, false},
		{"never ran", "bash: /bin/sh: No such file or directory\n", "", false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body, begun, ended := f.strip([]byte(tc.out))
			if string(body) != tc.body || begun != tc.begun || ended != tc.ended {
				t.Fatalf("got %q %v %v, want %q %v %v", body, begun, ended, tc.body, tc.begun, tc.ended)
			}
		})
	}
}

func TestStderrGate(t *testing.T) {
	cases := []struct {
		name   string
		writes []string
		flush  bool
		want   string
	}{
		{"noise dropped", []string{"rc noise\n<B>", "real\n"}, false, "real\n"},
		{"marker split across writes", []string{"noise<", "B>re", "al"}, false, "real"},
		{"no marker, nothing passed before flush", []string{"bash: oops\n"}, false, ""},
		{"no marker, flush passes it", []string{"bash: oops\n"}, true, "bash: oops\n"},
		{"flush after marker adds nothing", []string{"x<B>y"}, true, "y"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			g := &stderrGate{marker: []byte("<B>"), w: &buf}
			for _, w := range tc.writes {
				if n, err := g.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write: %d, %v", n, err)
				}
			}
			if tc.flush {
				g.flush()
			}
			if buf.String() != tc.want {
				t.Fatalf("got %q, want %q", buf.String(), tc.want)
			}
		})
	}
}

// TestFrameCommandAnyShell runs the command line that SSH sends through
// every shell installed here, as a login shell would get it.
func TestFrameCommandAnyShell(t *testing.T) {
	line := "printf '%s\\n' \"a  b\" 'c\\d' '!x' \"$((1+2))\"\nexit 3"
	f := newFrame()
	c := f.command(line)
	if strings.ContainsAny(c[len("/bin/sh -c '"):len(c)-1], "\n\\!'") {
		t.Fatalf("the quoted part holds a character some shells treat specially: %s", c)
	}
	ran := 0
	for _, sh := range []string{"/bin/sh", "/bin/bash", "/bin/dash", "/usr/bin/zsh", "/usr/bin/fish", "/bin/csh", "/bin/tcsh", "/bin/ksh"} {
		if _, err := exec.LookPath(sh); err != nil {
			continue
		}
		ran++
		t.Run(sh, func(t *testing.T) {
			out, err := exec.Command(sh, "-c", c).Output()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != 3 {
				t.Fatalf("want exit 3, got %v", err)
			}
			body, begun, ended := f.strip(out)
			if want := "a  b\nc\\d\n!x\n3\n"; string(body) != want || !begun || !ended {
				t.Fatalf("got %q (%v %v), want %q", body, begun, ended, want)
			}
		})
	}
	if ran == 0 {
		t.Skip("no shell found")
	}
}

// failAfter is a writer that fails once it has taken n bytes.
type failAfter struct {
	n   int
	got bytes.Buffer
}

func (f *failAfter) Write(p []byte) (int, error) {
	if f.got.Len()+len(p) > f.n {
		return 0, errors.New("reader gave up")
	}
	return f.got.Write(p)
}

func TestStreamFrame(t *testing.T) {
	f := frame{begin: []byte("<B>"), end: []byte("<END>")}
	cases := []struct {
		name         string
		writes       []string
		failAt       int // the writer fails past this many bytes (0: never)
		body         string
		begun, ended bool
		werr         bool
	}{
		{"clean, one write", []string{"<B>hello<END>"}, 0, "hello", true, true, false},
		{"noise before, byte by byte", strings.Split("motd\n<B>tar data<END>", ""), 0, "tar data", true, true, false},
		{"markers split across writes", []string{"x<", "B>ab", "cd<E", "ND>"}, 0, "abcd", true, true, false},
		{"empty output", []string{"<B><END>"}, 0, "", true, true, false},
		{"output holding the end marker", []string{"<B>a<END>b", "<END>"}, 0, "a<END>b", true, true, false},
		{"cut short: the held back bytes are not the marker", []string{"<B>partial output"}, 0, "partial o", true, false, false},
		{"cut short inside the marker", []string{"<B>data<EN"}, 0, "da", true, false, false},
		{"never ran", []string{"sh: not found\n"}, 0, "", false, false, false},
		{"writer fails: the rest is drained", []string{"<B>0123456789", "abcdefghij", "<END>"}, 8, "", true, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := &failAfter{n: 1 << 30}
			if tc.failAt > 0 {
				w.n = tc.failAt
			}
			s := newStreamFrame(f, w)
			for _, p := range tc.writes {
				if n, err := s.Write([]byte(p)); n != len(p) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", p, n, err)
				}
			}
			begun, ended, err := s.result()
			if begun != tc.begun || ended != tc.ended || (err != nil) != tc.werr {
				t.Fatalf("result %v %v %v, want %v %v error %v", begun, ended, err, tc.begun, tc.ended, tc.werr)
			}
			if !tc.werr && w.got.String() != tc.body {
				t.Fatalf("passed on %q, want %q", w.got.String(), tc.body)
			}
		})
	}
}
