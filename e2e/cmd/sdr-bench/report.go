package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// report is the benchmark's result; -json prints it as is.
type report struct {
	Version     int     `json:"version"`
	Date        string  `json:"date"`
	Machine     machine `json:"machine"`
	Scale       int     `json:"scale"`
	DBBytes     int64   `json:"db_bytes"`
	LoadSeconds float64 `json:"pgbench_init_s"`
	Runs        int     `json:"runs"`
	Reps        int     `json:"reps"`
	Load        struct {
		Start [3]float64 `json:"start"`
		End   [3]float64 `json:"end"`
	} `json:"loadavg"`

	Floor       Stats        `json:"floor"`
	FloorPhases []namedStats `json:"floor_phases"`
	FloorRuns   []floorRun   `json:"floor_runs"`
	// FloorReady is the floor from the main standby's copy to the cascade
	// streaming; FloorMainCopy the main standby's copy alone.
	FloorReady          Stats           `json:"floor_dr_ready"`
	FloorMainCopy       Stats           `json:"floor_main_copy"`
	FloorCompressed     *floorSummary   `json:"floor_compressed,omitempty"` // with -compress
	FloorCompressedRuns []floorRun      `json:"floor_compressed_runs,omitempty"`
	SDR                 sdrSummary      `json:"sdr"`
	Variants            []sdrSummary    `json:"variants,omitempty"` // with -fanout, -compress
	Baseline            *sdrSummary     `json:"baseline,omitempty"` // with -baseline
	Short               []shortStats    `json:"short"`
	Shim                shimCalibration `json:"shim"`
	FirstStart          *sdrRun         `json:"first_start"`
	Link                *linkInfo       `json:"link,omitempty"` // with -link-rate or -max-rate
}

// linkInfo is the rate-limited link (-link-rate) and copy.max_rate (-max-rate).
type linkInfo struct {
	Rate         string `json:"rate,omitempty"`
	RateBits     int64  `json:"rate_bits_per_s,omitempty"`
	MaxRate      string `json:"max_rate,omitempty"`
	MaxRateBytes int64  `json:"max_rate_bytes_per_s,omitempty"`
}

type machine struct {
	CPUs       int    `json:"cpus"`
	CPUModel   string `json:"cpu_model"`
	MemTotal   string `json:"mem_total"`
	Kernel     string `json:"kernel"`
	PostgreSQL string `json:"postgresql"`
	Go         string `json:"go"`
}

type namedStats struct {
	Name string `json:"name"`
	Stats
}

type stepStats struct {
	Name string `json:"name"`
	Stats
	Own Stats `json:"own"` // the step less the pg_basebackup and pg_ctl start/stop calls within it
}

type shortStats struct {
	Name string `json:"name"`
	Stats
	MaxRSSKiB int64 `json:"maxrss_kib"`
}

type floorRun struct {
	Wall           float64      `json:"wall_s"`
	Env            runEnv       `json:"env"`
	CleanupSeconds float64      `json:"untimed_cleanup_s"` // removing the two old data directories afterwards
	Phases         []floorPhase `json:"phases"`
	LinkBytes      int64        `json:"link_bytes,omitempty"` // crossed the rate-limited link from the primary
}

