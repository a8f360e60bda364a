package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/e2e/bed"
)

// failover runs `sdr failover` on the DR side with config.
func failover(t *testing.T, bin string, env []string, b *bed.Bed, config string, extra ...string) result {
	t.Helper()
	sd := standbySide(b)
	args := append([]string{"--config", config, "--state", sd.state, "--log-file", sd.log, "failover", "--timeout", "2m"}, extra...)
	return sdr(t, bin, env, args...)
}

// killDC1 takes data centre 1 down as a disaster would: its PostgreSQL
// servers die at once and its sshd goes away. It returns once the killed
// processes are gone (reaped: a dead postmaster left as a zombie still
// answers pg_ctl status).
func killDC1(t *testing.T, b *bed.Bed) {
	t.Helper()
	var killed []int
	for _, n := range []string{bed.DC1A, bed.DC1B} {
		if _, err := os.Stat(filepath.Join(b.Node(n).DataDir, "postmaster.pid")); err == nil {
			pids := postgresPIDs(t, b.Node(n).DataDir)
			signalAll(pids, syscall.SIGKILL)
			killed = append(killed, pids...)
		}
	}
	if err := b.StopSSHD(bed.ClusterDC1); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the killed PostgreSQL processes of data centre 1 are gone", func() (bool, string) {
		for _, p := range killed {
			if err := syscall.Kill(p, 0); err == nil {
				return false, fmt.Sprintf("pid %d still there", p)
			}
		}
		return true, ""
	})
}

// timelineOf reads a running node's current timeline.
func timelineOf(t *testing.T, b *bed.Bed, node string) string {
	t.Helper()
	return sql(t, b, node, "SELECT CASE WHEN pg_is_in_recovery() THEN (SELECT received_tli::text FROM pg_stat_wal_receiver) "+
		"ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int::text END")
}

// historyFiles lists the timeline history files in a data directory.
func historyFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "pg_wal", "*.history"))
	for i := range m {
		m[i] = filepath.Base(m[i])
	}
	return m
}

