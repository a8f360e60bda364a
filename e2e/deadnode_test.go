package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgsdr/sdr/e2e/bed"
)

// TestNodeThatStopsDuringTheStreamWaitEndsIt: a DR node whose PostgreSQL
// stops while 8_start_cluster waits for it to stream (here the cascade,
// which cannot reach its upstream) ends the step within seconds, not at
// --timeout, with a message naming the node and its data directory; once
// its cause is gone, a rerun starts it again and finishes.
func TestNodeThatStopsDuringTheStreamWaitEndsIt(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := startedBed(t, bed.Options{}, 1)
	ctx := context.Background()
	ss := standbySide(b)
	// A rebuild that stops right after 7_build_standby: both nodes run.
	if r := startWith(t, sdrBinFP, []string{"SDR_FAILPOINT=7_build_standby:after-checkpoint:kill"}, b.ConfigPath, ss, "--restart", "--timeout", "2m"); r.Code != -1 {
		t.Fatalf("want the run killed after 7_build_standby: %s", r)
	}
	// The cascade cannot reach its upstream: 8_start_cluster waits for it.
	auto := filepath.Join(b.Node(bed.DC2B).DataDir, "postgresql.auto.conf")
	raw, err := os.ReadFile(auto)
	if err != nil {
		t.Fatal(err)
	}
	good := string(raw)
	upPort := fmt.Sprintf("port=%d", b.Node(bed.DC2A).Port)
	if !strings.Contains(good, upPort) {
		t.Fatalf("dc2-b's postgresql.auto.conf does not name its upstream's %s:\n%s", upPort, good)
	}
	writeFile(t, auto, strings.ReplaceAll(good, upPort, "port=1"))
	if err := b.PGCtl(ctx, bed.DC2B, "reload"); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(b.Dir, "deadnode-standby.log")
	waiting := side{"standby", ss.state, log}
	done := make(chan result, 1)
	go func() { done <- start(t, b, waiting, "--timeout", "90s") }()
	eventually(t, time.Minute, "the rerun waits in 8_start_cluster", func() (bool, string) {
		raw, _ := os.ReadFile(log)
		return strings.Contains(string(raw), `"step":"8_start_cluster"`), tailLines(string(raw), 3)
	})
	time.Sleep(time.Second)
	stopped := time.Now()
	if err := b.PGCtl(ctx, bed.DC2B, "stop", "-m", "immediate"); err != nil {
		t.Fatal(err)
	}
	r := <-done
	took := time.Since(stopped)
	msg := errorLine(r.Stderr)
	t.Logf("exit %d %s after dc2-b stopped: %s", r.Code, took.Round(time.Millisecond), msg)
	if r.Code != 1 {
		t.Fatalf("want exit 1 (a step failed):\n%s", r)
	}
	if took > 30*time.Second {
		t.Errorf("the run ended %s after dc2-b stopped; the wait should end within seconds", took)
	}
	for _, w := range []string{"dc2-b", "no longer runs", b.Node(bed.DC2B).DataDir} {
		if !strings.Contains(msg, w) {
			t.Errorf("the error does not name %q: %s", w, msg)
		}
	}
	// Its cause gone, the rerun starts it again and finishes.
	writeFile(t, auto, good)
	if r := start(t, b, ss, "--timeout", "2m"); r.Code != 0 {
		t.Fatalf("rerun after the cascade's configuration is back: %s", r)
	}
	if got := sql(t, b, bed.DC2B, "SELECT status FROM pg_stat_wal_receiver"); got != "streaming" {
		t.Errorf("dc2-b's WAL receiver %q after the rerun, want streaming", got)
	}
}
