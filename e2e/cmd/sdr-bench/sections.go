package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// The benchmark's sections, chosen with -bench.
const (
	sectionStart      = "start"
	sectionFailover   = "failover"
	sectionSwitchover = "switchover"
)

var allSections = []string{sectionStart, sectionFailover, sectionSwitchover}

// defaultScale is each section's pgbench scale when -scale is not given:
// the start and the switchover at the issues' scale 50; the failover builds
// a fresh pair for every run, so a small one.
var defaultScale = map[string]int{sectionStart: 50, sectionFailover: 10, sectionSwitchover: 50}

// parseSections reads -bench: a comma-separated list of sections, or all.
// Each section runs once, in the order of allSections.
func parseSections(list string) ([]string, error) {
	want := map[string]bool{}
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		switch {
		case f == "":
			continue
		case f == "all":
			for _, s := range allSections {
				want[s] = true
			}
		case defaultScale[f] > 0:
			want[f] = true
		default:
			return nil, fmt.Errorf("-bench %q: unknown section %q (want %s, or all)", list, f, strings.Join(allSections, ", "))
		}
	}
	var out []string
	for _, s := range allSections {
		if want[s] {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-bench %q: no section named (want %s, or all)", list, strings.Join(allSections, ", "))
	}
	return out, nil
}

func (o *options) has(section string) bool {
	for _, s := range o.sections {
		if s == section {
			return true
		}
	}
	return false
}

// scaleFor is the pgbench scale of a section: -scale, or its default.
func (o *options) scaleFor(section string) int {
	if o.scale > 0 {
		return o.scale
	}
	return defaultScale[section]
}

// jsonTable is what main prints: a table, or one JSON document.
type jsonTable interface {
	writeJSON(w io.Writer) error
	writeTable(w io.Writer) error
}

// results holds the report of every section that ran. With the start
// section alone, it prints exactly the start report (as before sections
// existed); otherwise one document with a member per section.
type results struct {
	Start      *report           `json:"start,omitempty"`
	Failover   *failoverReport   `json:"failover,omitempty"`
	Switchover *switchoverReport `json:"switchover,omitempty"`
}

func (r *results) only() jsonTable {
	switch {
	case r.Start != nil && r.Failover == nil && r.Switchover == nil:
		return r.Start
	case r.Start == nil && r.Failover != nil && r.Switchover == nil:
		return r.Failover
	case r.Start == nil && r.Failover == nil && r.Switchover != nil:
		return r.Switchover
	}
	return nil
}

func (r *results) writeJSON(w io.Writer) error {
	if r.Start != nil && r.Failover == nil && r.Switchover == nil {
		return r.Start.writeJSON(w)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func (r *results) writeTable(w io.Writer) error {
	if one := r.only(); one != nil {
		return one.writeTable(w)
	}
	var parts []jsonTable
	if r.Start != nil {
		parts = append(parts, r.Start)
	}
	if r.Failover != nil {
		parts = append(parts, r.Failover)
	}
	if r.Switchover != nil {
		parts = append(parts, r.Switchover)
	}
	for i, p := range parts {
		if i > 0 {
			if _, err := fmt.Fprintln(w); err != nil {
				return err
			}
		}
		if err := p.writeTable(w); err != nil {
			return err
		}
	}
	return nil
}

// runSections runs every section chosen, each with its own scale.
func runSections(ctx context.Context, o options) (*results, error) {
	res := &results{}
	for _, sec := range o.sections {
		so := o
		so.scale = o.scaleFor(sec)
		var err error
		switch sec {
		case sectionStart:
			res.Start, err = runBench(ctx, so)
		case sectionFailover:
			res.Failover, err = runFailoverBench(ctx, so)
		case sectionSwitchover:
			res.Switchover, err = runSwitchoverBench(ctx, so)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", sec, err)
		}
	}
	return res, nil
}
