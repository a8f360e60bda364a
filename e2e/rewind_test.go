package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/e2e/bed"
)

// divergeDC1 makes dc1-a write past what the DR side received: the DR main
// standby's walreceiver is frozen, dc1-a's walsender to it is ended (so
// nothing sits in a socket buffer to be read later), rows are written on
// dc1-a, and data centre 1 is killed; then the walreceiver runs again. It
// returns dc1-a's insert position after the rows.
func divergeDC1(t *testing.T, b *bed.Bed, ids []int) cluster.LSN {
	t.Helper()
	ctx := context.Background()
	pid, err := strconv.Atoi(sql(t, b, bed.DC2A, "SELECT pid FROM pg_stat_wal_receiver"))
	if err != nil {
		t.Fatalf("dc2-a's walreceiver: %v", err)
	}
	signalAll([]int{pid}, syscall.SIGSTOP)
	defer signalAll([]int{pid}, syscall.SIGCONT)
	app := cluster.AppName(b.Name, bed.DC2A)
	sql(t, b, bed.DC1A, fmt.Sprintf("SELECT pg_terminate_backend(pid) FROM pg_stat_replication WHERE application_name = '%s'", app))
	eventually(t, 20*time.Second, "dc1-a no longer sends to dc2-a", func() (bool, string) {
		got, err := b.SQL(ctx, bed.DC1A, fmt.Sprintf("SELECT count(*) FROM pg_stat_replication WHERE application_name = '%s'", app))
		return err == nil && got == "0", fmt.Sprint(got, err)
	})
	for _, id := range ids {
		sql(t, b, bed.DC1A, fmt.Sprintf("INSERT INTO dr_check VALUES (%d, 'after the fork')", id))
	}
	lsn, err := cluster.ParseLSN(sql(t, b, bed.DC1A, "SELECT pg_current_wal_insert_lsn()"))
	if err != nil {
		t.Fatal(err)
	}
	killDC1(t, b)
	return lsn
}

// reprotectBed is a bed after a failover in which dc1-a, running with
// wal_log_hints, wrote past what the DR side received; data centre 1 is
// back (its PostgreSQL down), and newCfg says primary: dc2.
type reprotectBed struct {
	b            *bed.Bed
	newCfg       string
	lastLSN      cluster.LSN // dc1-a's insert position after the rows the DR side never got
	pSide, sSide side        // the sides after the roles moved
}

func newReprotectBed(t *testing.T) reprotectBed {
	t.Helper()
	b := startedBed(t, bed.Options{WalLogHints: true}, 1)
	ctx := context.Background()
	if got := sql(t, b, bed.DC1A, "SHOW wal_log_hints"); got != "on" {
		t.Fatalf("dc1-a runs with wal_log_hints %s", got)
	}
	lost := []int{800001, 800002, 800003}
	lastLSN := divergeDC1(t, b, lost)
	if r := failover(t, sdrBin, nil, b, b.ConfigPath, "--accept-data-loss"); r.Code != 0 {
		t.Fatalf("failover: %s", r)
	}
	if got := sql(t, b, bed.DC2A, "SELECT count(*) FROM dr_check WHERE id >= 800001"); got != "0" {
		t.Fatalf("the rows written after the fork reached dc2-a (%s): the test did not make dc1-a diverge", got)
	}
	sql(t, b, bed.DC2A, "INSERT INTO dr_check VALUES (900001, 'after failover')")

	if err := b.StartSSHD(ctx, bed.ClusterDC1); err != nil {
		t.Fatal(err)
	}
	newCfg, err := b.WriteConfig(func(m *map[string]any) { (*m)["primary"] = bed.ClusterDC2 })
	if err != nil {
		t.Fatal(err)
	}
	return reprotectBed{b: b, newCfg: newCfg, lastLSN: lastLSN,
		pSide: side{"primary", b.StateFileStandby, b.LogFileStandby}, sSide: side{"standby", b.StateFilePrimary, b.LogFilePrimary}}
}

