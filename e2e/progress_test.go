package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pgsdr/sdr/e2e/bed"
	"github.com/pgsdr/sdr/e2e/term"
)

// slowBinDir makes a bin_dir whose pg_basebackup is the real one limited
// to rate (pg_basebackup --max-rate), so that a copy lasts long enough
// to be watched; every other program is a link to the real one.
func slowBinDir(t *testing.T, b *bed.Bed, rate string) string {
	t.Helper()
	dir := filepath.Join(b.Dir, "slowbin")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(bed.BinDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "pg_basebackup" {
			continue
		}
		if err := os.Symlink(filepath.Join(bed.BinDir, e.Name()), filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	script := fmt.Sprintf("#!/bin/sh\nexec %s --max-rate=%s \"$@\"\n", filepath.Join(bed.BinDir, "pg_basebackup"), rate)
	if err := os.WriteFile(filepath.Join(dir, "pg_basebackup"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestBasebackupProgressInATerminal runs `sdr start --role standby` in a
// real terminal (tmux) while the copy of dc2-a is slowed to 16 MB/s, and
// `sdr status --watch` in another. The run's terminal shows one progress
// line under the log lines (bytes of the total, rate, time left), redrawn
// in place and erased at the end, where the final 100% stays as a log
// line. The watch shows the running step and the copy's progress, read
// from the running sdr process.
func TestBasebackupProgressInATerminal(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := newBed(t)
	srv, err := term.New(b.Dir)
	if errors.Is(err, term.ErrNoTmux) {
		t.Skip("tmux is not installed (Debian: apt-get install tmux; .ci/run does)")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	seedData(t, b, 5) // about 80 MB: 5 s at 16 MB/s
	slow := slowBinDir(t, b, "16M")
	cfg, err := b.WriteConfig(func(m *map[string]any) {
		nodeMap(*m, "standby", 0)["bin_dir"] = slow // dc2-a, the main standby
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	pd, sd := primarySide(b), standbySide(b)
	primary := make(chan result, 1)
	go func() { primary <- startWith(t, sdrBin, nil, cfg, pd, "--timeout", "5m") }()

	run := fmt.Sprintf("%s --config %s --state %s --log-file %s start --role standby --timeout 5m; echo EXIT=$?", sdrBin, cfg, sd.state, sd.log)
	if err := srv.Start(ctx, "run", 160, 40, run); err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`^7_build_standby  dc2-a: \d+\.\d [KM]iB of \d+\.\d MiB \(\d+%\), \d+\.\d MiB/s, \S+ left$`)
	scr, err := srv.WaitScreen(ctx, "run", 3*time.Minute, func(s []string) bool { return line.MatchString(lastLine(s)) })
	if err != nil {
		t.Fatalf("no progress line with a rate: %v\n%s", err, strings.Join(scr, "\n"))
	}
	t.Logf("the run's terminal while dc2-a is copied:\n%s", strings.Join(scr, "\n"))
	if n := countMatching(scr, regexp.MustCompile(`dc2-a: \S+ \S+ of `)); n != 1 {
		t.Errorf("%d lines show progress, want 1", n)
	}

	watch := fmt.Sprintf("%s --state %s status --watch --interval 500ms --count 4; echo EXIT=$?", sdrBin, sd.state)
	if err := srv.Start(ctx, "watch", 160, 50, watch); err != nil {
		t.Fatal(err)
	}
	progress := regexp.MustCompile(`running step: start/standby 7_build_standby, for \S+; progress:\n  dc2-a: \S+ \S+ of \S+ MiB \(\d+%\), \S+ MiB/s, \S+ left\n`)
	scr, err = srv.WaitScreen(ctx, "watch", time.Minute, func(s []string) bool { return progress.MatchString(strings.Join(s, "\n")) })
	if err != nil {
		t.Fatalf("status --watch does not show the copy's progress: %v\n%s", err, strings.Join(scr, "\n"))
	}
	t.Logf("status --watch during the copy:\n%s", strings.Join(scr, "\n"))

	if scr, err := srv.WaitScreen(ctx, "run", 5*time.Minute, func(s []string) bool { return strings.HasPrefix(lastLine(s), "EXIT=") }); err != nil || lastLine(scr) != "EXIT=0" {
		t.Fatalf("the standby start did not end with exit 0: %v\n%s", err, strings.Join(scr, "\n"))
	}
	if r := <-primary; r.Code != 0 {
		t.Fatalf("primary start: %s", r)
	}
	hist, err := srv.History(ctx, "run")
	if err != nil {
		t.Fatal(err)
	}
	if regexp.MustCompile(`MiB of|MiB/s`).MatchString(hist) {
		t.Errorf("a progress line was left on the terminal:\n%s", hist)
	}
	if !regexp.MustCompile(`INFO 7_build_standby\s+basebackup progress: (\d+)/(\d+) kB \(100%\)`).MatchString(hist) {
		t.Errorf("the final 100%% is not kept as a log line:\n%s", hist)
	}
	if !strings.Contains(hist, "start/standby for DR pair "+b.Name+" complete") {
		t.Errorf("no completion line:\n%s", hist)
	}
	if _, err := os.Stat(sd.state + ".progress"); !os.IsNotExist(err) {
		t.Errorf("the progress file is left after the run: %v", err)
	}
	checkConverged(t, b)
}

// lastLine is the last line of a screen that is not blank, nor tmux's
// own "Pane is dead" line.
func lastLine(s []string) string {
	for i := len(s) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(s[i]); l != "" && !strings.HasPrefix(l, "Pane is dead") {
			return s[i]
		}
	}
	return ""
}

func countMatching(s []string, re *regexp.Regexp) int {
	n := 0
	for _, l := range s {
		if re.MatchString(l) {
			n++
		}
	}
	return n
}
