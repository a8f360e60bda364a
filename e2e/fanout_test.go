package e2e

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgsdr/sdr/e2e/bed"
)

// withCopy writes a variant of the bed's config with copy: set to opts.
func withCopy(t *testing.T, b *bed.Bed, opts map[string]any) string {
	t.Helper()
	cfg, err := b.WriteConfig(func(m *map[string]any) { (*m)["copy"] = opts })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// baseBackupCommands returns the BASE_BACKUP commands in node's server
// log (log_replication_commands), in order.
func baseBackupCommands(t *testing.T, b *bed.Bed, node string) []string {
	t.Helper()
	raw, err := os.ReadFile(b.Node(node).LogFile)
	if err != nil {
		t.Fatal(err)
	}
	return regexp.MustCompile(`command: BASE_BACKUP[^\n]*`).FindAllString(string(raw), -1)
}

// TestFanOutStartPair runs both starts with the fan-out copy, compressed
// by the primary and rate limited, on a fresh bed, and checks the outcome
// as TestStartPair does. Then the standby side is rebuilt the ordinary way
// with another compression, which must converge as well.
func TestFanOutStartPair(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := newBed(t)
	ctx := context.Background()
	if err := b.Pgbench(ctx, bed.DC1A, "-i", "-s", "2", "-q"); err != nil {
		t.Fatal(err)
	}
	sql(t, b, bed.DC1A, "CREATE TABLE before_start AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 5000) g")
	cfg := withCopy(t, b, map[string]any{"fan_out": true, "compress": "server-zstd:3", "max_rate": "500M"})
	fromPrimary, fromMain := len(baseBackupCommands(t, b, bed.DC1A)), len(baseBackupCommands(t, b, bed.DC2A))

	w := watchCmdlines(b.Password)
	var p, s result
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p = startWith(t, sdrBin, nil, cfg, primarySide(b), "--timeout", "3m") }()
	go func() { defer wg.Done(); s = startWith(t, sdrBin, nil, cfg, standbySide(b), "--timeout", "3m") }()
	wg.Wait()
	hits, scans := w.Stop()
	if p.Code != 0 || s.Code != 0 {
		t.Fatalf("starts failed:\nprimary: %s\nstandby: %s", p, s)
	}
	t.Logf("primary start took %s, standby start took %s", p.Took.Round(time.Millisecond), s.Took.Round(time.Millisecond))

	t.Run("plan of a rebuild with the copy options", func(t *testing.T) {
		r := plan(t, cfg, standbySide(b), "start", "--role", "standby", "--restart")
		if r.Code != 0 {
			t.Fatalf("plan refused a fan-out rebuild: %s", r)
		}
		for _, want := range []string{"--compress=server-zstd:3", "--max-rate=512000"} {
			if !strings.Contains(r.Stdout, want) {
				t.Errorf("the plan's pg_basebackup does not show %s:\n%s", want, r.Stdout)
			}
		}
	})

	t.Run("one copy from the primary, compressed and rate limited, none from the main standby", func(t *testing.T) {
		got := baseBackupCommands(t, b, bed.DC1A)[fromPrimary:]
		if len(got) != 1 {
			t.Fatalf("the primary served %d base backups, want 1: %q", len(got), got)
		}
		for _, want := range []string{"COMPRESSION 'zstd'", "COMPRESSION_DETAIL '3'", "MAX_RATE 512000"} {
			if !strings.Contains(got[0], want) {
				t.Errorf("the primary's BASE_BACKUP %q lacks %s", got[0], want)
			}
		}
		if n := len(baseBackupCommands(t, b, bed.DC2A)) - fromMain; n != 0 {
			t.Errorf("the main standby served %d base backups, want none: the cascade's copy is the fan-out copy", n)
		}
		log, err := os.ReadFile(b.LogFileStandby)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(log, []byte("fan-out copy finished")) || !bytes.Contains(log, []byte("the fan-out copy can stream from the main standby")) {
			t.Errorf("the standby side's log does not show the fan-out copy:\n%s", tailLines(string(log), 40))
		}
	})

	checkStartedPair(t, b, cfg, startedPair{p: p, s: s, hits: hits, scans: scans})

	t.Run("rebuilt the ordinary way with another compression", func(t *testing.T) {
		cfg2 := withCopy(t, b, map[string]any{"compress": "server-lz4"})
		seedData(t, b, 1)
		fromPrimary, fromMain := len(baseBackupCommands(t, b, bed.DC1A)), len(baseBackupCommands(t, b, bed.DC2A))
		if r := startWith(t, sdrBin, nil, cfg2, standbySide(b), "--restart", "--timeout", "3m"); r.Code != 0 {
			t.Fatalf("standby start: %s", r)
		}
		got := baseBackupCommands(t, b, bed.DC1A)[fromPrimary:]
		if len(got) != 1 || !strings.Contains(got[0], "COMPRESSION 'lz4'") {
			t.Errorf("the primary's base backups: %q, want one with COMPRESSION 'lz4'", got)
		}
		cascade := baseBackupCommands(t, b, bed.DC2A)[fromMain:]
		if len(cascade) != 1 || strings.Contains(cascade[0], "COMPRESSION") || strings.Contains(cascade[0], "MAX_RATE") {
			t.Errorf("the main standby's base backups: %q, want one, neither compressed nor limited (the copy inside the DR data centre)", cascade)
		}
		checkConverged(t, b)
	})
}

