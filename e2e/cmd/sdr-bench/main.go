// Command sdr-bench measures sdr against what PostgreSQL's own tools do
// alone, on a test bed (package e2e/bed: primary dc1-a with its standby
// dc1-b, DR main standby dc2-a and its cascade dc2-b, PostgreSQL 15 as the
// postgres OS user, one sshd per data centre) loaded with pgbench data at
// the given scale. -bench chooses the sections (comma-separated, or all):
//
//   - start (the default): the floor procedure (the same rebuild of the
//     DR cluster done by hand with pg_ctl and pg_basebackup) and `sdr
//     start` (both roles at once) alternately, from the same starting
//     state, -runs times each; a rerun of a finished start, `sdr status`
//     with and without live facts, and the peak RSS of every sdr process.
//     -fanout, -compress and -max-rate add sdr runs with those copy
//     settings (and the floor compressed); -link-rate puts the primary's
//     replication connections behind a tc-limited veth pair into a network
//     namespace, through a relay (this program's "relay" subcommand).
//   - failover: on a fresh DR pair for every run, the primary data centre
//     is killed, then the time from starting `sdr failover
//     --accept-data-loss`, or a bare pg_promote() on the main standby, to
//     the first write a retrying client gets accepted on the new primary.
//   - switchover: on one DR pair, the write-unavailability window of a
//     client writing continuously (from its last write accepted on the old
//     primary to its first on the new one) through `sdr switchover` with
//     both halves started together, and through a bare fast shutdown plus
//     pg_promote(); each run switches there and back.
//
// See docs/performance.md for what each figure means.
//
//	sdr-bench -sdr bin/sdr [-bench start|failover|switchover|all] [-baseline BIN] [-fanout] [-compress server-zstd] [-max-rate 12M] [-link-rate 200mbit] [-scale N] [-runs 3] [-reps 10] [-json] [-json-out FILE] [-dir D] [-keep]
//
// It needs root (like the end-to-end tests) and takes the machine for a
// few minutes. It is a benchmark, not a test: nothing gates on its numbers.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "relay" {
		if err := relayMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "sdr-bench relay:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "floor-child" {
		if err := floorChild(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	var o options
	flag.StringVar(&o.sdr, "sdr", "bin/sdr", "the sdr binary to measure")
	flag.StringVar(&o.baseline, "baseline", "", "a second sdr binary (say, built from main) to run in every round as well, for comparison")
	flag.BoolVar(&o.fanout, "fanout", false, "also run sdr with copy.fan_out in every round (and the figures of the copy to a ready DR cluster)")
	flag.StringVar(&o.compress, "compress", "", "also run the floor and sdr with this server-side compression (copy.compress, e.g. server-zstd) in every round")
	flag.StringVar(&o.maxRate, "max-rate", "", "also run sdr with this copy.max_rate (kB/s, or with k or M: 12M) in every round (start section)")
	flag.StringVar(&o.linkRate, "link-rate", "", "start section: put the primary's replication connections behind a link limited to this rate (tc's units: 200mbit), through a network namespace and a relay")
	flag.StringVar(&o.shim, "shim", "", "the sdr-bench-shim binary (default: sdr-bench-shim beside this program)")
	flag.StringVar(&o.benchList, "bench", "start", "sections to run, comma-separated: start, failover, switchover, or all")
	flag.IntVar(&o.scale, "scale", 0, "pgbench scale of the primary's data (50 is about 750 MiB); default 50 for start and switchover, 10 for failover")
	flag.IntVar(&o.runs, "runs", 3, "timed runs of each kind (floor and sdr start; pg_promote and sdr failover; bare and sdr switchover), alternately")
	flag.IntVar(&o.reps, "reps", 10, "repetitions of the short commands (rerun of a finished start, status)")
	flag.BoolVar(&o.json, "json", false, "print one JSON document instead of the table")
	flag.StringVar(&o.jsonOut, "json-out", "", "also write the JSON document to this file")
	flag.StringVar(&o.dir, "dir", "", "bed directory (absolute, missing or empty; default a new /tmp/sdr-bed-*)")
	flag.BoolVar(&o.keep, "keep", false, "keep the bed (running) and its directory afterwards")
	flag.DurationVar(&o.timeout, "timeout", 30*time.Minute, "bound for each timed run")
	flag.Float64Var(&o.quietCores, "quiet-cores", 0.3, "before each run, wait until fewer CPU cores than this are busy (the bed is idle then)")
	flag.DurationVar(&o.quietWait, "quiet-wait", 3*time.Minute, "the longest wait for a quiet machine before each run (0: do not wait)")
	flag.StringVar(&o.lossList, "dc-loss", lossKill, "failover: how data centre 1 is lost, comma-separated: kill (servers and sshd die; connections refused), freeze (they hang; connections time out)")
	flag.DurationVar(&o.connectTimeout, "connect-timeout", 0, "failover: run sdr failover with this timeouts.connect (default: the bed's, 10s)")
	flag.DurationVar(&o.retry, "retry", 2*time.Millisecond, "failover and switchover: the writing client's pause between two INSERTs")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: sdr-bench -sdr BIN [-bench start|failover|switchover|all] [-baseline BIN] [-fanout] [-compress METHOD] [-max-rate RATE] [-link-rate RATE] [-shim BIN] [-scale N] [-runs N] [-reps N] [-json] [-json-out FILE] [-dir D] [-keep]\n"+
			"Measures sdr start, failover and switchover against PostgreSQL's own tools on a test bed (needs root). See docs/performance.md.\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := o.check(); err != nil {
		fmt.Fprintf(os.Stderr, "sdr-bench: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := runSections(ctx, o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "sdr-bench: %v\n", err)
		os.Exit(1)
	}
	if o.jsonOut != "" {
		if err := writeJSONFile(o.jsonOut, rep); err != nil {
			fmt.Fprintf(os.Stderr, "sdr-bench: %v\n", err)
			os.Exit(1)
		}
	}
	if o.json {
		err = rep.writeJSON(os.Stdout)
	} else {
		err = rep.writeTable(os.Stdout)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "sdr-bench: %v\n", err)
		os.Exit(1)
	}
}

