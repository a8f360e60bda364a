package steps

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestParseBasebackupProgress(t *testing.T) {
	tests := []struct {
		name string
		line string
		want basebackupLine
		ok   bool
	}{
		{"padded, one tablespace", "  2102/43000 kB (4%), 0/1 tablespace", basebackupLine{2102 * 1024, 43000 * 1024, 4, 0, 1}, true},
		{"several tablespaces", "806150/806150 kB (100%), 2/2 tablespaces", basebackupLine{806150 * 1024, 806150 * 1024, 100, 2, 2}, true},
		{"with -v: the file name follows", " 4383/43000 kB (10%), 0/1 tablespace (.../fail2/base/5/2609)", basebackupLine{4383 * 1024, 43000 * 1024, 10, 0, 1}, true},
		{"zero", "0/0 kB (0%), 0/1 tablespace", basebackupLine{0, 0, 0, 0, 1}, true},
		{"a message", "pg_basebackup: checkpoint completed", basebackupLine{}, false},
		{"waiting for checkpoint", "waiting for checkpoint", basebackupLine{}, false},
		{"another unit", "10/20 MB (50%), 0/1 tablespace", basebackupLine{}, false},
		{"empty", "", basebackupLine{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseBasebackupProgress(tc.line)
			if ok != tc.ok || got != tc.want {
				t.Errorf("parse(%q) = %+v, %v; want %+v, %v", tc.line, got, ok, tc.want, tc.ok)
			}
		})
	}
}

// fakeReporter records what a progressWriter reports.
type fakeReporter struct {
	mu    sync.Mutex
	calls []string
}

func (f *fakeReporter) Progress(part string, done, total int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("%s %d/%d", part, done/1024, total/1024))
}

func (f *fakeReporter) EndProgress(part string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "end "+part)
}

func TestProgressWriter(t *testing.T) {
	tests := []struct {
		name    string
		writes  []string
		reports []string // before flush
		flushed string   // the line flush logs; "" for none
		debug   []string // other lines, logged at debug level
	}{
		{name: "nothing written"},
		{
			name:    "carriage returns split lines (a terminal)",
			writes:  []string{"waiting for checkpoint\r 1/100 kB (1%), 0/1 tablespace\r 2/100 kB (2%), 0/1 tablespace\r"},
			reports: []string{"dc2-a 1/100", "dc2-a 2/100"},
			flushed: "2/100 kB (2%), 0/1 tablespace",
			debug:   []string{"pg_basebackup: waiting for checkpoint"},
		},
		{
			name:    "newlines split lines (a pipe, as over SSH)",
			writes:  []string{"pg_basebackup: checkpoint completed\n 10/20 kB (50%), 0/1 tablespace\n", "20/20 kB (100%), 1/1 tablespace\n"},
			reports: []string{"dc2-a 10/20", "dc2-a 20/20"},
			flushed: "20/20 kB (100%), 1/1 tablespace",
			debug:   []string{"pg_basebackup: checkpoint completed"},
		},
		{
			name:    "a line split across writes is joined",
			writes:  []string{"10/1", "00 kB", " (10%), 0/1 tablespace\r\n"},
			reports: []string{"dc2-a 10/100"},
			flushed: "10/100 kB (10%), 0/1 tablespace",
		},
		{
			name:    "an unfinished line is not reported",
			writes:  []string{"1/100 kB (1%), 0/1 tablespace\n", "2/100 kB (2%), 0/1 tab"},
			reports: []string{"dc2-a 1/100"},
			flushed: "1/100 kB (1%), 0/1 tablespace",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.DebugLevel)
			rep := &fakeReporter{}
			p := newProgressWriter(zap.New(core)).reportTo(rep, "dc2-a")
			for _, w := range tc.writes {
				n, err := p.Write([]byte(w))
				if err != nil || n != len(w) {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if !reflect.DeepEqual(rep.calls, tc.reports) {
				t.Errorf("reported %q, want %q", rep.calls, tc.reports)
			}
			p.flush()
			p.end()
			if want := append(append([]string{}, tc.reports...), "end dc2-a"); !reflect.DeepEqual(rep.calls, want) {
				t.Errorf("after flush and end: reported %q, want %q (ended once)", rep.calls, want)
			}
			var info, debug []string
			for _, e := range logs.All() {
				if e.Level == zapcore.DebugLevel {
					debug = append(debug, e.Message)
				} else {
					info = append(info, e.Message)
				}
			}
			var wantInfo []string
			if tc.flushed != "" {
				wantInfo = []string{"basebackup progress: " + tc.flushed}
			}
			if !reflect.DeepEqual(info, wantInfo) || !reflect.DeepEqual(debug, tc.debug) {
				t.Errorf("logged info %q debug %q, want %q and %q", info, debug, wantInfo, tc.debug)
			}
		})
	}
}

// TestProgressWriterRealOutput feeds pg_basebackup's own stderr (recorded
// from PostgreSQL 15, on a pipe and on a terminal) through the writer.
func TestProgressWriterRealOutput(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{"pg15_basebackup_lost.stderr", []string{"x 2102/43000", "x 4383/43000"}},
		{"pg15_basebackup_lost_tty.stderr", []string{"x 2102/43000", "x 4383/43000"}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("..", "cluster", "testdata", "stderr", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			rep := &fakeReporter{}
			p := newProgressWriter(zap.NewNop()).reportTo(rep, "x")
			if _, err := p.Write(raw); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(rep.calls, tc.want) {
				t.Errorf("reported %q, want %q", rep.calls, tc.want)
			}
		})
	}
}

func TestProgressWriterNothingAfterEnd(t *testing.T) {
	rep := &fakeReporter{}
	p := newProgressWriter(zap.NewNop()).reportTo(rep, "dc2-b")
	p.end()
	if _, err := p.Write([]byte("99/100 kB (99%), 0/1 tablespace\n")); err != nil {
		t.Fatal(err)
	}
	p.flush()
	if want := []string{"end dc2-b"}; !reflect.DeepEqual(rep.calls, want) {
		t.Errorf("reported %q, want %q", rep.calls, want)
	}
}

func TestProgressWriterWithoutReporter(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	p := newProgressWriter(zap.New(core))
	if _, err := p.Write([]byte("5/10 kB (50%), 0/1 tablespace\n")); err != nil {
		t.Fatal(err)
	}
	p.flush()
	if got := logs.All(); len(got) != 1 || !strings.HasSuffix(got[0].Message, "5/10 kB (50%), 0/1 tablespace") {
		t.Errorf("logged %v, want the last line once", got)
	}
}

func TestProgressWriterBoundsBuffer(t *testing.T) {
	p := newProgressWriter(zap.NewNop())
	chunk := []byte(strings.Repeat("x", 1000))
	for range 20 {
		if _, err := p.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if len(p.buf) > 4096 {
		t.Errorf("buffer holds %d bytes of an unterminated line, want at most 4096", len(p.buf))
	}
}