func (r *report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// goal is one target of issue 13, shown beside the figure it applies to.
type goal struct {
	text string
	met  bool
}

func (g goal) String() string {
	if g.text == "" {
		return ""
	}
	if g.met {
		return g.text + " (met)"
	}
	return g.text + " (NOT met)"
}

func (r *report) writeTable(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "sdr-bench %s\n", r.Date)
	fmt.Fprintf(bw, "machine: %d CPUs (%s), memory %s, kernel %s, PostgreSQL %s, %s\n",
		r.Machine.CPUs, r.Machine.CPUModel, r.Machine.MemTotal, r.Machine.Kernel, r.Machine.PostgreSQL, r.Machine.Go)
	fmt.Fprintf(bw, "load average: %.2f %.2f %.2f at start, %.2f %.2f %.2f at end\n",
		r.Load.Start[0], r.Load.Start[1], r.Load.Start[2], r.Load.End[0], r.Load.End[1], r.Load.End[2])
	fmt.Fprintf(bw, "data: pgbench scale %d, %d MiB in all databases of the primary (pgbench -i took %.1f s)\n",
		r.Scale, r.DBBytes>>20, r.LoadSeconds)
	fmt.Fprintf(bw, "runs: %d of each, alternately (floor, sdr[, variants, baseline]; the next round in reverse order); short commands %d times each\n", r.Runs, r.Reps)
	if l := r.Link; l != nil && l.RateBits > 0 {
		fmt.Fprintf(bw, "link: the primary's replication connections cross a veth pair limited to %s (%.1f MiB/s) towards the DR data centre (tc tbf; a relay in network namespace %s)\n",
			l.Rate, float64(l.RateBits)/8/(1<<20), linkNS)
	}
	fmt.Fprintln(bw)

	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DR cluster rebuild (seconds)\tmedian\tmin\tmax\tgoal")
	row := func(name string, s Stats, g goal) {
		fmt.Fprintf(tw, "%s\t%.3f\t%.3f\t%.3f\t%s\n", name, s.Median, s.Min, s.Max, g)
	}
	row("floor: pg_ctl + pg_basebackup by hand", r.Floor, goal{})
	sums := []labelled{{"sdr", &r.SDR}}
	for i := range r.Variants {
		sums = append(sums, labelled{r.Variants[i].Label, &r.Variants[i]})
	}
	if r.Baseline != nil {
		sums = append(sums, labelled{"baseline", r.Baseline})
	}
	for _, x := range sums {
		s := x.s
		fmt.Fprintf(tw, "%s (%s, %s)\t\t\t\t\n", x.label, s.Binary, s.Copy)
		row("  start, both roles at once", s.Wall, goal{})
		fmt.Fprintf(tw, "  ratio to the floor (medians)\t%.2f\t\t\t%s\n", s.Ratio, goal{"<= 1.10", s.Ratio <= 1.10})
		row("  in pg_basebackup, pg_ctl start/stop, initdb -S", s.Tools, goal{})
		row("  own time (wall - the line above)", s.Own, goal{"<= 0.300", s.Own.Median <= 0.3})
		row("  own time, pg_ctl status also excluded", s.OwnNoProbes, goal{})
		row("  own time, less the shim's cost (estimate)", s.OwnLessShim, goal{})
	}
	tw.Flush()
	if r.Baseline != nil {
		fmt.Fprintln(bw)
		writePaired(bw, &r.SDR, r.Baseline)
	}

	fmt.Fprintln(bw)
	tw = tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "copy to a ready DR cluster (seconds; from the main standby's copy to the cascade streaming)\tmedian\tmin\tmax\tratio\tgoal")
	fmt.Fprintf(tw, "floor: the main standby's copy alone (the reference)\t%.3f\t%.3f\t%.3f\t1.00\t\n", r.FloorMainCopy.Median, r.FloorMainCopy.Min, r.FloorMainCopy.Max)
	ratio := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	fmt.Fprintf(tw, "floor: main standby, then the cascade from it\t%.3f\t%.3f\t%.3f\t%.2f\t\n", r.FloorReady.Median, r.FloorReady.Min, r.FloorReady.Max,
		ratio(r.FloorReady.Median, r.FloorMainCopy.Median))
	readyRow := func(x *sdrSummary) {
		g := goal{}
		if strings.Contains(x.Label, "fan-out") {
			g = goal{"<= 1.30", x.ReadyRatio <= 1.3}
		}
		fmt.Fprintf(tw, "%s: 7_build_standby + 8_start_cluster\t%.3f\t%.3f\t%.3f\t%.2f\t%s\n", x.Label, x.Ready.Median, x.Ready.Min, x.Ready.Max, x.ReadyRatio, g)
	}
	for _, x := range sums {
		if !strings.Contains(x.s.Label, "compressed") {
			readyRow(x.s)
		}
	}
	if fc := r.FloorCompressed; fc != nil {
		fmt.Fprintf(tw, "floor compressed (%s): the main standby's copy alone (the reference)\t%.3f\t%.3f\t%.3f\t1.00\t\n", fc.Compress, fc.MainCopy.Median, fc.MainCopy.Min, fc.MainCopy.Max)
		fmt.Fprintf(tw, "floor compressed: main standby, then the cascade from it\t%.3f\t%.3f\t%.3f\t%.2f\t\n", fc.Ready.Median, fc.Ready.Min, fc.Ready.Max,
			ratio(fc.Ready.Median, fc.MainCopy.Median))
		for _, x := range sums {
			if strings.Contains(x.s.Label, "compressed") {
				readyRow(x.s)
			}
		}
		fmt.Fprintf(tw, "compressed copy against the plain one (floor, the main standby's copy)\t\t\t\t%.2f\t\n", ratio(fc.MainCopy.Median, r.FloorMainCopy.Median))
	}
	tw.Flush()

	r.writeLinkTable(bw, sums)

	fmt.Fprintln(bw)
	tw = tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "short commands (seconds)\tmedian\tmin\tmax\tpeak RSS\tgoal")
	for _, s := range r.Short {
		g := goal{}
		switch {
		case strings.HasPrefix(s.Name, "rerun"):
			g = goal{"<= 0.050", s.Median <= 0.05}
		case strings.HasPrefix(s.Name, "status from"):
			g = goal{"<= 0.030", s.Median <= 0.03}
		case strings.HasPrefix(s.Name, "status --config"):
			g = goal{"<= 0.300", s.Median <= 0.3}
		}
		fmt.Fprintf(tw, "%s\t%.3f\t%.3f\t%.3f\t%.1f MiB\t%s\n", s.Name, s.Median, s.Min, s.Max, float64(s.MaxRSSKiB)/1024, g)
	}
	peak := r.SDR.PeakRSSKiB
	if r.FirstStart != nil {
		peak = max(peak, r.FirstStart.RSSPrimary, r.FirstStart.RSSStandby)
	}
	fmt.Fprintf(tw, "peak RSS of sdr start (any run, either role)\t\t\t\t%.1f MiB\t\n", float64(peak)/1024)
	for _, s := range r.Short {
		peak = max(peak, s.MaxRSSKiB)
	}
	fmt.Fprintf(tw, "peak RSS of any sdr process\t\t\t\t%.1f MiB\t%s\n", float64(peak)/1024, goal{"<= 40 MiB", peak <= 40*1024})
	tw.Flush()

	fmt.Fprintf(bw, "(the timing shim costs %.2f ms per call outside the interval it records, %.2f ms per call more than the real program)\n",
		r.Shim.OutsideS*1000, r.Shim.AddsS*1000)

	fmt.Fprintln(bw)
	tw = tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "floor phases (seconds)\tmedian\tmin\tmax")
	for _, p := range r.FloorPhases {
		fmt.Fprintf(tw, "%s\t%.3f\t%.3f\t%.3f\n", p.Name, p.Median, p.Min, p.Max)
	}
	tw.Flush()
	if fc := r.FloorCompressed; fc != nil {
		fmt.Fprintln(bw)
		tw = tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "floor compressed (%s) phases (seconds)\tmedian\tmin\tmax\n", fc.Compress)
		for _, p := range fc.Phases {
			fmt.Fprintf(tw, "%s\t%.3f\t%.3f\t%.3f\n", p.Name, p.Median, p.Min, p.Max)
		}
		tw.Flush()
	}
	for _, x := range sums {
		s := x.s
		fmt.Fprintln(bw)
		tw = tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "%s: calls of the shimmed programs (seconds per run)\tmedian\tmin\tmax\n", x.label)
		for _, c := range s.Calls {
			fmt.Fprintf(tw, "%s\t%.3f\t%.3f\t%.3f\n", c.Name, c.Median, c.Min, c.Max)
		}
		tw.Flush()
		for _, role := range []string{"standby", "primary"} {
			fmt.Fprintln(bw)
			tw = tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
			if role == "primary" {
				// The primary role runs no pg_ctl or pg_basebackup: its steps are all its own time.
				fmt.Fprintf(tw, "%s: steps, %s role (seconds, from the state file)\tmedian\tmin\tmax\n", x.label, role)
				for _, st := range s.Steps[role] {
					fmt.Fprintf(tw, "%s\t%.3f\t%.3f\t%.3f\n", st.Name, st.Median, st.Min, st.Max)
				}
				tw.Flush()
				continue
			}
			fmt.Fprintf(tw, "%s: steps, %s role (seconds, from the state file)\tmedian\tmin\tmax\town median\town min\town max\n", x.label, role)
			var sum float64
			for _, st := range s.Steps[role] {
				fmt.Fprintf(tw, "%s\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\n", st.Name, st.Median, st.Min, st.Max, st.Own.Median, st.Own.Min, st.Own.Max)
				sum += st.Own.Median
			}
			fmt.Fprintf(tw, "(sum of the medians)\t\t\t\t%.3f\t\t\n", sum)
			tw.Flush()
		}
	}

	fmt.Fprintln(bw)
	tw = tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "each run\twall\tprimary\tstandby\ttools\tprobes (n)\town\tload1\tCPUs busy before\twaited\tCPUs busy during")
	envCols := func(e runEnv) string {
		return fmt.Sprintf("%.2f\t%.2f\t%.0f s\t%.2f", e.Load1, e.BusyBefore, e.WaitedQuiet, e.BusyDuring)
	}
	sdrRow := func(name string, s sdrRun) {
		fmt.Fprintf(tw, "%s\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f (%d)\t%.3f\t%s\n", name, s.Wall, s.Primary, s.Standby, s.Tools, s.Probes, s.ProbeCalls, s.Own, envCols(s.Env))
	}
	for i, f := range r.FloorRuns {
		fmt.Fprintf(tw, "floor %d\t%.3f\t\t\t\t\t\t%s\n", i+1, f.Wall, envCols(f.Env))
		if i < len(r.FloorCompressedRuns) {
			f := r.FloorCompressedRuns[i]
			fmt.Fprintf(tw, "floor compressed %d\t%.3f\t\t\t\t\t\t%s\n", i+1, f.Wall, envCols(f.Env))
		}
		for _, x := range sums {
			if i < len(x.s.Runs) {
				sdrRow(fmt.Sprintf("%s %d", x.label, i+1), x.s.Runs[i])
			}
		}
	}
	if f := r.FirstStart; f != nil {
		fmt.Fprintf(tw, "(first start)\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f (%d)\t%.3f\t\t\t\t\n", f.Wall, f.Primary, f.Standby, f.Tools, f.Probes, f.ProbeCalls, f.Own)
	}
	tw.Flush()
	if f := r.FirstStart; f != nil {
		fmt.Fprintln(bw)
		fmt.Fprintln(bw, "first start (the bed's fresh state: the primary side creates the role, slot and pg_hba block while the standby side waits for them)")
		tw = tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "(%.2f CPUs busy before, %.2f during)\n", f.Env.BusyBefore, f.Env.BusyDuring)
		fmt.Fprintln(tw, "step\tstandby role\town\tprimary role")
		// Steps line up by number; the two roles may name them differently.
		type cell struct {
			name     string
			sec, own float64
		}
		rows := map[string][2]*cell{}
		var order []string
		for i, role := range []string{"standby", "primary"} {
			for _, st := range f.Steps[role] {
				num, _, _ := strings.Cut(st.Name, "_")
				if _, ok := rows[num]; !ok {
					order = append(order, num)
				}
				r := rows[num]
				r[i] = &cell{st.Name, st.Seconds, st.Own}
				rows[num] = r
			}
		}
		sort.SliceStable(order, func(i, j int) bool {
			a, errA := strconv.Atoi(order[i])
			b, errB := strconv.Atoi(order[j])
			if errA != nil || errB != nil {
				return errA == nil // numbered steps first
			}
			return a < b
		})
		for _, num := range order {
			sb, pr := rows[num][0], rows[num][1]
			var names []string
			cols := "\t-\t-"
			if sb != nil {
				names = append(names, sb.name)
				cols = fmt.Sprintf("\t%.3f\t%.3f", sb.sec, sb.own)
			}
			if pr != nil {
				if sb == nil || pr.name != sb.name {
					names = append(names, pr.name)
				}
				cols += fmt.Sprintf("\t%.3f", pr.sec)
			} else {
				cols += "\t-"
			}
			fmt.Fprintf(tw, "%s%s\n", strings.Join(names, " / "), cols)
		}
		tw.Flush()
	}
	return bw.Flush()
}

