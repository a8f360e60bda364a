//go:build failpoints

package main

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

	"github.com/pgsdr/sdr/e2e/term"
)

// TestProgressAndWatchInATerminal runs the real binary in a real terminal
// (tmux): a selftest run whose step 3_three copies two parts for 4 s, and
// beside it `status --watch`. The run's terminal shows one progress line
// under its log lines, redrawn in place and erased when the copy ends;
// the watch redraws its screen in place and shows the running step with
// the progress of both parts.
func TestProgressAndWatchInATerminal(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	srv, err := term.New(dir)
	if errors.Is(err, term.ErrNoTmux) {
		t.Skip("tmux is not installed (Debian: apt-get install tmux)")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	bin := failpointBinary(t)
	state := filepath.Join(dir, "state.db")
	run := fmt.Sprintf("%s --state %s selftest --journal %s --step-sleep 4s --progress-bytes 4000000000; echo EXIT=$?",
		bin, state, filepath.Join(dir, "journal"))
	if err := srv.Start(ctx, "run", 160, 20, run); err != nil {
		t.Fatal(err)
	}

	// While 3_three copies: the last line of the screen is the progress
	// line, and no other line shows progress (it is redrawn, not repeated).
	progress := regexp.MustCompile(`^3_three  node-a: \d+\.\d [KMG]iB of 3\.7 GiB \(\d+%\), \d+\.\d MiB/s, \S+ left \| node-b: `)
	scr, err := srv.WaitScreen(ctx, "run", 30*time.Second, func(s []string) bool {
		return progress.MatchString(lastLine(s)) && strings.Contains(strings.Join(s, "\n"), "a log line while copying")
	})
	if err != nil {
		t.Fatalf("%v; screen:\n%s", err, strings.Join(scr, "\n"))
	}
	if n := countMatching(scr, "node-a"); n != 1 {
		t.Errorf("%d lines show progress, want 1:\n%s", n, strings.Join(scr, "\n"))
	}

	// Beside it, status --watch shows the running step and both parts.
	watch := fmt.Sprintf("%s --state %s status --watch --interval 200ms --count 10; echo EXIT=$?", bin, state)
	if err := srv.Start(ctx, "watch", 120, 40, watch); err != nil {
		t.Fatal(err)
	}
	scr, err = srv.WaitScreen(ctx, "watch", 20*time.Second, func(s []string) bool {
		j := strings.Join(s, "\n")
		return strings.Contains(j, "running step: selftest/primary 3_three, for ") &&
			regexp.MustCompile(`\n  node-a: \S+ \S+ of 3\.7 GiB \(\d+%\), \S+ MiB/s, \S+ left\n  node-b: `).MatchString(j)
	})
	if err != nil {
		t.Fatalf("%v; watch screen:\n%s", err, strings.Join(scr, "\n"))
	}
	if _, err := srv.WaitScreen(ctx, "watch", 20*time.Second, func(s []string) bool { return lastLine(s) == "EXIT=0" }); err != nil {
		t.Fatalf("status --watch --count 10 did not end with exit 0: %v", err)
	}
	hist, err := srv.History(ctx, "watch")
	if err != nil {
		t.Fatal(err)
	}
	// Ten refreshes, drawn in place: the status appears once on the
	// screen and nothing scrolled off.
	if n := strings.Count(hist, "DR pair selftest"); n != 1 {
		t.Errorf("the watch's history shows the status %d times, want 1 (redrawn in place):\n%s", n, hist)
	}
	if !strings.Contains(hist, "sdr status, every 200ms (Ctrl-C ends)") {
		t.Errorf("no watch header:\n%s", hist)
	}

	// When the run ends, its progress line is gone; the log lines stay.
	if _, err := srv.WaitScreen(ctx, "run", 60*time.Second, func(s []string) bool { return lastLine(s) == "EXIT=0" }); err != nil {
		t.Fatalf("the run did not end with exit 0: %v", err)
	}
	hist, err = srv.History(ctx, "run")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(hist, "node-a") || strings.Contains(hist, "\r") {
		t.Errorf("the progress line was left on the terminal:\n%s", hist)
	}
	for _, want := range []string{"INFO 3_three                synthetic 3_three", "INFO 3_three                a log line while copying", "INFO 4_four ", "complete; state recovery"} {
		if !strings.Contains(hist, want) {
			t.Errorf("the run's terminal does not show %q:\n%s", want, hist)
		}
	}
	if _, err := os.Stat(state + ".progress"); !os.IsNotExist(err) {
		t.Errorf("the progress file is left after the run: %v", err)
	}
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

func countMatching(s []string, sub string) int {
	n := 0
	for _, l := range s {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}
