package main

import (
	"fmt"
	"time"
)

// sdrAcc collects the timed runs of one sdr binary.
type sdrAcc struct {
	binary                                    string
	runs                                      []sdrRun
	walls, tools, owns, ownsNoProbes, ownLess []time.Duration
	callRuns                                  map[string][]time.Duration
	callN                                     map[string]int
	callOrder                                 []string
	stepRuns, stepOwn                         map[string]map[string][]time.Duration
	stepOrder                                 map[string][]string
}

func newSDRAcc(binary string) *sdrAcc {
	return &sdrAcc{binary: binary, callRuns: map[string][]time.Duration{}, callN: map[string]int{},
		stepRuns:  map[string]map[string][]time.Duration{"primary": {}, "standby": {}},
		stepOwn:   map[string]map[string][]time.Duration{"primary": {}, "standby": {}},
		stepOrder: map[string][]string{}}
}

func (a *sdrAcc) add(r sdrRun) {
	a.runs = append(a.runs, r)
	a.walls = append(a.walls, secs(r.Wall))
	a.tools = append(a.tools, secs(r.Tools))
	a.owns = append(a.owns, secs(r.Own))
	a.ownsNoProbes = append(a.ownsNoProbes, secs(r.OwnNoProbes))
	a.ownLess = append(a.ownLess, secs(r.OwnLessShim))
	for _, k := range r.CallOrder {
		c := r.Calls[k]
		if _, ok := a.callRuns[k]; !ok {
			a.callOrder = append(a.callOrder, k)
		}
		a.callRuns[k] = append(a.callRuns[k], secs(c.Seconds))
		a.callN[k] = max(a.callN[k], c.N)
	}
	for _, role := range []string{"primary", "standby"} {
		for _, st := range r.Steps[role] {
			if _, ok := a.stepRuns[role][st.Name]; !ok {
				a.stepOrder[role] = append(a.stepOrder[role], st.Name)
			}
			a.stepRuns[role][st.Name] = append(a.stepRuns[role][st.Name], secs(st.Seconds))
			a.stepOwn[role][st.Name] = append(a.stepOwn[role][st.Name], secs(st.Own))
		}
	}
}

// sdrSummary sums up the timed runs of one sdr binary.
type sdrSummary struct {
	Binary      string                 `json:"binary"`
	Wall        Stats                  `json:"wall"`
	Ratio       float64                `json:"ratio_to_floor"` // median wall / median floor
	Tools       Stats                  `json:"tools"`          // union of pg_basebackup and pg_ctl start/stop calls
	Own         Stats                  `json:"own"`            // wall less tools
	OwnNoProbes Stats                  `json:"own_excl_probes"`
	OwnLessShim Stats                  `json:"own_less_shim"`
	Calls       []namedStats           `json:"calls"` // seconds per run in each kind of call
	Steps       map[string][]stepStats `json:"steps"`
	PeakRSSKiB  int64                  `json:"peak_rss_kib"`
	Runs        []sdrRun               `json:"runs"`
}

func (a *sdrAcc) summary(floor Stats) sdrSummary {
	s := sdrSummary{Binary: a.binary, Wall: summarise(a.walls), Tools: summarise(a.tools), Own: summarise(a.owns),
		OwnNoProbes: summarise(a.ownsNoProbes), OwnLessShim: summarise(a.ownLess), Steps: map[string][]stepStats{}, Runs: a.runs}
	if floor.Median > 0 {
		s.Ratio = s.Wall.Median / floor.Median
	}
	for _, k := range a.callOrder {
		name := k
		if a.callN[k] > 1 {
			name = fmt.Sprintf("%s (%d calls)", k, a.callN[k])
		}
		s.Calls = append(s.Calls, namedStats{Name: name, Stats: summarise(a.callRuns[k])})
	}
	for _, role := range []string{"primary", "standby"} {
		for _, name := range a.stepOrder[role] {
			s.Steps[role] = append(s.Steps[role], stepStats{Name: name, Stats: summarise(a.stepRuns[role][name]),
				Own: summarise(a.stepOwn[role][name])})
		}
	}
	for _, r := range a.runs {
		s.PeakRSSKiB = max(s.PeakRSSKiB, r.RSSPrimary, r.RSSStandby)
	}
	return s
}