// labelled is one sdr kind's summary with its label in the tables.
type labelled struct {
	label string
	s     *sdrSummary
}

// linkRun is what one run sent across the rate-limited link.
type linkRun struct {
	mainCopy float64 // seconds
	bytes    int64
}

// linkStats sums up the runs of one kind: the main standby's copy, the
// bytes that crossed the link, and their rate over the copy.
func linkStats(runs []linkRun) (copyS, mib, rate Stats) {
	var c, b, v []time.Duration
	for _, r := range runs {
		c = append(c, secs(r.mainCopy))
		// MiB and MiB/s are kept in the Duration's seconds.
		b = append(b, secs(float64(r.bytes)/(1<<20)))
		if r.mainCopy > 0 {
			v = append(v, secs(float64(r.bytes)/(1<<20)/r.mainCopy))
		}
	}
	return summarise(c), summarise(b), summarise(v)
}

// floorMainCopy is the floor's "basebackup main" phase.
func floorMainCopy(f floorRun) float64 {
	for _, p := range f.Phases {
		if p.Name == "basebackup main" {
			return p.Seconds
		}
	}
	return 0
}

// writeLinkTable prints, with -link-rate, what crossed the link in each
// kind of run and how fast, against the link's rate (and -max-rate).
func (r *report) writeLinkTable(bw *bufio.Writer, sums []labelled) {
	l := r.Link
	if l == nil || l.RateBits == 0 {
		return
	}
	linkMiB := float64(l.RateBits) / 8 / (1 << 20)
	fmt.Fprintln(bw)
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "the link from the primary (%s, %.1f MiB/s; medians)\tmain standby's copy (s)\tcrossed the link (MiB)\tMiB/s over the copy\tof the link\n", l.Rate, linkMiB)
	row := func(name string, runs []linkRun) {
		c, b, v := linkStats(runs)
		fmt.Fprintf(tw, "%s\t%.3f\t%.0f\t%.1f\t%.0f %%\n", name, c.Median, b.Median, v.Median, 100*v.Median/linkMiB)
	}
	var fl, fc []linkRun
	for _, f := range r.FloorRuns {
		fl = append(fl, linkRun{floorMainCopy(f), f.LinkBytes})
	}
	row("floor", fl)
	for _, f := range r.FloorCompressedRuns {
		fc = append(fc, linkRun{floorMainCopy(f), f.LinkBytes})
	}
	if len(fc) > 0 {
		row("floor compressed ("+r.FloorCompressed.Compress+")", fc)
	}
	for _, x := range sums {
		var runs []linkRun
		for _, s := range x.s.Runs {
			runs = append(runs, linkRun{s.MainCopy, s.LinkBytes})
		}
		row(x.label, runs)
	}
	tw.Flush()
	if l.MaxRateBytes > 0 {
		fmt.Fprintf(bw, "(copy.max_rate %s is %.1f MiB/s, %.0f %% of the link: the primary's %d MiB would take %.1f s at that rate)\n",
			l.MaxRate, float64(l.MaxRateBytes)/(1<<20), 100*float64(l.MaxRateBytes)*8/float64(l.RateBits), r.DBBytes>>20, float64(r.DBBytes)/float64(l.MaxRateBytes))
	}
	fmt.Fprintln(bw, "(crossed the link: bytes received by the root namespace's end of the veth pair during the run, headers included; the WAL streamed during the run too)")
}

