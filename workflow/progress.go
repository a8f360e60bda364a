package workflow

import (
	"sort"
	"sync"
	"time"
)

// Progress of a running step: a long step (a pg_basebackup) tells how far
// each of its parts got with RunContext.Progress, and the runner hands
// what it heard to the Runner's ProgressSink, at most every
// ProgressEvery. The command line wires the sink: a sidecar file next to
// the state file that `sdr status` reads while the run holds the lock,
// and the progress line on the console.

// DefaultProgressEvery is how often, at most, the runner hands progress
// to its sink when Runner.ProgressEvery is not set.
const DefaultProgressEvery = time.Second

// progressWindow is the stretch of recent reports the rate is measured over.
const progressWindow = 10 * time.Second

// PartProgress is how far one part of a running step got (for example
// the copy of one node). Done and Total are bytes.
type PartProgress struct {
	Part string `json:"part"`
	// Done is what the part has done so far; Total what it expects in
	// all, 0 when unknown (an estimate: Done may pass it).
	Done  int64 `json:"done_bytes"`
	Total int64 `json:"total_bytes"`
	// Rate is bytes per second over the last reports (up to 10 s); 0
	// until two reports at least half a second apart are known.
	Rate float64 `json:"rate_bytes_per_second"`
	// Remaining is (Total − Done) / Rate in seconds; nil when the total
	// or the rate is unknown.
	Remaining *float64  `json:"remaining_seconds"`
	Started   time.Time `json:"started"` // the part's first report
	Updated   time.Time `json:"updated"` // its last report
}

// Percent is Done out of Total, 0–100; -1 when Total is unknown.
func (p PartProgress) Percent() float64 {
	if p.Total <= 0 {
		return -1
	}
	return min(100, 100*float64(p.Done)/float64(p.Total))
}

// ProgressReport is the progress of a run's running step: every part that
// reported and has not ended. A report without parts says that nothing
// is in progress any more (the part or the step ended).
type ProgressReport struct {
	RunID   string         `json:"run_id"`
	Step    string         `json:"step"`
	Updated time.Time      `json:"updated"`
	Parts   []PartProgress `json:"parts"`
}

// ProgressSink receives the progress of the running step. ReportProgress
// is called from the step's goroutines, one call at a time, with reports
// in the order they were made. An error is logged once per step and does
// not fail the step.
type ProgressSink interface {
	ReportProgress(ProgressReport) error
}

// sample is one report of a part.
type sample struct {
	at   time.Time
	done int64
}

// partTrack is what the tracker keeps of one part.
type partTrack struct {
	p       PartProgress
	samples []sample // within progressWindow of the last, oldest first
}

// progressTracker turns a step's reports into ProgressReports, computes
// rates, and decides when to hand a report to the sink. It is safe for
// the parallel goroutines of one step.
type progressTracker struct {
	mu       sync.Mutex
	runID    string
	step     string
	every    time.Duration
	now      func() time.Time
	sink     ProgressSink
	onErr    func(error) // called for the first sink error only
	failed   bool
	parts    map[string]*partTrack
	lastSent time.Time
	sent     bool           // a report with parts went to the sink
	ended    []PartProgress // the parts that ended, as they were last
}

func newProgressTracker(runID, step string, every time.Duration, now func() time.Time, sink ProgressSink, onErr func(error)) *progressTracker {
	if every <= 0 {
		every = DefaultProgressEvery
	}
	return &progressTracker{runID: runID, step: step, every: every, now: now, sink: sink, onErr: onErr, parts: map[string]*partTrack{}}
}

// update records a report of part. A new part is handed on at once;
// others at most every t.every.
func (t *progressTracker) update(part string, done, total int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	pt, ok := t.parts[part]
	if !ok {
		pt = &partTrack{p: PartProgress{Part: part, Started: now}}
		t.parts[part] = pt
	}
	pt.p.Done, pt.p.Total, pt.p.Updated = max(done, 0), max(total, 0), now
	pt.samples = append(pt.samples, sample{at: now, done: pt.p.Done})
	// Keep the samples of the window, and the one just before it so the
	// window is full once the part has run that long.
	cut := 0
	for cut < len(pt.samples)-1 && now.Sub(pt.samples[cut+1].at) >= progressWindow {
		cut++
	}
	pt.samples = pt.samples[cut:]
	pt.p.Rate, pt.p.Remaining = rateOf(pt.samples, pt.p.Done, pt.p.Total)
	if ok && now.Sub(t.lastSent) < t.every {
		return
	}
	t.send(now)
}

// end forgets part and hands the report on at once.
func (t *progressTracker) end(part string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pt, ok := t.parts[part]
	if !ok {
		return
	}
	t.ended = append(t.ended, pt.p)
	delete(t.parts, part)
	t.send(t.now())
}

// close ends every part and returns every part that ended during the
// step, as it was last. The sink hears of it only when it heard of a part.
func (t *progressTracker) close() []PartProgress {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, pt := range t.parts {
		t.ended = append(t.ended, pt.p)
	}
	t.parts = map[string]*partTrack{}
	if t.sent {
		t.send(t.now())
	}
	return t.ended
}

// report builds the current report; the caller holds t.mu.
func (t *progressTracker) report(now time.Time) ProgressReport {
	r := ProgressReport{RunID: t.runID, Step: t.step, Updated: now, Parts: []PartProgress{}}
	for _, pt := range t.parts {
		p := pt.p
		if p.Remaining != nil {
			v := *p.Remaining
			p.Remaining = &v
		}
		r.Parts = append(r.Parts, p)
	}
	sort.Slice(r.Parts, func(i, j int) bool { return r.Parts[i].Part < r.Parts[j].Part })
	return r
}

// send hands the current report to the sink; the caller holds t.mu.
func (t *progressTracker) send(now time.Time) {
	t.lastSent = now
	if t.sink == nil {
		return
	}
	r := t.report(now)
	if len(r.Parts) > 0 {
		t.sent = true
	}
	if err := t.sink.ReportProgress(r); err != nil && !t.failed {
		t.failed = true
		if t.onErr != nil {
			t.onErr(err)
		}
	}
}

// rateOf measures the rate over samples (oldest first) and the time left.
func rateOf(samples []sample, done, total int64) (float64, *float64) {
	if len(samples) < 2 {
		return 0, nil
	}
	first, last := samples[0], samples[len(samples)-1]
	dt := last.at.Sub(first.at).Seconds()
	if dt < 0.5 || last.done < first.done {
		return 0, nil
	}
	rate := float64(last.done-first.done) / dt
	if rate <= 0 || total <= 0 {
		return rate, nil
	}
	left := max(0, float64(total-done)/rate)
	return rate, &left
}
