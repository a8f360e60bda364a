package cluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSummarizeStderr(t *testing.T) {
	file := func(name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join("testdata", "stderr", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	many := strings.Repeat("psql: error: could not connect\n", 1) +
		"a: could not one\nb: could not two\nc: could not three\nd: could not four\ne: could not five\nf: could not six\n" +
		"tail 1\ntail 2\ntail 3\n"
	cases := []struct {
		name   string
		stderr string
		want   string
	}{
		{"empty", "", ""},
		{"blank lines only", "\n  \n\t\n", ""},
		{"one line", "mv: cannot move 'a' to 'b': Permission denied\n", "mv: cannot move 'a' to 'b': Permission denied"},
		{"pg_basebackup missing slot (real, PostgreSQL 15)", file("pg15_basebackup_fail.stderr"),
			`pg_basebackup: error: could not send replication command "START_REPLICATION": ERROR:  replication slot "nosuchslot" does not exist` +
				` | pg_basebackup: error: background process terminated unexpectedly` +
				` | pg_basebackup: removing data directory "/tmp/cdsample.htK9/fail"`},
		{"pg_basebackup lost its server mid-copy, -P progress (real, PostgreSQL 15)", file("pg15_basebackup_lost.stderr"),
			`pg_basebackup: error: could not read COPY data: server closed the connection unexpectedly` +
				` | This probably means the server terminated abnormally | before or while processing the request.` +
				` | pg_basebackup: removing data directory "/tmp/cdsample.htK9/fail2"`},
		{"pg_basebackup -P on a terminal, \\r progress (real, PostgreSQL 15)", file("pg15_basebackup_lost_tty.stderr"),
			`pg_basebackup: error: could not receive data from WAL stream: server closed the connection unexpectedly` +
				` | ... | pg_basebackup: error: could not read COPY data: server closed the connection unexpectedly` +
				` | This probably means the server terminated abnormally | before or while processing the request.` +
				` | pg_basebackup: removing data directory "/tmp/cdsample.htK9/fail3"`},
		{"causes are capped at five", many,
			"psql: error: could not connect | a: could not one | b: could not two | c: could not three | d: could not four" +
				" | ... | tail 1 | tail 2 | tail 3"},
		{"FATAL and ERROR as words only", "ERRORS are fine\nFATAL:  role \"x\" does not exist\nnext\nlast 1\nlast 2\nlast 3\n",
			`FATAL:  role "x" does not exist | ... | last 1 | last 2 | last 3`},
		{"a repeated line shows once", "x: could not y\nx: could not y\nend\n", "x: could not y | end"},
		{"CRLF line ends", "first\r\nsecond: failed\r\n", "first | second: failed"},
		{"progress only", " 10/20 kB (50%), 0/1 tablespace\n 20/20 kB (100%), 1/1 tablespace\n", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := summarizeStderr(tc.stderr); got != tc.want {
				t.Fatalf("got\n  %q\nwant\n  %q", got, tc.want)
			}
		})
	}
}

func TestSummarizeStderrBounded(t *testing.T) {
	long := strings.Repeat("x", 5000)
	in := strings.Repeat("error: "+long+"\n", 10)
	got := summarizeStderr(in)
	if len(got) > summaryTotalMax+3 {
		t.Fatalf("summary is %d bytes", len(got))
	}
	if !strings.HasPrefix(got, "error: xxx") {
		t.Fatalf("got %.40q", got)
	}
}

func TestCommandErrorShowsCause(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "stderr", "pg15_basebackup_lost.stderr"))
	if err != nil {
		t.Fatal(err)
	}
	e := &CommandError{Node: "dc2-a", Cmd: "pg_basebackup -D /pg/new", ExitCode: 1, Stderr: string(b)}
	msg := e.Error()
	for _, want := range []string{`on dc2-a: "pg_basebackup -D /pg/new" exited 1: `, "could not read COPY data", "removing data directory"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q does not contain %q", msg, want)
		}
	}
	if e.Stderr != string(b) {
		t.Error("Stderr was changed")
	}
}