// TestFailover: the DR pair, a refused failover while the primary runs,
// the primary data centre lost under write load, a refused failover
// without --accept-data-loss, the failover, what it left, a refused
// standby start with the old config, and re-protecting the old primary
// cluster as the DR side of the new primary.
func TestFailover(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := startedBed(t, bed.Options{}, 1)
	ctx := context.Background()
	prepareWriter(t, b, bed.DC1A)

	t.Run("refused while the old primary runs", func(t *testing.T) {
		r := failover(t, sdrBin, nil, b, b.ConfigPath, "--accept-data-loss")
		if r.Code != 2 || !strings.Contains(r.Stderr, "answers as a primary") {
			t.Fatalf("want a refusal (exit 2) naming the running primary: %s", r)
		}
		if got := sql(t, b, bed.DC2A, "SELECT pg_is_in_recovery()"); got != "t" {
			t.Fatalf("dc2-a left recovery")
		}
		if got := status(t, "", standbySide(b)).state("standby"); got != "recovery" {
			t.Errorf("standby state %q after a refused failover, want recovery", got)
		}
	})

	w := startWriter(t, b, bed.DC1A, 1)
	eventually(t, 30*time.Second, "writes acknowledged", func() (bool, string) { return w.Count() > 300, fmt.Sprint(w.Count()) })
	killDC1(t, b)
	acks := w.Stop()
	t.Logf("%d commits acknowledged before data centre 1 died", len(acks))

	t.Run("refused without --accept-data-loss", func(t *testing.T) {
		r := failover(t, sdrBin, nil, b, b.ConfigPath)
		if r.Code != 2 || !strings.Contains(r.Stderr, "--accept-data-loss") || !strings.Contains(r.Stderr, "replayed up to") {
			t.Fatalf("want a refusal (exit 2) with the flag and the data-loss window: %s", r)
		}
		if got := sql(t, b, bed.DC2A, "SELECT pg_is_in_recovery()"); got != "t" {
			t.Fatalf("dc2-a left recovery")
		}
	})

	var replayed cluster.LSN
	t.Run("fails over", func(t *testing.T) {
		// The cascade is down as well: the failover does not wait for it
		// (it says so), and it follows the new primary once started.
		if err := b.StopNode(ctx, bed.DC2B); err != nil {
			t.Fatal(err)
		}
		r := failover(t, sdrBin, nil, b, b.ConfigPath, "--accept-data-loss")
		if r.Code != 0 {
			t.Fatalf("failover with the cascade down: %s", r)
		}
		if !strings.Contains(r.Stdout, "primary: "+bed.ClusterDC2) {
			t.Errorf("failover should say which field to change:\n%s", r.Stdout)
		}
		if !strings.Contains(r.Stderr, "cascade dc2-b does not run: not waited for") {
			t.Errorf("failover should say the cascade was not waited for:\n%s", r.Stderr)
		}
		if got := sql(t, b, bed.DC2A, "SELECT pg_is_in_recovery()"); got != "f" {
			t.Fatalf("dc2-a still in recovery after the failover")
		}
		if got := timelineOf(t, b, bed.DC2A); got != "2" {
			t.Errorf("dc2-a on timeline %s, want 2", got)
		}
		if err := b.StartNode(ctx, bed.DC2B); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "dc2-b follows dc2-a onto timeline 2", func() (bool, string) {
			got, err := b.SQL(ctx, bed.DC2B, "SELECT status || ' ' || received_tli || ' ' || sender_port FROM pg_stat_wal_receiver")
			return err == nil && got == fmt.Sprintf("streaming 2 %d", b.Node(bed.DC2A).Port), fmt.Sprint(got, err)
		})
		sql(t, b, bed.DC2A, "INSERT INTO dr_check VALUES (900001, 'after failover')")
		eventually(t, 30*time.Second, "the new primary's write reaches the cascade", func() (bool, string) {
			got, err := b.SQL(ctx, bed.DC2B, "SELECT count(*) FROM dr_check WHERE id = 900001")
			return err == nil && got == "1", fmt.Sprint(got, err)
		})
		d := status(t, "", standbySide(b))
		if got := d.state("standby"); got != "normal" {
			t.Errorf("DR side state %q after the failover, want normal", got)
		}
		var err error
		replayed, err = cluster.ParseLSN(promotionValue(t, b, "replayed_lsn"))
		if err != nil {
			t.Fatalf("recorded replayed LSN: %v", err)
		}
	})

	t.Run("no acknowledged row up to the reported replay position is lost", func(t *testing.T) {
		present := presentIDs(t, b, bed.DC2A)
		lost := 0
		for _, a := range acks {
			if present[a.ID] {
				continue
			}
			lost++
			if a.LSN <= replayed {
				t.Errorf("row %d was acknowledged (its commit ended by %s) before the reported replay position %s, and is missing", a.ID, a.LSN, replayed)
			}
		}
		t.Logf("%d of %d acknowledged rows lost, all past the reported replay position %s", lost, len(acks), replayed)
	})

	t.Run("rerun does not promote again", func(t *testing.T) {
		r := failover(t, sdrBin, nil, b, b.ConfigPath, "--accept-data-loss")
		if r.Code != 0 || !strings.Contains(r.Stdout, "already complete") {
			t.Fatalf("rerun of a finished failover: %s", r)
		}
		if got := historyFiles(t, b.Node(bed.DC2A).DataDir); len(got) != 1 || got[0] != "00000002.history" {
			t.Errorf("timeline history files %v, want exactly one promotion", got)
		}
	})

	t.Run("the old config is refused on the promoted side", func(t *testing.T) {
		r := start(t, b, standbySide(b), "--timeout", "30s", "--restart")
		if r.Code != 2 || !strings.Contains(r.Stderr, "primary: "+bed.ClusterDC2) {
			t.Fatalf("start --role standby with primary: dc1 on the promoted cluster: want exit 2 naming the field: %s", r)
		}
		if got := sql(t, b, bed.DC2A, "SELECT pg_is_in_recovery()"); got != "f" {
			t.Fatalf("dc2-a touched by a refused start")
		}
	})

	t.Run("the old primary side's state file is stale", func(t *testing.T) {
		d := status(t, b.ConfigPath, primarySide(b))
		if d.state("primary") != "archive" {
			t.Fatalf("the old primary side's recorded state is %q", d.state("primary"))
		}
		r := sdr(t, sdrBin, nil, "--config", b.ConfigPath, "--state", b.StateFilePrimary, "status")
		if !strings.Contains(r.Stdout, "NOTE: stale") || !strings.Contains(r.Stdout, "timeline 2") {
			t.Errorf("status of the old primary side should say it is stale:\n%s", r.Stdout)
		}
	})

	t.Run("re-protect: the old primary cluster becomes the DR side", func(t *testing.T) {
		if err := b.StartSSHD(ctx, bed.ClusterDC1); err != nil {
			t.Fatal(err)
		}
		newCfg, err := b.WriteConfig(func(m *map[string]any) { (*m)["primary"] = bed.ClusterDC2 })
		if err != nil {
			t.Fatal(err)
		}
		oldIno := inode(t, b.Node(bed.DC1A).DataDir)
		// The sides swap: dc2's state file now runs the primary role, dc1's the standby role.
		pSide := side{"primary", b.StateFileStandby, b.LogFileStandby}
		sSide := side{"standby", b.StateFilePrimary, b.LogFilePrimary}
		p, s := startPair(t, newCfg, pSide, sSide, "--timeout", "3m")
		if p.Code != 0 || s.Code != 0 {
			t.Fatalf("re-protect failed:\nprimary (dc2): %s\nstandby (dc1): %s", p, s)
		}
		kept, _ := filepath.Glob(b.Node(bed.DC1A).DataDir + ".sdr/diverged-*")
		if len(kept) != 1 || inode(t, kept[0]) != oldIno {
			t.Fatalf("the old primary's diverged data directory is not kept aside (found %v)", kept)
		}
		if !strings.Contains(s.Stderr, kept[0]) {
			t.Errorf("the standby side should print where the diverged directory is kept (%s)", kept[0])
		}
		if !strings.Contains(s.Stderr, "not rewound but copied again") || !strings.Contains(s.Stderr, "wal_log_hints off and no data checksums") {
			t.Errorf("the standby side should say why the former primary is copied, not rewound:\n%s", s.Stderr)
		}
		eventually(t, 30*time.Second, "dc1-a streams from dc2-a", func() (bool, string) {
			got, err := b.SQL(ctx, bed.DC1A, "SELECT status || ' ' || sender_port FROM pg_stat_wal_receiver")
			return err == nil && got == fmt.Sprintf("streaming %d", b.Node(bed.DC2A).Port), fmt.Sprint(got, err)
		})
		sql(t, b, bed.DC2A, "INSERT INTO dr_check VALUES (900002, 're-protected')")
		for _, n := range []string{bed.DC1A, bed.DC1B} {
			eventually(t, 30*time.Second, n+" has the new primary's writes", func() (bool, string) {
				got, err := b.SQL(ctx, n, "SELECT count(*) FROM dr_check WHERE id IN (900001, 900002)")
				return err == nil && got == "2", fmt.Sprint(got, err)
			})
		}
	})
}