type options struct {
	benchList string
	sections  []string // parsed from benchList
	sdr       string
	baseline  string
	fanout    bool
	compress  string
	maxRate   string // copy.max_rate of the "sdr max_rate" kind
	linkRate  string
	linkBits  int64 // parsed from linkRate; 0: no limited link
	shim      string
	scale     int
	runs      int
	reps      int
	json      bool
	jsonOut   string
	dir       string
	keep      bool
	timeout   time.Duration

	quietCores float64
	quietWait  time.Duration
	retry      time.Duration
	lossList   string
	losses     []string // parsed from lossList

	connectTimeout time.Duration
}

// sdrKind is one kind of timed sdr run: a binary and the copy settings
// of its config (nil: the bed's config as it is).
type sdrKind struct {
	name string
	copy map[string]any
}

func (k sdrKind) compressed() bool { return k.copy != nil && k.copy["compress"] != nil }

// copyText shows the copy settings, for the report.
func (k sdrKind) copyText() string {
	if k.copy == nil {
		return "copy: defaults"
	}
	var parts []string
	for _, key := range []string{"fan_out", "compress", "max_rate"} {
		if v, ok := k.copy[key]; ok {
			parts = append(parts, fmt.Sprintf("%s: %v", key, v))
		}
	}
	return "copy: {" + strings.Join(parts, ", ") + "}"
}

// sdrKinds are the sdr runs of every round, in order.
func (o *options) sdrKinds() []sdrKind {
	kinds := []sdrKind{{name: "sdr"}}
	if o.fanout {
		kinds = append(kinds, sdrKind{name: "sdr fan-out", copy: map[string]any{"fan_out": true}})
	}
	if o.compress != "" {
		kinds = append(kinds, sdrKind{name: "sdr compressed", copy: map[string]any{"compress": o.compress}})
		if o.fanout {
			kinds = append(kinds, sdrKind{name: "sdr fan-out compressed", copy: map[string]any{"fan_out": true, "compress": o.compress}})
		}
	}
	if o.maxRate != "" {
		kinds = append(kinds, sdrKind{name: "sdr max_rate", copy: map[string]any{"max_rate": o.maxRate}})
	}
	if o.baseline != "" {
		kinds = append(kinds, sdrKind{name: "baseline"})
	}
	return kinds
}

func (o *options) check() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("must run as root (PostgreSQL runs as the postgres OS user, sdr reaches it over a private sshd)")
	}
	abs, err := filepath.Abs(o.sdr)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(abs); err != nil || fi.IsDir() {
		return fmt.Errorf("-sdr %s: not a file (build it with make build)", o.sdr)
	}
	o.sdr = abs
	if o.baseline != "" {
		abs, err := filepath.Abs(o.baseline)
		if err != nil {
			return err
		}
		if fi, err := os.Stat(abs); err != nil || fi.IsDir() {
			return fmt.Errorf("-baseline %s: not a file", o.baseline)
		}
		o.baseline = abs
	}
	if o.sections, err = parseSections(o.benchList); err != nil {
		return err
	}
	if o.losses, err = parseLosses(o.lossList); err != nil {
		return err
	}
	if o.maxRate != "" {
		if _, err := parseMaxRate(o.maxRate); err != nil {
			return err
		}
	}
	if o.linkRate != "" {
		if o.linkBits, err = parseLinkRate(o.linkRate); err != nil {
			return err
		}
	}
	if o.has(sectionStart) {
		if o.shim == "" {
			self, err := os.Executable()
			if err != nil {
				return err
			}
			o.shim = filepath.Join(filepath.Dir(self), "sdr-bench-shim")
		}
		if fi, err := os.Stat(o.shim); err != nil || fi.IsDir() {
			return fmt.Errorf("-shim %s: not a file (build it with go build -o bin/sdr-bench-shim ./e2e/cmd/sdr-bench-shim)", o.shim)
		}
	}
	switch {
	case o.scale < 0:
		return fmt.Errorf("-scale %d: must be at least 1 (0: each section's default)", o.scale)
	case o.runs < 1:
		return fmt.Errorf("-runs %d: must be at least 1", o.runs)
	case o.reps < 1:
		return fmt.Errorf("-reps %d: must be at least 1", o.reps)
	case o.timeout <= 0:
		return fmt.Errorf("-timeout %s: must be positive", o.timeout)
	case o.quietWait < 0:
		return fmt.Errorf("-quiet-wait %s: must not be negative", o.quietWait)
	case o.connectTimeout < 0:
		return fmt.Errorf("-connect-timeout %s: must not be negative", o.connectTimeout)
	case o.retry <= 0 || o.retry > time.Second:
		return fmt.Errorf("-retry %s: must be more than 0 and at most 1s", o.retry)
	}
	return nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

func writeJSONFile(path string, rep jsonTable) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := rep.writeJSON(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