// writePaired compares sdr with the baseline round by round (-baseline):
// the median of the differences is steadier than the difference of the
// medians when the load moves between rounds.
func writePaired(bw io.Writer, a, b *sdrSummary) {
	n := min(len(a.Runs), len(b.Runs))
	if n == 0 {
		return
	}
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "sdr less the baseline, round by round (seconds)\tmedian\tmin\tmax\tsdr lower in")
	row := func(name string, f func(r sdrRun) (float64, bool)) {
		var x, y []float64
		for i := range n {
			va, oka := f(a.Runs[i])
			vb, okb := f(b.Runs[i])
			if oka && okb {
				x, y = append(x, va), append(y, vb)
			}
		}
		if len(x) == 0 {
			return
		}
		s, lower := pairedDiff(x, y)
		fmt.Fprintf(tw, "%s\t%+.3f\t%+.3f\t%+.3f\t%d of %d\n", name, s.Median, s.Min, s.Max, lower, len(x))
	}
	row("start, both roles at once", func(r sdrRun) (float64, bool) { return r.Wall, true })
	row("own time", func(r sdrRun) (float64, bool) { return r.Own, true })
	for _, st := range a.Runs[0].Steps["standby"] {
		name := st.Name
		row("  "+name+", own", func(r sdrRun) (float64, bool) {
			for _, x := range r.Steps["standby"] {
				if x.Name == name {
					return x.Own, true
				}
			}
			return 0, false
		})
	}
	tw.Flush()
}