// checkReprotected checks that dc1-a streams from dc2-a on timeline 2 and
// that dc1-a and dc1-b hold exactly dc2-a's rows, none written after the fork.
func checkReprotected(t *testing.T, b *bed.Bed) {
	t.Helper()
	ctx := context.Background()
	eventually(t, 30*time.Second, "dc1-a streams from dc2-a on timeline 2", func() (bool, string) {
		got, err := b.SQL(ctx, bed.DC1A, "SELECT status || ' ' || received_tli || ' ' || sender_port FROM pg_stat_wal_receiver")
		return err == nil && got == fmt.Sprintf("streaming 2 %d", b.Node(bed.DC2A).Port), fmt.Sprint(got, err)
	})
	sql(t, b, bed.DC2A, "INSERT INTO dr_check VALUES (900002, 're-protected')")
	want := sql(t, b, bed.DC2A, checksumSQL)
	for _, n := range []string{bed.DC1A, bed.DC1B} {
		eventually(t, 30*time.Second, n+" has exactly dc2-a's rows", func() (bool, string) {
			got, err := b.SQL(ctx, n, checksumSQL)
			return err == nil && got == want, fmt.Sprintf("%s, want %s (%v)", got, want, err)
		})
	}
	if got := sql(t, b, bed.DC1A, "SELECT count(*) FROM dr_check WHERE id >= 800001 AND id < 900000"); got != "0" {
		t.Errorf("dc1-a still has %s rows written after the fork", got)
	}
}

// keptWAL returns the kept directory that holds the former primary's WAL
// (KEPT.txt), after checking what it holds.
func keptWAL(t *testing.T, b *bed.Bed, lastLSN cluster.LSN) string {
	t.Helper()
	notes, _ := filepath.Glob(b.Node(bed.DC1A).DataDir + ".sdr/diverged-*/KEPT.txt")
	if len(notes) != 1 {
		t.Fatalf("kept WAL directories %v, want one", notes)
	}
	kept := filepath.Dir(notes[0])
	for _, f := range []string{"pg_wal/" + walFile(1, lastLSN), "global/pg_control", "postgresql.conf"} {
		if _, err := os.Stat(filepath.Join(kept, f)); err != nil {
			t.Errorf("%s is not kept: %v", f, err)
		}
	}
	out, err := b.AsPostgres(context.Background(), filepath.Join(bed.BinDir, "pg_controldata"), "-D", kept)
	if err != nil || !strings.Contains(out, "Latest checkpoint's TimeLineID:       1") {
		t.Errorf("the kept pg_control is not the former primary's on timeline 1: %v\n%s", err, out)
	}
	return kept
}

// TestReprotectRewind: with wal_log_hints on, the old primary wrote past
// what the DR side received, data centre 1 died, the DR side failed over,
// and data centre 1 came back. Re-protecting it rewinds dc1-a in place
// (no pg_basebackup from the new primary), keeps the WAL it wrote after the
// fork, and resumes after kills during the rewind path.
func TestReprotectRewind(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	rb := newReprotectBed(t)
	b, newCfg, pSide, sSide := rb.b, rb.newCfg, rb.pSide, rb.sSide
	dc1a := b.Node(bed.DC1A)
	oldIno := inode(t, dc1a.DataDir)
	backups := baseBackups(t, b, bed.DC2A)

	// The primary side waits for the main standby while the standby side
	// is killed twice in the rewind path and resumed.
	done := make(chan result)
	go func() { done <- startWith(t, sdrBin, nil, newCfg, pSide, "--timeout", "4m") }()
	for _, point := range []string{"kept@" + bed.DC1A, "rewound@" + bed.DC1A} {
		r := startWith(t, sdrBinFP, []string{"SDR_FAILPOINT=7_build_standby:" + point + ":kill"}, newCfg, sSide, "--timeout", "3m")
		if r.Code != -1 {
			t.Fatalf("standby side with a kill at %s: want the run killed, got %s", point, r)
		}
	}
	s := startWith(t, sdrBin, nil, newCfg, sSide, "--timeout", "3m")
	p := <-done
	if p.Code != 0 || s.Code != 0 {
		t.Fatalf("re-protect failed:\nprimary (dc2): %s\nstandby (dc1): %s", p, s)
	}

	t.Run("dc1-a was rewound in place, not copied", func(t *testing.T) {
		if got := baseBackups(t, b, bed.DC2A); got != backups {
			t.Errorf("dc2-a served %d pg_basebackups during the re-protect, want none", got-backups)
		}
		if got := inode(t, dc1a.DataDir); got != oldIno {
			t.Errorf("dc1-a's data directory was replaced (inode %d, was %d)", got, oldIno)
		}
		log, _ := os.ReadFile(b.LogFilePrimary)
		if !strings.Contains(string(log), "pg_rewind finished") {
			t.Errorf("the standby side's log does not say pg_rewind finished")
		}
		if _, err := os.Stat(filepath.Join(dc1a.DataDir+".sdr", "rewind")); !os.IsNotExist(err) {
			t.Errorf("the directory of the forwarded socket is left: %v", err)
		}
	})

	t.Run("the WAL written after the fork is kept", func(t *testing.T) {
		if all, _ := filepath.Glob(dc1a.DataDir + ".sdr/diverged-*"); len(all) != 1 {
			t.Errorf("kept directories %v, want one", all)
		}
		kept := keptWAL(t, b, rb.lastLSN)
		if !strings.Contains(s.Stderr, kept) {
			t.Errorf("the standby side should print where the former primary's WAL is kept (%s)", kept)
		}
	})

	t.Run("dc1-a streams from dc2-a with dc2-a's rows only", func(t *testing.T) { checkReprotected(t, b) })
}

