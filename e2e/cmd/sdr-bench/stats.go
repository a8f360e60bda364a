package main

import (
	"sort"
	"time"

	"github.com/pgsdr/sdr/e2e/benchcalls"
)

// Stats summarises repeated measurements, in seconds.
type Stats struct {
	N      int     `json:"n"`
	Median float64 `json:"median_s"`
	Min    float64 `json:"min_s"`
	Max    float64 `json:"max_s"`
}

func summarise(d []time.Duration) Stats {
	if len(d) == 0 {
		return Stats{}
	}
	s := make([]float64, len(d))
	for i, x := range d {
		s[i] = x.Seconds()
	}
	sort.Float64s(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Stats{N: len(s), Median: m, Min: s[0], Max: s[len(s)-1]}
}

type interval struct{ start, end time.Time }

// unionWithin returns the total length of the union of the intervals,
// each clipped to [from, to]: time during which at least one of them ran.
func unionWithin(ivs []interval, from, to time.Time) time.Duration {
	var clipped []interval
	for _, iv := range ivs {
		s, e := iv.start, iv.end
		if s.Before(from) {
			s = from
		}
		if e.After(to) {
			e = to
		}
		if e.After(s) {
			clipped = append(clipped, interval{s, e})
		}
	}
	sort.Slice(clipped, func(i, j int) bool { return clipped[i].start.Before(clipped[j].start) })
	var total time.Duration
	var cur interval
	for i, iv := range clipped {
		switch {
		case i == 0:
			cur = iv
		case !iv.start.After(cur.end):
			if iv.end.After(cur.end) {
				cur.end = iv.end
			}
		default:
			total += cur.end.Sub(cur.start)
			cur = iv
		}
	}
	if len(clipped) > 0 {
		total += cur.end.Sub(cur.start)
	}
	return total
}

// toolTime splits the recorded calls into the union of the calls that do
// the work the floor procedure also does (pg_basebackup, and pg_ctl start,
// stop, restart) and the union of sdr's pg_ctl status probes, both within
// [from, to].
func toolTime(calls []benchcalls.Record, from, to time.Time) (work, probes time.Duration, nWork, nProbes int) {
	var w, p []interval
	for _, c := range calls {
		iv := interval{c.Start, c.End}
		if c.Prog == "pg_ctl" && c.Mode == "status" {
			p = append(p, iv)
			nProbes++
		} else {
			w = append(w, iv)
			nWork++
		}
	}
	return unionWithin(w, from, to), unionWithin(p, from, to), nWork, nProbes
}

// pairedDiff summarises a[i] - b[i] over the rounds both have. Each round
// runs both back to back, so a load that comes and goes between rounds
// mostly falls out of the difference. lower counts the rounds in which a
// was the lower.
func pairedDiff(a, b []float64) (s Stats, lower int) {
	n := min(len(a), len(b))
	d := make([]time.Duration, n)
	for i := range n {
		d[i] = time.Duration((a[i] - b[i]) * float64(time.Second))
		if a[i] < b[i] {
			lower++
		}
	}
	return summarise(d), lower
}
