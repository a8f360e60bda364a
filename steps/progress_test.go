package steps

import (
	"slices"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestProgressWriter(t *testing.T) {
	t0 := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	type write struct {
		at   time.Duration // after t0
		data string
	}
	tests := []struct {
		name   string
		writes []write
		shown  []string // logged by the writes
		flush  string   // logged by flush, "" for nothing
	}{
		{name: "nothing written"},
		{
			name:   "carriage returns split lines; one line per interval",
			writes: []write{{0, "1/100 kB (1%)\r2/100 kB (2%)\r3/100 kB (3%)\r"}},
			shown:  []string{"1/100 kB (1%)"},
			flush:  "3/100 kB (3%)",
		},
		{
			name:   "newlines split lines too",
			writes: []write{{0, "a\n"}, {3 * time.Second, "b\nc\n"}},
			shown:  []string{"a", "b"},
			flush:  "c",
		},
		{
			name:   "CRLF and blank lines are skipped",
			writes: []write{{0, "\r\n\r\n  a  \r\n"}, {2 * time.Second, "\r\r\n"}},
			shown:  []string{"a"},
			flush:  "a",
		},
		{
			name:   "a line split across writes is joined",
			writes: []write{{0, "10/1"}, {0, "00 kB"}, {0, " (10%)\r"}},
			shown:  []string{"10/100 kB (10%)"},
			flush:  "10/100 kB (10%)",
		},
		{
			name:   "an unfinished line is not shown",
			writes: []write{{0, "a\r"}, {5 * time.Second, "b"}},
			shown:  []string{"a"},
			flush:  "a",
		},
		{
			name: "a line shown at each interval",
			writes: []write{
				{0, "1%\r"},
				{1 * time.Second, "2%\r"},
				{1999 * time.Millisecond, "3%\r"},
				{2 * time.Second, "4%\r"},
				{3 * time.Second, "5%\r"},
				{4 * time.Second, "6%\r"},
				{10 * time.Second, "7%\r8%\r"},
			},
			shown: []string{"1%", "4%", "6%", "7%"},
			flush: "8%",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.InfoLevel)
			p := newProgressWriter(zap.New(core))
			var now time.Time
			p.now = func() time.Time { return now }
			for _, w := range tt.writes {
				now = t0.Add(w.at)
				n, err := p.Write([]byte(w.data))
				if err != nil || n != len(w.data) {
					t.Fatalf("Write(%q) = %d, %v; want %d, nil", w.data, n, err, len(w.data))
				}
			}
			want := make([]string, 0, len(tt.shown)+1)
			for _, s := range tt.shown {
				want = append(want, "basebackup progress: "+s)
			}
			if got := progressMessages(logs); !slices.Equal(got, want) {
				t.Errorf("shown %q, want %q", got, want)
			}
			p.flush()
			if tt.flush != "" {
				want = append(want, "basebackup progress: "+tt.flush)
			}
			if got := progressMessages(logs); !slices.Equal(got, want) {
				t.Errorf("after flush shown %q, want %q", got, want)
			}
		})
	}
}

func TestProgressWriterBoundsBuffer(t *testing.T) {
	core, _ := observer.New(zapcore.InfoLevel)
	p := newProgressWriter(zap.New(core))
	chunk := make([]byte, 1000)
	for i := range chunk {
		chunk[i] = 'x'
	}
	for range 20 {
		if _, err := p.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if len(p.buf) > 4096 {
		t.Errorf("buffer holds %d bytes of an unterminated line, want at most 4096", len(p.buf))
	}
}

func progressMessages(logs *observer.ObservedLogs) []string {
	var out []string
	for _, e := range logs.All() {
		out = append(out, e.Message)
	}
	return out
}
