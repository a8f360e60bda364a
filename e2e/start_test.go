package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/e2e/bed"
)

// cmdlineWatcher scans every process's command line for a secret while
// it runs.
type cmdlineWatcher struct {
	secret []byte
	stop   chan struct{}
	done   sync.WaitGroup
	mu     sync.Mutex
	hits   []string
	scans  int
}

func watchCmdlines(secret string) *cmdlineWatcher {
	w := &cmdlineWatcher{secret: []byte(secret), stop: make(chan struct{})}
	w.done.Add(1)
	go func() {
		defer w.done.Done()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			w.scan()
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
		}
	}()
	return w
}

func (w *cmdlineWatcher) scan() {
	paths, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err == nil && bytes.Contains(raw, w.secret) {
			w.mu.Lock()
			w.hits = append(w.hits, p+": "+strings.ReplaceAll(string(raw), "\x00", " "))
			w.mu.Unlock()
		}
	}
	w.mu.Lock()
	w.scans++
	w.mu.Unlock()
}

func (w *cmdlineWatcher) Stop() ([]string, int) {
	close(w.stop)
	w.done.Wait()
	return w.hits, w.scans
}

// TestStartPair runs both starts at the same time on a fresh bed of each
// flavour (bedFlavours) and checks the outcome in PostgreSQL itself.
func TestStartPair(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	needE2E(t)
	for _, fl := range bedFlavours(t) {
		t.Run(fl.name, func(t *testing.T) { testStartPair(t, fl) })
	}
}

func testStartPair(t *testing.T, fl flavour) {
	if fl.opts.Flavour == bed.FlavourDebian {
		keepDebianMain(t)
		noSystemd(t)
	}
	b := newBedWith(t, fl.opts)
	ctx := context.Background()
	if err := b.Pgbench(ctx, bed.DC1A, "-i", "-s", "2", "-q"); err != nil {
		t.Fatal(err)
	}
	sql(t, b, bed.DC1A, "CREATE TABLE before_start AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 5000) g")
	w := watchCmdlines(b.Password)
	p, s := startBoth(t, b, "--timeout", "3m")
	hits, scans := w.Stop()
	if p.Code != 0 || s.Code != 0 {
		t.Fatalf("starts failed:\nprimary: %s\nstandby: %s", p, s)
	}
	t.Logf("primary start took %s, standby start took %s", p.Took.Round(time.Millisecond), s.Took.Round(time.Millisecond))
	checkStartedPair(t, b, b.ConfigPath, startedPair{p: p, s: s, hits: hits, scans: scans, flavourChecks: func(t *testing.T) {
		if b.Flavour == bed.FlavourDebian {
			t.Run("DR nodes are Debian clusters in recovery; sdr wrote only the pg_hba.conf each server reads", func(t *testing.T) {
				checkDebianDR(t, b)
			})
		}
		if fl.opts.Addressing == bed.AddrNamesIPv6 {
			t.Run("nodes named by host name and IPv6", func(t *testing.T) { checkNamesIPv6(t, b) })
		}
	}})
	if b.Flavour == bed.FlavourDebian {
		t.Run("stop takes sdr's block out of the pg_hba.conf each server reads", func(t *testing.T) { checkDebianStop(t, b) })
	}
}

// checkDebianStop stops both sides of a Debian bed and checks that no
// node's pg_hba.conf in /etc (the file its server reads, where start
// wrote sdr's block) holds the block any more, nor does the server load
// lines for the replication user.
func checkDebianStop(t *testing.T, b *bed.Bed) {
	p, s := stopBoth(t, b, sdrBin, nil, nil)
	if p.Code != 0 || s.Code != 0 {
		t.Fatalf("stops failed:\nprimary: %s\nstandby: %s", p, s)
	}
	for _, n := range bed.NodeNames {
		hba, err := os.ReadFile(b.HBAFile(n))
		if err != nil {
			t.Fatal(err)
		}
		if c := cluster.CountBlocks(string(hba), b.Name); c != 0 {
			t.Errorf("%s: %s still has %d sdr block(s) after stop", n, b.HBAFile(n), c)
		}
		if got := sql(t, b, n, "SELECT count(*) FROM pg_hba_file_rules WHERE '"+b.ReplicationUser+"' = ANY(user_name)"); got != "0" {
			t.Errorf("%s: the server still loads %s pg_hba.conf rules for %s after stop", n, got, b.ReplicationUser)
		}
	}
}