// TestReprotectRewindCutShort: sdr is killed once pg_rewind may have
// started changing the former primary. The rerun does not run pg_rewind
// again: it copies dc1-a from the new primary and keeps the directory the
// cut-short rewind left, whole, beside the WAL kept before it.
func TestReprotectRewindCutShort(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	rb := newReprotectBed(t)
	b := rb.b
	dc1a := b.Node(bed.DC1A)
	oldIno := inode(t, dc1a.DataDir)
	backups := baseBackups(t, b, bed.DC2A)
	done := make(chan result)
	go func() { done <- startWith(t, sdrBin, nil, rb.newCfg, rb.pSide, "--timeout", "4m") }()
	r := startWith(t, sdrBinFP, []string{"SDR_FAILPOINT=7_build_standby:rewinding@" + bed.DC1A + ":kill"}, rb.newCfg, rb.sSide, "--timeout", "3m")
	if r.Code != -1 {
		t.Fatalf("standby side with a kill at rewinding: want the run killed, got %s", r)
	}
	s := startWith(t, sdrBin, nil, rb.newCfg, rb.sSide, "--timeout", "3m")
	p := <-done
	if p.Code != 0 || s.Code != 0 {
		t.Fatalf("re-protect failed:\nprimary (dc2): %s\nstandby (dc1): %s", p, s)
	}
	if !strings.Contains(s.Stderr, "did not finish") {
		t.Errorf("the rerun should say that the earlier pg_rewind did not finish and that it copies instead:\n%s", s.Stderr)
	}
	if got := baseBackups(t, b, bed.DC2A); got != backups+1 {
		t.Errorf("dc2-a served %d pg_basebackups during the re-protect, want 1 (the copy of dc1-a)", got-backups)
	}
	kept := keptWAL(t, b, rb.lastLSN)
	all, _ := filepath.Glob(dc1a.DataDir + ".sdr/diverged-*")
	var whole string
	for _, d := range all {
		if d != kept {
			whole = d
		}
	}
	if len(all) != 2 || whole == "" || inode(t, whole) != oldIno {
		t.Fatalf("kept directories %v: want the WAL kept before the rewind and the whole former data directory (inode %d)", all, oldIno)
	}
	if !strings.Contains(s.Stderr, whole) {
		t.Errorf("the rerun should print where the whole directory is kept (%s)", whole)
	}
	checkReprotected(t, b)
}

// walFile is the name of the WAL segment (16 MiB) of timeline tli that holds lsn.
func walFile(tli int, lsn cluster.LSN) string {
	seg := uint64(lsn) / (16 << 20)
	return fmt.Sprintf("%08X%08X%08X", tli, seg/256, seg%256)
}