// startPair runs the two sides with config at the same time.
func startPair(t *testing.T, config string, p, s side, extra ...string) (pr, sr result) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); pr = startWith(t, sdrBin, nil, config, p, extra...) }()
	sr = startWith(t, sdrBin, nil, config, s, extra...)
	<-done
	return pr, sr
}

// promotionValue reads a field of the recorded promotion's data-loss window
// from the DR side's status document.
func promotionValue(t *testing.T, b *bed.Bed, field string) string {
	t.Helper()
	r := sdr(t, sdrBin, nil, "--state", b.StateFileStandby, "status", "--json", "--history", "1")
	if r.Code != 0 {
		t.Fatalf("status: %s", r)
	}
	i := strings.Index(r.Stdout, `"failover.promotion"`)
	if i < 0 {
		t.Fatalf("no promotion recorded:\n%s", r.Stdout)
	}
	rest := r.Stdout[i:]
	key := `\"` + field + `\":\"`
	j := strings.Index(rest, key)
	if j < 0 {
		t.Fatalf("the promotion record has no %s: %s", field, rest[:min(len(rest), 400)])
	}
	rest = rest[j+len(key):]
	return rest[:strings.Index(rest, `\"`)]
}

// TestFailoverFencesPartitioned: the old primary's PostgreSQL does not
// answer (frozen), but its SSH does: the failover fences it, and after the
// failover it can only start as a standby.
func TestFailoverFencesPartitioned(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := startedBed(t, bed.Options{}, 1)
	ctx := context.Background()
	var frozen []int
	for _, n := range []string{bed.DC1A, bed.DC1B} {
		pids := postgresPIDs(t, b.Node(n).DataDir)
		signalAll(pids, syscall.SIGSTOP)
		frozen = append(frozen, pids...)
	}
	defer signalAll(frozen, syscall.SIGCONT)
	r := failover(t, sdrBin, nil, b, b.ConfigPath, "--accept-data-loss")
	if r.Code != 0 {
		t.Fatalf("failover: %s", r)
	}
	signalAll(frozen, syscall.SIGCONT)
	dc1a := b.Node(bed.DC1A)
	if _, err := os.Stat(filepath.Join(dc1a.DataDir, "sdr_fenced")); err != nil {
		t.Fatalf("dc1-a carries no fence marker: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dc1a.DataDir, "standby.signal")); err != nil {
		t.Fatalf("dc1-a has no standby.signal: %v", err)
	}
	// The fence killed the postmasters; their children end once they run
	// again and see it gone. Until then they hold the shared memory and a
	// new server in the data directory refuses to start.
	eventually(t, 30*time.Second, "every process of the frozen servers has ended", func() (bool, string) {
		live := livePIDs(frozen)
		return len(live) == 0, fmt.Sprint("still running: ", live)
	})
	for _, n := range []string{bed.DC1A, bed.DC1B} {
		eventually(t, 20*time.Second, n+" is down", func() (bool, string) {
			_, err := os.Stat(filepath.Join(b.Node(n).DataDir, "postmaster.pid"))
			if err == nil {
				if _, err := b.SQL(ctx, n, "SELECT 1"); err != nil {
					return true, "" // a stale pid file of a killed server
				}
			}
			return os.IsNotExist(err), fmt.Sprint(err)
		})
	}
	// Whatever starts it now starts a standby, which takes no writes.
	if err := b.PGCtl(ctx, bed.DC1A, "start"); err != nil {
		t.Fatal(err)
	}
	if got := sql(t, b, bed.DC1A, "SELECT pg_is_in_recovery()"); got != "t" {
		t.Fatalf("the fenced old primary started as a primary")
	}
	if _, err := b.SQL(ctx, bed.DC1A, "CREATE TABLE must_fail (i int)"); err == nil {
		t.Fatalf("the fenced old primary took a write")
	}
}

// TestFailoverKillAtEveryStep kills the failover at every step and point,
// and reruns: it converges with exactly one promotion.
func TestFailoverKillAtEveryStep(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := startedBed(t, bed.Options{}, 1)
	killDC1(t, b)
	points := []string{
		"2_check_cluster:after-effects", "3_fence:before", "3_fence:after-effects",
		"4_promote:before", "4_promote:before-pg_promote", "4_promote:after-pg_promote", "4_promote:after-effects",
		"5_follow:before", "5_follow:after-effects", "6_finish:before", "6_finish:after-effects",
	}
	for _, p := range points {
		r := failover(t, sdrBinFP, []string{"SDR_FAILPOINT=" + p + ":kill"}, b, b.ConfigPath, "--accept-data-loss")
		if r.Code != -1 {
			t.Fatalf("%s: want the run killed, got %s", p, r)
		}
	}
	r := failover(t, sdrBin, nil, b, b.ConfigPath, "--accept-data-loss")
	if r.Code != 0 {
		t.Fatalf("rerun after the kills: %s", r)
	}
	if got := historyFiles(t, b.Node(bed.DC2A).DataDir); len(got) != 1 || got[0] != "00000002.history" {
		t.Errorf("timeline history files %v, want exactly one promotion", got)
	}
	if got := timelineOf(t, b, bed.DC2A); got != "2" {
		t.Errorf("dc2-a on timeline %s, want 2", got)
	}
	if got := sql(t, b, bed.DC2B, "SELECT pg_is_in_recovery()"); got != "t" {
		t.Errorf("dc2-b was promoted too")
	}
	if got := status(t, "", standbySide(b)).state("standby"); got != "normal" {
		t.Errorf("DR side state %q, want normal", got)
	}
}

// TestReprotectAfterSwitchoverAndFailover: the DR copy that sdr built and
// sdr's switchover promoted is left behind by a failover back; the
// re-protect takes it as the former primary it is (its own timeline
// history shows the primary's lineage), without --replace-diverged, and
// keeps it aside.
func TestReprotectAfterSwitchoverAndFailover(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := newSwitchBed(t)
	ctx := context.Background()
	dc1 := sidesFor(t, b, bed.ClusterDC1)
	if d, p := bothHalves(t, dc1)(); d.Code != 0 || p.Code != 0 {
		t.Fatalf("switchover to dc2:\ndemote: %s\npromote: %s", d, p)
	}
	dc2 := sidesFor(t, b, bed.ClusterDC2)
	// With primary: not changed, the DR start on dc2 is refused at once,
	// naming the field, instead of waiting for a primary in dc1.
	if r := start(t, b, dc1.standby, "--timeout", "2m"); r.Code != 2 || !strings.Contains(r.Stderr, "set primary: dc2") || r.Took > time.Minute {
		t.Fatalf("start --role standby with primary: dc1 after the switchover: want a refusal naming primary: at once: %s", r)
	}
	sql(t, b, bed.DC2A, "CREATE TABLE after_switchover AS SELECT g FROM generate_series(1, 321) g")
	eventually(t, 30*time.Second, "dc1-a replays the table", func() (bool, string) {
		got, err := b.SQL(ctx, bed.DC1A, "SELECT count(*) FROM after_switchover")
		return err == nil && got == "321", fmt.Sprint(got, err)
	})
	// Data centre 2, the primary now, dies.
	for _, n := range []string{bed.DC2B, bed.DC2A} {
		if err := b.PGCtl(ctx, n, "stop", "-m", "immediate"); err != nil {
			t.Fatal(err)
		}
	}
	r := sdr(t, sdrBin, nil, "--config", dc2.config, "--state", dc2.standby.state, "--log-file", dc2.standby.log, "failover", "--timeout", "2m", "--accept-data-loss")
	if r.Code != 0 {
		t.Fatalf("failover to dc1: %s", r)
	}
	if got := sql(t, b, bed.DC1A, "SELECT pg_is_in_recovery()"); got != "f" {
		t.Fatalf("dc1-a still in recovery after the failover")
	}
	// Re-protect with primary: dc1 again: dc2-a is a former primary.
	p, s := startPair(t, dc1.config, dc1.primary, dc1.standby, "--timeout", "3m")
	if p.Code != 0 || s.Code != 0 {
		t.Fatalf("re-protect without --replace-diverged:\nprimary: %s\nstandby: %s", p, s)
	}
	if !strings.Contains(s.Stderr+s.Stdout, "was the primary on timeline 2") {
		t.Errorf("the re-protect should say dc2-a was the primary on timeline 2:\n%s", s)
	}
	kept, _ := filepath.Glob(b.Node(bed.DC2A).DataDir + ".sdr/diverged-*")
	if len(kept) != 1 {
		t.Errorf("want dc2-a's former data directory kept aside once, got %v", kept)
	}
	eventually(t, 30*time.Second, "dc2-a replays the table as a standby again", func() (bool, string) {
		got, err := b.SQL(ctx, bed.DC2A, "SELECT pg_is_in_recovery() || ' ' || (SELECT count(*) FROM after_switchover)")
		return err == nil && got == "true 321", fmt.Sprint(got, err)
	})
}

// TestFailoverAfterAnUnfinishedRebuild: the primary's data centre dies
// while the DR side is being rebuilt, after 5_stop_cluster stopped the DR
// nodes. The failover says the main standby is stopped and how to start
// it; started again (its data directory still holds the previous copy),
// it is failed over to.
func TestFailoverAfterAnUnfinishedRebuild(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := startedBed(t, bed.Options{}, 1)
	ctx := context.Background()
	sql(t, b, bed.DC1A, "CREATE TABLE before_rebuild AS SELECT g FROM generate_series(1, 444) g")
	eventually(t, 30*time.Second, "dc2-a replays the table", func() (bool, string) {
		got, err := b.SQL(ctx, bed.DC2A, "SELECT count(*) FROM before_rebuild")
		return err == nil && got == "444", fmt.Sprint(got, err)
	})
	r := startWith(t, sdrBinFP, []string{"SDR_FAILPOINT=7_build_standby:saved@dc2-a:kill"}, b.ConfigPath, standbySide(b), "--restart", "--timeout", "2m")
	if r.Code != -1 {
		t.Fatalf("want the rebuild killed after the DR nodes were stopped: %s", r)
	}
	killDC1(t, b)
	r = failover(t, sdrBin, nil, b, b.ConfigPath, "--accept-data-loss")
	if r.Code != 2 || !strings.Contains(r.Stderr, "PostgreSQL does not run on the main standby dc2-a") || !strings.Contains(r.Stderr, "start it with") {
		t.Fatalf("want a refusal (exit 2) saying dc2-a is stopped and how to start it: %s", r)
	}
	for _, n := range []string{bed.DC2A, bed.DC2B} {
		if err := b.StartNode(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if r := failover(t, sdrBin, nil, b, b.ConfigPath, "--accept-data-loss"); r.Code != 0 {
		t.Fatalf("failover once dc2-a runs again: %s", r)
	}
	if got := sql(t, b, bed.DC2A, "SELECT pg_is_in_recovery() || ' ' || (SELECT count(*) FROM before_rebuild)"); got != "false 444" {
		t.Errorf("dc2-a after the failover: %s, want the primary with the 444 rows", got)
	}
}

// TestPromotionRechecksTheOldPrimaryOnResume: a failover, and a switchover's
// promote half, that stopped before promoting resume at the promotion; the
// old primary came back as a primary in between (its data centre returned;
// the demote half was aborted). The rerun checks it again and promotes
// nothing: never two writable primaries.
func TestPromotionRechecksTheOldPrimaryOnResume(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	ctx := context.Background()
	inRecovery := func(t *testing.T, b *bed.Bed, n string) {
		t.Helper()
		if got := sql(t, b, n, "SELECT pg_is_in_recovery()"); got != "t" {
			t.Fatalf("%s left recovery: two primaries", n)
		}
	}
	t.Run("failover", func(t *testing.T) {
		b := startedBed(t, bed.Options{}, 1)
		killDC1(t, b)
		r := failover(t, sdrBinFP, []string{"SDR_FAILPOINT=4_promote:before"}, b, b.ConfigPath, "--accept-data-loss")
		if r.Code != 1 {
			t.Fatalf("want the failover stopped before the promotion: %s", r)
		}
		// Data centre 1 comes back, its primary unfenced (its sshd was down
		// during the fence).
		if err := b.StartSSHD(ctx, bed.ClusterDC1); err != nil {
			t.Fatal(err)
		}
		if err := b.PGCtl(ctx, bed.DC1A, "start"); err != nil {
			t.Fatal(err)
		}
		r = failover(t, sdrBin, nil, b, b.ConfigPath, "--accept-data-loss")
		if r.Code != 1 || !strings.Contains(r.Stderr, "answers as a primary again (dc1-a)") || !strings.Contains(r.Stderr, "nothing was promoted") {
			t.Fatalf("want the resumed failover refused with dc1-a running: %s", r)
		}
		inRecovery(t, b, bed.DC2A)
		// Down again: the rerun promotes.
		if err := b.PGCtl(ctx, bed.DC1A, "stop", "-m", "immediate"); err != nil {
			t.Fatal(err)
		}
		if r := failover(t, sdrBin, nil, b, b.ConfigPath, "--accept-data-loss"); r.Code != 0 {
			t.Fatalf("failover with dc1-a down again: %s", r)
		}
	})
	t.Run("switchover after an abort of the demote half", func(t *testing.T) {
		b := newSwitchBed(t)
		ps := sidesFor(t, b, bed.ClusterDC1)
		if d := switchHalf(t, sdrBin, nil, ps.config, ps.primary, "--timeout", "3s"); d.Code != 1 {
			t.Fatalf("want the demote half to stop waiting in 4_rejoin: %s", d)
		}
		if p := switchHalf(t, sdrBinFP, []string{"SDR_FAILPOINT=3_wait_primary:after-checkpoint"}, ps.config, ps.standby); p.Code != 1 {
			t.Fatalf("want the promote half stopped after its wait: %s", p)
		}
		a := sdr(t, sdrBin, nil, "--config", ps.config, "--state", ps.primary.state, "switchover", "--role", "primary", "--abort", "--timeout", "1m")
		if a.Code != 0 {
			t.Fatalf("abort of the demote half: %s", a)
		}
		if got := sql(t, b, bed.DC1A, "SELECT pg_is_in_recovery()"); got != "f" {
			t.Fatalf("dc1-a is not the primary again after the abort")
		}
		p := switchHalf(t, sdrBin, nil, ps.config, ps.standby)
		if p.Code != 1 || !strings.Contains(p.Stderr, "nothing was promoted") {
			t.Fatalf("want the resumed promote half refused: %s", p)
		}
		inRecovery(t, b, bed.DC2A)
	})
}
