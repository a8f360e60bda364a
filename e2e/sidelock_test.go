package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgsdr/sdr/e2e/bed"
)

// TestSecondRunOnASideIsRefused: while a start of the DR side runs (here
// waiting in 2_check_cluster for a primary that is down), a run of the
// same side from another state file, a start or a stop, is refused by its
// checks (the lock is taken while they run), naming the run that holds
// the side, with the side's state unchanged; once the first run has
// finished, the same command runs.
func TestSecondRunOnASideIsRefused(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := startedBed(t, bed.Options{}, 1)
	ctx := context.Background()
	// A second state file of the same side, as a second admin host has.
	raw, err := os.ReadFile(b.StateFileStandby)
	if err != nil {
		t.Fatal(err)
	}
	other := side{"standby", filepath.Join(b.Dir, "other-standby.db"), filepath.Join(b.Dir, "other-standby.log")}
	if err := os.WriteFile(other.state, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	// A third one whose start was killed as it began to change things:
	// its next run resumes at 3_prepare_replication.
	resumed := side{"standby", filepath.Join(b.Dir, "resumed-standby.db"), filepath.Join(b.Dir, "resumed-standby.log")}
	if err := os.WriteFile(resumed.state, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := startWith(t, sdrBinFP, []string{"SDR_FAILPOINT=3_prepare_replication:before:kill"}, b.ConfigPath, resumed, "--restart", "--timeout", "1m"); r.Code != -1 {
		t.Fatalf("want the run killed at 3_prepare_replication: %s", r)
	}
	if err := b.StopNode(ctx, bed.DC1A); err != nil {
		t.Fatal(err)
	}
	holder := side{"standby", b.StateFileStandby, filepath.Join(b.Dir, "holder-standby.log")}
	first := make(chan result, 1)
	go func() { first <- start(t, b, holder, "--restart", "--timeout", "2m") }()
	eventually(t, time.Minute, "the first run waits in 2_check_cluster", func() (bool, string) {
		raw, _ := os.ReadFile(holder.log)
		return strings.Contains(string(raw), `"step":"2_check_cluster"`), tailLines(string(raw), 3)
	})

	// status with live facts names the run that holds the DR side.
	runLock := func() string {
		for _, n := range status(t, b.ConfigPath, other).Nodes {
			if n.Name == bed.DC2A {
				return n.RunLock
			}
		}
		return ""
	}
	if got := runLock(); !strings.Contains(got, "start/standby") || !strings.Contains(got, b.StateFileStandby) {
		t.Errorf("status --config: dc2-a's run_lock %q, want the first run", got)
	}

	// plan says a run would be refused, and why.
	pl := sdr(t, sdrBin, nil, "--config", b.ConfigPath, "--state", other.state, "plan", "start", "--role", "standby", "--restart", "--timeout", "20s")
	if pl.Code != 2 || !strings.Contains(pl.Stdout, "REFUSED at side lock") || !strings.Contains(pl.Stdout, "start/standby") {
		t.Errorf("plan while another run holds the side: want REFUSED at side lock naming it:\n%s", pl)
	}

	for _, args := range [][]string{
		{"start", "--role", "standby", "--restart", "--timeout", "20s"},
		{"stop", "--role", "standby", "--timeout", "20s"},
	} {
		before := status(t, "", other).state("standby")
		r := sdr(t, sdrBin, nil, append([]string{"--config", b.ConfigPath, "--state", other.state, "--log-file", other.log}, args...)...)
		if r.Code != 2 {
			t.Fatalf("%s while another run holds the side: want exit 2\n%s", args[0], r)
		}
		msg := errorLine(r.Stderr)
		t.Logf("%s refused after %s: %s", args[0], r.Took.Round(time.Millisecond), msg)
		for _, w := range []string{"another sdr run works on this side", "dc2-a", "start/standby", b.StateFileStandby} {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: the error does not name %q: %s", args[0], w, msg)
			}
		}
		if !strings.Contains(r.Stdout, "refused at 2_check_cluster before changing anything") {
			t.Errorf("%s: stdout does not say it was refused:\n%s", args[0], r.Stdout)
		}
		if r.Took > 15*time.Second {
			t.Errorf("%s: refused only after %s", args[0], r.Took)
		}
		if after := status(t, "", other).state("standby"); after != before {
			t.Errorf("%s: the refused run changed the side's state from %s to %s", args[0], before, after)
		}
	}

	// A run that would resume at a step that changes something is refused
	// before anything is recorded: its state file stays as it was.
	before := fileDigest(resumed.state)
	r := sdr(t, sdrBin, nil, "--config", b.ConfigPath, "--state", resumed.state, "--log-file", resumed.log, "start", "--role", "standby", "--timeout", "20s")
	t.Logf("resumed start refused after %s: %s", r.Took.Round(time.Millisecond), errorLine(r.Stderr))
	if r.Code != 2 || !strings.Contains(r.Stdout, "refused before its first step") || !strings.Contains(errorLine(r.Stderr), "another sdr run works on this side") {
		t.Errorf("a resumed start while another run holds the side: want exit 2, refused before its first step:\n%s", r)
	}
	if after := fileDigest(resumed.state); after != before {
		t.Errorf("the refused resumed run changed its state file")
	}

	if err := b.StartNode(ctx, bed.DC1A); err != nil {
		t.Fatal(err)
	}
	if r := <-first; r.Code != 0 {
		t.Fatalf("the first run, once the primary is back: %s", r)
	}
	if got := runLock(); got != "" {
		t.Errorf("status --config after the run ended: dc2-a's run_lock %q, want none", got)
	}
	// The side is let go with the run: the same command now runs.
	if r := start(t, b, other, "--restart", "--timeout", "2m"); r.Code != 0 {
		t.Fatalf("the second state file's start after the first run ended: %s", r)
	}
}
