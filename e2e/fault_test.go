package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/e2e/bed"
)

// stepNames are the start steps; a role records the other role's steps as skipped.
var stepNames = map[string][]string{
	"primary": {"1_prepare", "2_check_cluster", "3_prepare_replication", "4_retain_wal", "5_open_access", "8_wait_standby", "9_finish"},
	"standby": {"1_prepare", "2_check_cluster", "3_prepare_replication", "5_stop_cluster", "6_set_guc", "7_build_standby", "8_start_cluster", "9_finish"},
}

// failState is the state a failure of the step leaves its side in ("": normal).
var failState = map[string]string{
	"primary/8_wait_standby":  "backup_fail",
	"standby/7_build_standby": "restore_fail",
	"standby/8_start_cluster": "recovery_fail",
	// A failure of 9_finish leaves the state its step 8 reached.
	"primary/9_finish": "archive",
	"standby/9_finish": "recovery",
}

// TestFaultMatrix fails every step of each role three ways — a failpoint
// before the step, a failpoint after its side effects but before its
// checkpoint, and a panic — then reruns the same commands and checks that
// the pair converges with intact data and no doubled side effects. Each
// case has its own bed; two cases run at a time.
func TestFaultMatrix(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	needE2E(t)
	ways := []struct{ name, spec string }{
		{"before", "%s:before"},
		{"after-effects", "%s:after-effects"},
		{"panic", "%s:before:panic"},
	}
	for _, role := range []string{"primary", "standby"} {
		for _, step := range stepNames[role] {
			for _, way := range ways {
				t.Run(fmt.Sprintf("%s/%s/%s", role, step, way.name), func(t *testing.T) {
					t.Parallel()
					faultCase(t, role, step, fmt.Sprintf(way.spec, step), way.name == "panic")
				})
			}
		}
	}
}

func faultCase(t *testing.T, role, step, failpoint string, isPanic bool) {
	b := newBed(t)
	seedData(t, b, 1)
	// The other side runs normally. It waits only briefly when the failing
	// side blocks it, but long enough to finish when the failing side needs
	// it to (the primary's steps 8 and 9 need a streaming standby).
	otherTimeout := "5s"
	if role == "primary" && (strings.HasPrefix(step, "8_") || strings.HasPrefix(step, "9_")) {
		otherTimeout = "2m"
	}
	var wg sync.WaitGroup
	var target result
	wg.Add(2)
	go func() {
		defer wg.Done()
		target = startWith(t, sdrBinFP, []string{"SDR_FAILPOINT=" + failpoint}, b.ConfigPath, sideOf(b, role), "--timeout", "2m")
	}()
	go func() {
		defer wg.Done()
		other := "standby"
		if role == "standby" {
			other = "primary"
		}
		startWith(t, sdrBinFP, nil, b.ConfigPath, sideOf(b, other), "--timeout", otherTimeout)
	}()
	wg.Wait()
	if target.Code != 1 {
		t.Fatalf("%s with failpoint %s: want exit 1, got %s", role, failpoint, target)
	}
	d := status(t, "", sideOf(b, role))
	rec := findStep(d, step)
	if rec == nil || rec.Status != "failed" || rec.Error == nil {
		t.Fatalf("%s: step %s not recorded as failed: %+v", role, step, rec)
	}
	if isPanic && rec.Error.Type != "panic" {
		t.Errorf("%s: step %s error type %q, want panic", role, step, rec.Error.Type)
	}
	want := failState[role+"/"+step]
	if want == "" {
		want = "normal"
	}
	if got := d.state(role); got != want {
		t.Errorf("%s: state after failing %s = %q, want %q", role, step, got, want)
	}
	p, s := startBoth(t, b, "--timeout", "2m")
	if p.Code != 0 || s.Code != 0 {
		t.Fatalf("rerun did not converge:\nprimary: %s\nstandby: %s", p, s)
	}
	if rec := findStep(status(t, "", sideOf(b, role)), step); rec == nil || rec.Attempts != 2 {
		t.Errorf("%s: step %s after the rerun: %+v, want 2 attempts", role, step, rec)
	}
	checkConverged(t, b)
}