// startedPair is what checkStartedPair needs of the starts it checks.
type startedPair struct {
	p, s  result // the primary and the standby start
	hits  []string
	scans int // of watchCmdlines during the starts
	// flavourChecks runs the bed flavour's own checks (may be nil).
	flavourChecks func(t *testing.T)
}

// checkStartedPair checks the outcome of both starts, made with the
// config cfg, in PostgreSQL itself: states, topology, the data on every
// standby, the nodes' own pg_hba.conf and pg_ident.conf lines, status,
// a second start that changes nothing, an unreachable node in status,
// and no password anywhere.
func checkStartedPair(t *testing.T, b *bed.Bed, cfg string, sp startedPair) {
	ctx := context.Background()
	p, s, hits, scans := sp.p, sp.s, sp.hits, sp.scans

	t.Run("states", func(t *testing.T) {
		if got := status(t, "", primarySide(b)).state("primary"); got != "archive" {
			t.Errorf("primary side state = %q, want archive", got)
		}
		if got := status(t, "", standbySide(b)).state("standby"); got != "recovery" {
			t.Errorf("standby side state = %q, want recovery", got)
		}
	})

	t.Run("topology in PostgreSQL", func(t *testing.T) {
		dc1a, dc2a := b.Node(bed.DC1A), b.Node(bed.DC2A)
		// The main standby streams from the primary under its own application_name, through sdr's slot.
		eventually(t, 30*time.Second, "dc2-a streams from dc1-a", func() (bool, string) {
			got := sql(t, b, bed.DC1A, "SELECT state FROM pg_stat_replication WHERE application_name = '"+mainApp(b)+"'")
			return got == "streaming", got
		})
		if got := sql(t, b, bed.DC1A, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '"+mainSlot(b)+"' AND active"); got != "1" {
			t.Errorf("active sdr slots on dc1-a = %s, want 1", got)
		}
		if got := sql(t, b, bed.DC2A, "SELECT status || ' ' || sender_port FROM pg_stat_wal_receiver"); got != "streaming "+strconv.Itoa(dc1a.Port) {
			t.Errorf("dc2-a wal receiver = %q, want streaming from port %d", got, dc1a.Port)
		}
		if got := sql(t, b, bed.DC2B, "SELECT status || ' ' || sender_port FROM pg_stat_wal_receiver"); got != "streaming "+strconv.Itoa(dc2a.Port) {
			t.Errorf("dc2-b wal receiver = %q, want streaming from dc2-a port %d", got, dc2a.Port)
		}
		for _, n := range []string{bed.DC2A, bed.DC2B} {
			if got := sql(t, b, n, "SELECT pg_is_in_recovery()"); got != "t" {
				t.Errorf("%s in recovery = %s", n, got)
			}
		}
		if got := sql(t, b, bed.DC1A, "SELECT setting FROM pg_settings WHERE name = 'wal_keep_size'"); got != "256" {
			t.Errorf("dc1-a wal_keep_size = %s MB, want the original 256", got)
		}
	})

	t.Run("data on every standby", func(t *testing.T) {
		sql(t, b, bed.DC1A, "CREATE TABLE after_start AS SELECT g AS id FROM generate_series(1, 777) g")
		want := sql(t, b, bed.DC1A, "SELECT md5(string_agg(aid::text || abalance, ',' ORDER BY aid)) FROM pgbench_accounts")
		for _, n := range []string{bed.DC2A, bed.DC2B} {
			eventually(t, 30*time.Second, "rows written after the start reach "+n, func() (bool, string) {
				out, err := b.SQL(ctx, n, "SELECT count(*) FROM after_start")
				return err == nil && out == "777", fmt.Sprint(out, err)
			})
			if got := sql(t, b, n, "SELECT count(*) FROM before_start"); got != "5000" {
				t.Errorf("%s: before_start has %s rows, want 5000", n, got)
			}
			if got := sql(t, b, n, "SELECT md5(string_agg(aid::text || abalance, ',' ORDER BY aid)) FROM pgbench_accounts"); got != want {
				t.Errorf("%s: pgbench_accounts checksum %s, want %s", n, got, want)
			}
		}
	})

	t.Run("custom pg_hba and pg_ident lines survive", func(t *testing.T) {
		// dc2-a's own lines; dc2-b had them from its copy of dc2-a. On
		// the Debian bed only dc2-a's files in /etc have them.
		nodes := []string{bed.DC2A, bed.DC2B}
		if b.Flavour == bed.FlavourDebian {
			nodes = nodes[:1]
		}
		for _, n := range nodes {
			hba, err := os.ReadFile(b.HBAFile(n))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(hba), "10.99.0.0/24") {
				t.Errorf("%s pg_hba.conf lost the custom line:\n%s", n, hba)
			}
			ident, err := os.ReadFile(b.IdentFile(n))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(ident), "custommap") {
				t.Errorf("%s pg_ident.conf lost the custom line:\n%s", n, ident)
			}
			// PostgreSQL loaded the file that has it.
			if got := sql(t, b, n, "SELECT count(*) FROM pg_hba_file_rules WHERE '10.99.0.0' = address"); got != "1" {
				t.Errorf("%s: custom pg_hba rule not loaded (%s)", n, got)
			}
		}
	})

	t.Run("status --json matches PostgreSQL", func(t *testing.T) {
		for _, sd := range []side{primarySide(b), standbySide(b)} {
			d := status(t, cfg, sd)
			if len(d.Nodes) != 4 {
				t.Fatalf("%s: status shows %d nodes, want 4", sd.role, len(d.Nodes))
			}
			for _, n := range d.Nodes {
				if !n.Reachable {
					t.Errorf("%s: node %s unreachable: %s", sd.role, n.Name, n.Error)
					continue
				}
				wantRole := "standby"
				if sql(t, b, n.Name, "SELECT pg_is_in_recovery()") == "f" {
					wantRole = "primary"
				}
				if n.Role != wantRole {
					t.Errorf("%s: node %s role %q, PostgreSQL says %q", sd.role, n.Name, n.Role, wantRole)
				}
				if wantRole == "standby" {
					port := sql(t, b, n.Name, "SELECT coalesce(sender_port, 0) FROM pg_stat_wal_receiver")
					if n.WalReceiver == nil || strconv.Itoa(n.WalReceiver.SenderPort) != port {
						t.Errorf("%s: node %s wal receiver %+v, PostgreSQL says sender_port %s", sd.role, n.Name, n.WalReceiver, port)
					}
				}
				apps := sql(t, b, n.Name, "SELECT coalesce(string_agg(application_name, ',' ORDER BY application_name), '') FROM pg_stat_replication")
				var got []string
				for _, r := range n.Replication {
					got = append(got, r.ApplicationName)
				}
				if strings.Join(got, ",") != apps {
					t.Errorf("%s: node %s downstream %v, PostgreSQL says %q", sd.role, n.Name, got, apps)
				}
			}
			up := map[string]string{}
			for _, n := range d.Nodes {
				up[n.Name] = n.Upstream
			}
			if up[bed.DC2A] != bed.DC1A || up[bed.DC2B] != bed.DC2A {
				t.Errorf("%s: upstreams %v, want dc2-a<-dc1-a and dc2-b<-dc2-a", sd.role, up)
			}
		}
	})

	t.Run("second start changes nothing", func(t *testing.T) {
		before := snapshotPair(t, b)
		for _, sd := range []side{primarySide(b), standbySide(b)} {
			r := startWith(t, sdrBin, nil, cfg, sd)
			if r.Code != 0 || !strings.Contains(r.Stdout, "already complete") {
				t.Errorf("second start --role %s: %s", sd.role, r)
			}
		}
		after := snapshotPair(t, b)
		for k, v := range before {
			if after[k] != v {
				t.Errorf("second start changed %s:\nbefore: %s\nafter:  %s", k, v, after[k])
			}
		}
	})

	if sp.flavourChecks != nil {
		sp.flavourChecks(t)
	}

	t.Run("status names an unreachable node", func(t *testing.T) {
		if err := b.StopNode(ctx, bed.DC2B); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := b.StartNode(ctx, bed.DC2B); err != nil {
				t.Errorf("restarting dc2-b: %v", err)
			}
		}()
		d := status(t, cfg, standbySide(b))
		for _, n := range d.Nodes {
			if n.Name == bed.DC2B && (n.Reachable || !strings.Contains(n.Error, "dc2-b")) {
				t.Errorf("stopped dc2-b shown as %+v", n)
			}
			if n.Name != bed.DC2B && !n.Reachable {
				t.Errorf("%s unreachable: %s", n.Name, n.Error)
			}
		}
		r := sdr(t, sdrBin, nil, "--config", cfg, "--state", b.StateFileStandby, "status")
		if r.Code != 0 || !strings.Contains(r.Stdout, "UNREACHABLE") {
			t.Errorf("text status does not show dc2-b as unreachable: %s", r)
		}
	})

	t.Run("password never exposed", func(t *testing.T) {
		if len(hits) > 0 {
			t.Errorf("password seen on command lines: %v", hits)
		}
		if scans < 10 {
			t.Errorf("command lines scanned only %d times", scans)
		}
		files := []string{b.LogFilePrimary, b.LogFileStandby, b.StateFilePrimary, b.StateFileStandby}
		for _, n := range bed.NodeNames {
			files = append(files, b.Node(n).LogFile)
		}
		for _, f := range files {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Errorf("reading %s: %v", f, err)
				continue
			}
			if bytes.Contains(raw, []byte(b.Password)) {
				t.Errorf("password found in %s", f)
			}
		}
		for _, r := range []result{p, s} {
			if strings.Contains(r.Stdout+r.Stderr, b.Password) {
				t.Errorf("password printed by sdr")
			}
		}
	})
}

// snapshotPair records what a rerun must not change.
func snapshotPair(t *testing.T, b *bed.Bed) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, n := range bed.NodeNames {
		hba, _ := os.ReadFile(b.HBAFile(n))
		auto, _ := os.ReadFile(filepath.Join(b.Node(n).DataDir, "postgresql.auto.conf"))
		out[n+" pg_hba.conf"] = string(hba)
		out[n+" postgresql.auto.conf"] = string(auto)
		out[n+" postmaster start"] = sql(t, b, n, "SELECT pg_postmaster_start_time()")
	}
	out["dc1-a slots"] = sql(t, b, bed.DC1A, "SELECT string_agg(slot_name, ',' ORDER BY slot_name) FROM pg_replication_slots")
	out["dc1-a role"] = sql(t, b, bed.DC1A, "SELECT rolpassword FROM pg_authid WHERE rolname = 'sdr_repl'")
	for _, sd := range []side{primarySide(b), standbySide(b)} {
		d := status(t, "", sd)
		out[sd.role+" history"] = fmt.Sprint(len(d.History))
		out[sd.role+" state"] = d.state(sd.role)
	}
	return out
}