// TestFanOutKillResumes kills the standby side during the fan-out copy,
// then at the phases that follow it, each run resuming the one before.
// The pair converges; the primary served the killed copy and one complete
// copy, and the cascade was never copied from the main standby.
func TestFanOutKillResumes(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := newBed(t)
	seedData(t, b, 10)
	cfg := withCopy(t, b, map[string]any{"fan_out": true})
	primaryDone := make(chan result, 1)
	go func() { primaryDone <- startWith(t, sdrBin, nil, cfg, primarySide(b), "--timeout", "4m") }()
	fromPrimary, fromMain := len(baseBackupCommands(t, b, bed.DC1A)), len(baseBackupCommands(t, b, bed.DC2A))
	for _, point := range []string{"copying@dc2-a", "copied@dc2-b", "started@dc2-a", "swapped@dc2-b"} {
		fp := "7_build_standby:" + point + ":kill"
		r := startWith(t, sdrBinFP, []string{"SDR_FAILPOINT=" + fp}, cfg, standbySide(b), "--timeout", "2m")
		if r.Code != -1 {
			t.Fatalf("%s: want the run killed at the failpoint, got %s", fp, r)
		}
		if point == "copying@dc2-a" {
			// Killed with the stream under way: nothing is complete, and
			// no half copy is anywhere but in <work>/new.
			for _, n := range []string{bed.DC2A, bed.DC2B} {
				if _, err := os.Stat(b.Node(n).DataDir + ".sdr/new.complete"); !os.IsNotExist(err) {
					t.Errorf("%s: new.complete after a kill during the copy (%v)", n, err)
				}
				if _, err := os.Stat(b.Node(n).DataDir + "/sdr_copy"); err == nil {
					t.Errorf("%s: the data directory holds an sdr copy after a kill during the copy", n)
				}
			}
		}
	}
	if r := startWith(t, sdrBin, nil, cfg, standbySide(b), "--timeout", "2m"); r.Code != 0 {
		t.Fatalf("rerun after the kills: %s", r)
	}
	if p := <-primaryDone; p.Code != 0 {
		t.Fatalf("primary side: %s", p)
	}
	if got := len(baseBackupCommands(t, b, bed.DC1A)) - fromPrimary; got != 2 {
		t.Errorf("the primary served %d base backups, want 2 (the one cut short and the complete one)", got)
	}
	if got := len(baseBackupCommands(t, b, bed.DC2A)) - fromMain; got != 0 {
		t.Errorf("the main standby served %d base backups, want none", got)
	}
	checkConverged(t, b)
	noLeftovers(t, b)
	for _, n := range []string{bed.DC2A, bed.DC2B} {
		if _, err := os.Stat(b.Node(n).DataDir + ".sdr/fanout.fifo"); !os.IsNotExist(err) {
			t.Errorf("%s: the fan-out FIFO is left (%v)", n, err)
		}
	}
}