func sideOf(b *bed.Bed, role string) side {
	if role == "primary" {
		return primarySide(b)
	}
	return standbySide(b)
}

func findStep(d statusDoc, name string) *stepRec {
	for _, w := range d.Workflows {
		for i := range w.Steps {
			if w.Steps[i].Name == name {
				return &w.Steps[i]
			}
		}
	}
	return nil
}

// seedData loads pgbench tables and a test table on the primary.
func seedData(t *testing.T, b *bed.Bed, scale int) {
	t.Helper()
	if err := b.Pgbench(context.Background(), bed.DC1A, "-i", "-q", "-s", fmt.Sprint(scale)); err != nil {
		t.Fatal(err)
	}
	sql(t, b, bed.DC1A, "CREATE TABLE IF NOT EXISTS dr_check AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 3000) g")
}

const checksumSQL = "SELECT count(*) || ':' || md5(string_agg(id::text || v, ',' ORDER BY id)) FROM dr_check"

// checkConverged checks the end state of a pair: states, streaming,
// identical data on all nodes, and side effects that happened once.
func checkConverged(t *testing.T, b *bed.Bed) {
	t.Helper()
	if got := status(t, "", primarySide(b)).state("primary"); got != "archive" {
		t.Errorf("primary side state %q, want archive", got)
	}
	if got := status(t, "", standbySide(b)).state("standby"); got != "recovery" {
		t.Errorf("standby side state %q, want recovery", got)
	}
	sql(t, b, bed.DC1A, "INSERT INTO dr_check SELECT g, md5(g::text) FROM generate_series(3001, 3100) g")
	want := sql(t, b, bed.DC1A, checksumSQL)
	if !strings.HasPrefix(want, "3100:") {
		t.Fatalf("dr_check on dc1-a: %s", want)
	}
	for _, n := range []string{bed.DC1B, bed.DC2A, bed.DC2B} {
		eventually(t, 30*time.Second, "dr_check identical on "+n, func() (bool, string) {
			got, err := b.SQL(context.Background(), n, checksumSQL)
			return err == nil && got == want, fmt.Sprint(got, err)
		})
	}
	for _, n := range []string{bed.DC1A, bed.DC1B} {
		hba, err := os.ReadFile(b.HBAFile(n))
		if err != nil {
			t.Fatal(err)
		}
		if c := cluster.CountBlocks(string(hba), b.Name); c != 1 {
			t.Errorf("%s pg_hba.conf has %d sdr blocks, want 1", n, c)
		}
	}
	if got := sql(t, b, bed.DC1A, "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'sdr%'"); got != "1" {
		t.Errorf("dc1-a has %s sdr slots, want exactly 1", got)
	}
	if got := sql(t, b, bed.DC1A, "SELECT setting FROM pg_settings WHERE name = 'wal_keep_size'"); got != "256" {
		t.Errorf("dc1-a wal_keep_size = %s MB, want the original 256", got)
	}
	if got := sql(t, b, bed.DC1A, "SELECT count(*) FROM pg_stat_replication WHERE application_name = '"+mainApp(b)+"' AND state = 'streaming'"); got != "1" {
		t.Errorf("dc1-a: %s streaming walsenders for dc2-a, want 1", got)
	}
	for _, n := range []string{bed.DC2A, bed.DC2B} {
		if _, err := os.Stat(b.Node(n).DataDir + ".sdr/old"); !os.IsNotExist(err) {
			t.Errorf("%s: old data directory not removed by 9_finish (%v)", n, err)
		}
		trashEmptied(t, b.Node(n).DataDir+".sdr/trash")
	}
}

// trashEmptied waits until the node's background delete has emptied trash
// (9_finish moves the old trees there and does not wait for the disk).
func trashEmptied(t *testing.T, trash string) {
	t.Helper()
	eventually(t, 60*time.Second, "trash "+trash+" emptied in the background", func() (bool, string) {
		ents, err := os.ReadDir(trash)
		if os.IsNotExist(err) {
			return true, ""
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		return err == nil && len(ents) == 0, fmt.Sprint(names, err)
	})
}
