package main

import (
	"fmt"
	"time"
)

// sdrAcc collects the timed runs of one sdr binary.
type sdrAcc struct {
	label, config, copy                       string
	binary                                    string
	readies                                   []time.Duration
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
	a.readies = append(a.readies, secs(r.drReady()))
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
	Label       string                 `json:"label"`
	Copy        string                 `json:"copy"` // the copy settings of its config
	Binary      string                 `json:"binary"`
	Ready       Stats                  `json:"dr_ready"`       // 7_build_standby + 8_start_cluster of the standby role
	ReadyRatio  float64                `json:"dr_ready_ratio"` // median Ready / the floor's median main standby copy (of the same compression)
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
	s := sdrSummary{Label: a.label, Copy: a.copy, Ready: summarise(a.readies), Binary: a.binary, Wall: summarise(a.walls), Tools: summarise(a.tools), Own: summarise(a.owns),
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

// drReady is the standby role's copy to a ready DR cluster:
// 7_build_standby (copies, configuration, swaps, starts) and
// 8_start_cluster (every node streams from its upstream).
func (r sdrRun) drReady() float64 {
	var sum float64
	for _, st := range r.Steps["standby"] {
		if st.Name == "7_build_standby" || st.Name == "8_start_cluster" {
			sum += st.Seconds
		}
	}
	return sum
}

// floorAcc collects the runs of one floor procedure.
type floorAcc struct {
	walls      []time.Duration
	phaseRuns  map[string][]time.Duration
	phaseOrder []string
	readies    []time.Duration
	mainCopies []time.Duration
}

// floorReadyPhases are the floor's phases from the main standby's copy
// to the cascade streaming: what sdr's 7_build_standby and
// 8_start_cluster do.
var floorReadyPhases = map[string]bool{"basebackup main": true, "configure main": true, "start main": true, "wait main streams": true,
	"move cascade aside": true, "create cascade slot": true, "basebackup cascade": true, "configure cascade": true, "start cascade": true, "wait cascade streams": true}

func (f *floorAcc) add(wall time.Duration, phases []floorPhase) {
	if f.phaseRuns == nil {
		f.phaseRuns = map[string][]time.Duration{}
	}
	f.walls = append(f.walls, wall)
	var ready time.Duration
	for _, ph := range phases {
		if _, ok := f.phaseRuns[ph.Name]; !ok {
			f.phaseOrder = append(f.phaseOrder, ph.Name)
		}
		f.phaseRuns[ph.Name] = append(f.phaseRuns[ph.Name], secs(ph.Seconds))
		if floorReadyPhases[ph.Name] {
			ready += secs(ph.Seconds)
		}
		if ph.Name == "basebackup main" {
			f.mainCopies = append(f.mainCopies, secs(ph.Seconds))
		}
	}
	f.readies = append(f.readies, ready)
}

func (f *floorAcc) summary() (Stats, []namedStats) {
	var phases []namedStats
	for _, name := range f.phaseOrder {
		phases = append(phases, namedStats{Name: name, Stats: summarise(f.phaseRuns[name])})
	}
	return summarise(f.walls), phases
}

// ready is the floor's copy to a ready DR cluster, and the main standby's
// copy alone.
func (f *floorAcc) ready() (Stats, Stats) {
	return summarise(f.readies), summarise(f.mainCopies)
}

// floorSummary is a variant of the floor procedure.
type floorSummary struct {
	Compress string       `json:"compress"`
	Wall     Stats        `json:"wall"`
	Ready    Stats        `json:"dr_ready"`
	MainCopy Stats        `json:"main_copy"`
	Phases   []namedStats `json:"phases"`
}
