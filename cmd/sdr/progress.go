package main

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/pgsdr/sdr/store"
	"github.com/pgsdr/sdr/workflow"
)

// progressLogEvery is how often a part's progress is logged as a plain
// line (the only progress on a console that is not a terminal).
const progressLogEvery = 10 * time.Second

// runProgress wires where a run's progress goes: the sidecar file next to
// the state file (for `sdr status`) and the console. Call done when the
// run ends, before the run lock is released.
func runProgress(out *output, statePath string) (sink workflow.ProgressSink, done func()) {
	pf := store.NewProgressFile(statePath)
	con := newConsoleProgress(out.con, out.log)
	return sinks{pf, con}, func() {
		con.con.clear()
		if err := pf.Remove(); err != nil {
			out.log.Debug("could not remove the progress file", zap.Error(err))
		}
	}
}

// sinks hands each report to every sink; it fails when one of them does.
type sinks []workflow.ProgressSink

func (s sinks) ReportProgress(r workflow.ProgressReport) error {
	var errs []error
	for _, x := range s {
		if err := x.ReportProgress(r); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// consoleProgress shows a run's progress on the console: on a terminal,
// one line redrawn in place under the log lines; and every
// progressLogEvery per part, a log entry (shown as a plain line when the
// console is not a terminal, and kept in the log file either way).
type consoleProgress struct {
	mu     sync.Mutex
	con    *console
	log    *zap.Logger
	now    func() time.Time
	every  time.Duration
	logged map[string]time.Time // part -> when it was last logged (or first seen)
}

func newConsoleProgress(con *console, log *zap.Logger) *consoleProgress {
	return &consoleProgress{con: con, log: log, now: time.Now, every: progressLogEvery, logged: map[string]time.Time{}}
}

func (p *consoleProgress) ReportProgress(r workflow.ProgressReport) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	seen := map[string]bool{}
	for _, part := range r.Parts {
		seen[part.Part] = true
		last, ok := p.logged[part.Part]
		switch {
		case !ok:
			p.logged[part.Part] = now
		case now.Sub(last) >= p.every:
			p.logged[part.Part] = now
			p.log.Info("progress "+fmtPart(part), zap.String("run_id", r.RunID), zap.String("step", r.Step), zap.Any(progressKey, part))
		}
	}
	for part := range p.logged {
		if !seen[part] {
			delete(p.logged, part)
		}
	}
	p.con.setLine(progressLine(r, p.con.width()))
	return nil
}

// progressLine is the terminal's progress line, at most width runes: the
// step, then each part in full (fmtPart); when that is too wide, each
// part in short (fmtPartShort).
func progressLine(r workflow.ProgressReport, width int) string {
	if len(r.Parts) == 0 {
		return ""
	}
	full := make([]string, len(r.Parts))
	short := make([]string, len(r.Parts))
	for i, p := range r.Parts {
		full[i], short[i] = fmtPart(p), fmtPartShort(p)
	}
	line := r.Step + "  " + strings.Join(full, " | ")
	if utf8.RuneCountInString(line) <= width {
		return line
	}
	return r.Step + "  " + strings.Join(short, " | ")
}

// fmtPartShort is fmtPart for a narrow line: "dc2-a 15% 17s left".
func fmtPartShort(p workflow.PartProgress) string {
	s := p.Part + " " + fmtBytes(p.Done)
	if pct := p.Percent(); pct >= 0 {
		s = fmt.Sprintf("%s %d%%", p.Part, int(pct))
	}
	if p.Remaining != nil {
		s += " " + fmtDur(time.Duration(*p.Remaining*float64(time.Second))) + " left"
	}
	return s
}

// fmtPart shows how far a part got: "dc2-a: 120.0 MiB of 787.0 MiB (15%),
// 40.0 MiB/s, 17s left"; without a total "dc2-a: 120.0 MiB"; the rate and
// the time left only when they are known.
func fmtPart(p workflow.PartProgress) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", p.Part, fmtBytes(p.Done))
	if pct := p.Percent(); pct >= 0 {
		fmt.Fprintf(&b, " of %s (%d%%)", fmtBytes(p.Total), int(pct))
	}
	if p.Rate > 0 {
		fmt.Fprintf(&b, ", %s/s", fmtBytes(int64(p.Rate)))
	}
	if p.Remaining != nil {
		fmt.Fprintf(&b, ", %s left", fmtDur(time.Duration(*p.Remaining*float64(time.Second))))
	}
	return b.String()
}
