package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"

	"github.com/urfave/cli/v2"

	"github.com/pgsdr/sdr/store"
)

// version is sdr's version, set at build time with
// -ldflags "-X main.version=..."; empty means: from the build info.
var version string

// sdrVersion is version, else the module version and VCS revision that
// Go recorded in the binary.
func sdrVersion() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" && (v == "" || v == "(devel)") {
		return rev + dirty
	}
	if v == "" {
		return "unknown"
	}
	return v
}

// textfileNameRE is what a pair or side may be to name a textfile.
var textfileNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

func metricsCommand(d deps) *cli.Command {
	return &cli.Command{
		Name:      "metrics",
		Usage:     "print this side's DR state and, with --config, live replication facts as Prometheus metrics",
		UsageText: "sdr --state FILE [--config FILE] metrics [--textfile DIR]",
		Description: `Prints the Prometheus text format (version 0.0.4) on stdout: the side's DR state,
the running operation and step with its progress, how the last run of each operation
ended, and with --config, per node: reachable, in recovery, streaming, lag behind the
primary in bytes and seconds (absent when unknown, never 0), timeline and WAL positions.
It reads what sdr status reads, changes nothing, and works while a run holds the lock.
--textfile DIR writes DIR/sdr_<pair>_<side>.prom instead, atomically (a temporary file
in DIR, then a rename), for node_exporter's textfile collector; run it from cron or a
systemd timer. Every metric is described in docs/metrics.md.
Exit codes: 0; 3 when there is no state file at --state; 2 when the state file, the
config or DIR cannot be used.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "textfile", Usage: "write `DIR`/sdr_<pair>_<side>.prom atomically instead of printing"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("metrics takes no arguments, got %q", c.Args().Slice())
			}
			return runMetrics(c, d, readGlobals(c), c.String("textfile"))
		},
	}
}

func runMetrics(c *cli.Context, d deps, g globals, dir string) error {
	if dir != "" {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return usagef("--textfile %s: not a directory", dir)
		}
	}
	doc, err := loadStatus(c, d, g, 1)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := writeFamilies(&buf, buildMetrics(doc, sdrVersion())); err != nil {
		return err
	}
	if dir == "" {
		_, err := c.App.Writer.Write(buf.Bytes())
		return err
	}
	pair, side := doc.Pair, string(doc.Role)
	if !textfileNameRE.MatchString(pair) || !textfileNameRE.MatchString(side) {
		return usagef("--textfile: cannot name the file: the state file %s names pair %q and side %q (it has not run yet?)", g.state, pair, side)
	}
	path := filepath.Join(dir, fmt.Sprintf("sdr_%s_%s.prom", pair, side))
	// 0644: node_exporter runs as another user; the metrics hold no secret.
	if err := store.WriteFileAtomic(path, buf.Bytes(), 0o644); err != nil {
		return usageErr(fmt.Errorf("while writing the metrics textfile: %w", err))
	}
	return nil
}
