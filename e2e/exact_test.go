package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgsdr/sdr/e2e/bed"
)

// What sdr changes on the primary and what it checks before it stops the
// DR side, tried the way an operator would.

// stepTimes is one step of `sdr status --json` with its times.
type stepTimes struct {
	Name    string     `json:"name"`
	Status  string     `json:"status"`
	Started *time.Time `json:"started"`
	Ended   *time.Time `json:"ended"`
	Error   *struct {
		Message string `json:"message"`
	} `json:"error"`
}

// workflowDoc is the part of `sdr status --json` these tests read.
type workflowDoc struct {
	Workflows []struct {
		Workflow string            `json:"workflow"`
		Complete bool              `json:"complete"`
		Steps    []stepTimes       `json:"steps"`
		Values   map[string]string `json:"values"`
	} `json:"workflows"`
}

func workflowStatus(t *testing.T, s side) workflowDoc {
	t.Helper()
	r := sdr(t, sdrBin, nil, "--state", s.state, "status", "--json", "--history", "0")
	if r.Code != 0 {
		t.Fatalf("sdr status: %s", r)
	}
	var d workflowDoc
	if err := json.Unmarshal([]byte(r.Stdout), &d); err != nil {
		t.Fatalf("sdr status --json is not JSON: %v\n%s", err, r.Stdout)
	}
	if len(d.Workflows) != 1 {
		t.Fatalf("status holds %d workflows, want 1:\n%s", len(d.Workflows), r.Stdout)
	}
	return d
}

func (d workflowDoc) step(name string) stepTimes {
	for _, s := range d.Workflows[0].Steps {
		if s.Name == name {
			return s
		}
	}
	return stepTimes{}
}

func mustStartBoth(t *testing.T, b *bed.Bed, extra ...string) {
	t.Helper()
	p, s := startBoth(t, b, append([]string{"--timeout", "3m"}, extra...)...)
	if p.Code != 0 || s.Code != 0 {
		t.Fatalf("starts %v failed:\nprimary: %s\nstandby: %s", extra, p, s)
	}
}

// restartPrimaryFirst runs start --restart on the primary side, and on the
// standby side once the primary side waits in 8_wait_standby, as the
// runbook asks: the primary side counts only a stream that begins after
// its pass began.
func restartPrimaryFirst(t *testing.T, b *bed.Bed) {
	t.Helper()
	var p result
	done := make(chan struct{})
	go func() { defer close(done); p = start(t, b, primarySide(b), "--restart", "--timeout", "3m") }()
	waitPrimaryInStep8(t, b, done)
	s := start(t, b, standbySide(b), "--restart", "--timeout", "3m")
	<-done
	if p.Code != 0 || s.Code != 0 {
		t.Fatalf("starts --restart failed:\nprimary: %s\nstandby: %s", p, s)
	}
}

// waitPrimaryInStep8 waits until the primary side's 8_wait_standby has
// started, or its run (done) ended.
func waitPrimaryInStep8(t *testing.T, b *bed.Bed, done <-chan struct{}) {
	t.Helper()
	eventually(t, time.Minute, "the primary's 8_wait_standby to start", func() (bool, string) {
		select {
		case <-done:
			return true, "the primary run ended"
		default:
		}
		st := workflowStatus(t, primarySide(b)).step("8_wait_standby")
		return st.Status == "started", st.Status
	})
}

// TestWalKeepSizeDBAChangeSurvivesRestart: after a completed start, a DBA
// sets wal_keep_size with ALTER SYSTEM. A later --restart of both sides
// must leave the DBA's value, whether it is below sdr's 1024 MB (raised
// while copying, then put back to the DBA's value) or above it (not
// touched).
func TestWalKeepSizeDBAChangeSurvivesRestart(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := newBed(t)
	mustStartBoth(t, b)
	if got := sql(t, b, bed.DC1A, "SELECT setting FROM pg_settings WHERE name = 'wal_keep_size'"); got != "256" {
		t.Fatalf("after the first start wal_keep_size = %s MB, want the bed's 256", got)
	}
	for _, tc := range []struct {
		name, set, want string
	}{
		{"DBA value below sdr's raise", "300MB", "300"},
		{"DBA value above sdr's raise", "2048MB", "2048"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sql(t, b, bed.DC1A, "ALTER SYSTEM SET wal_keep_size = '"+tc.set+"'")
			sql(t, b, bed.DC1A, "SELECT pg_reload_conf()")
			eventually(t, 10*time.Second, "the DBA's wal_keep_size in effect", func() (bool, string) {
				got := sql(t, b, bed.DC1A, "SELECT setting FROM pg_settings WHERE name = 'wal_keep_size'")
				return got == tc.want, got
			})
			restartPrimaryFirst(t, b)
			got := sql(t, b, bed.DC1A, "SELECT setting || ' ' || sourcefile FROM pg_settings WHERE name = 'wal_keep_size'")
			if !strings.HasPrefix(got, tc.want+" ") || !strings.HasSuffix(got, "postgresql.auto.conf") {
				t.Errorf("after start --restart wal_keep_size = %q, want the DBA's %s MB from postgresql.auto.conf", got, tc.want)
			}
			if v, ok := workflowStatus(t, primarySide(b)).Workflows[0].Values["primary.wal_keep_size.change"]; ok {
				t.Errorf("the record of sdr's change outlived 9_finish: %q", v)
			}
		})
	}
}

// TestSuperuserReplicationUserRefused: a replication.user that exists as a
// superuser is refused by both sides in step 2, before anything changes.
func TestSuperuserReplicationUserRefused(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := newBed(t)
	user := b.ReplicationUser
	sql(t, b, bed.DC1A, "CREATE ROLE "+user+" SUPERUSER LOGIN PASSWORD '"+strings.ReplaceAll(b.Password, "'", "''")+"'")
	hbaFile := filepath.Join(b.Node(bed.DC1A).DataDir, "pg_hba.conf")
	hbaBefore, err := os.ReadFile(hbaFile)
	if err != nil {
		t.Fatal(err)
	}
	var p, s result
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p = start(t, b, primarySide(b), "--timeout", "30s") }()
	go func() { defer wg.Done(); s = start(t, b, standbySide(b), "--timeout", "30s") }()
	wg.Wait()
	for _, side := range []struct {
		r result
		s side
	}{{p, primarySide(b)}, {s, standbySide(b)}} {
		if side.r.Code != 2 {
			t.Errorf("%s start exit code %d, want 2 (refused before any change): %s", side.s.role, side.r.Code, side.r)
		}
		st := workflowStatus(t, side.s).step("2_check_cluster")
		if st.Status != "failed" || st.Error == nil || !strings.Contains(st.Error.Message, "superuser") {
			t.Errorf("%s 2_check_cluster = %+v, want failed naming the superuser", side.s.role, st)
		}
		if next := workflowStatus(t, side.s).step("3_prepare_replication"); next.Status != "pending" {
			t.Errorf("%s 3_prepare_replication is %s, want pending", side.s.role, next.Status)
		}
	}
	if got := sql(t, b, bed.DC1A, "SELECT rolsuper FROM pg_roles WHERE rolname = '"+user+"'"); got != "t" {
		t.Errorf("role %s rolsuper = %s: sdr changed it", user, got)
	}
	if got := sql(t, b, bed.DC1A, "SELECT count(*) FROM pg_replication_slots"); got != "0" {
		t.Errorf("%s slots on dc1-a after the refusal, want 0", got)
	}
	if hbaAfter, _ := os.ReadFile(hbaFile); string(hbaAfter) != string(hbaBefore) {
		t.Errorf("pg_hba.conf of dc1-a changed:\n%s", hbaAfter)
	}
}

// TestRejectLineStopsStandbyInStep2: a DBA adds a reject line for
// replication at the top of the primary's pg_hba.conf after a completed
// start. A rebuild of the standby side must stop in its step 2, with a
// clear error, before 5_stop_cluster stops any DR node.
func TestRejectLineStopsStandbyInStep2(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := newBed(t)
	mustStartBoth(t, b)
	hbaFile := filepath.Join(b.Node(bed.DC1A).DataDir, "pg_hba.conf")
	old, err := os.ReadFile(hbaFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hbaFile, append([]byte("host replication all 127.0.0.1/32 reject\n"), old...), 0o600); err != nil {
		t.Fatal(err)
	}
	sql(t, b, bed.DC1A, "SELECT pg_reload_conf()")
	pids := map[string]string{}
	for _, n := range []string{bed.DC2A, bed.DC2B} {
		pids[n] = sql(t, b, n, "SELECT pg_postmaster_start_time()")
	}

	r := start(t, b, standbySide(b), "--restart", "--timeout", "8s")
	if r.Code != 1 {
		t.Fatalf("standby start --restart exit code %d, want 1: %s", r.Code, r)
	}
	d := workflowStatus(t, standbySide(b))
	st := d.step("2_check_cluster")
	if st.Status != "failed" || st.Error == nil {
		t.Fatalf("2_check_cluster = %+v, want failed", st)
	}
	for _, m := range []string{"replication connection", "pg_hba.conf", "sdr stopped nothing"} {
		if !strings.Contains(st.Error.Message, m) {
			t.Errorf("the error does not mention %q: %s", m, st.Error.Message)
		}
	}
	if stop := d.step("5_stop_cluster"); stop.Status != "pending" {
		t.Errorf("5_stop_cluster is %s, want pending", stop.Status)
	}
	for _, n := range []string{bed.DC2A, bed.DC2B} {
		if got := sql(t, b, n, "SELECT pg_postmaster_start_time()"); got != pids[n] {
			t.Errorf("%s was restarted (postmaster start %s, was %s)", n, got, pids[n])
		}
		if got := sql(t, b, n, "SELECT pg_is_in_recovery()"); got != "t" {
			t.Errorf("%s in recovery = %s", n, got)
		}
	}
	if got := sql(t, b, bed.DC2A, "SELECT status FROM pg_stat_wal_receiver"); got != "streaming" {
		t.Errorf("dc2-a wal receiver = %q, want still streaming", got)
	}
}

// TestWaitStandbyAfterRestartWaitsForNewStream: with both sides started,
// the primary side is run again with --restart first. Its 8_wait_standby
// must not be satisfied by the main standby's stream that was running
// before; it completes only once the standby side's --restart has
// stopped and started the main standby again, and the walsender then in
// use started after the primary's pass began and after its 8_wait_standby
// began. The primary has max_wal_senders 3, which only fits when its check
// does not count the pair's own stream as busy.
func TestWaitStandbyAfterRestartWaitsForNewStream(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := newBed(t)
	mustStartBoth(t, b)
	// max_wal_senders 3 on the primary: its own standby and the pair's
	// stream take two; the rebuild ends the pair's stream before its copy
	// takes two, so the primary side's check must not count that stream.
	ctx := context.Background()
	sql(t, b, bed.DC1A, "ALTER SYSTEM SET max_wal_senders = 3")
	if err := b.PGCtl(ctx, bed.DC1A, "stop", "-m", "fast"); err != nil {
		t.Fatal(err)
	}
	if err := b.PGCtl(ctx, bed.DC1A, "start"); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "dc1-b and dc2-a stream from dc1-a again", func() (bool, string) {
		got, err := b.SQL(ctx, bed.DC1A, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
		return err == nil && got == "2", fmt.Sprint(got, err)
	})
	oldStart := sql(t, b, bed.DC1A, "SELECT backend_start FROM pg_stat_replication WHERE application_name = '"+mainApp(b)+"'")

	var p result
	done := make(chan struct{})
	go func() { defer close(done); p = start(t, b, primarySide(b), "--restart", "--timeout", "3m") }()
	waitPrimaryInStep8(t, b, done)
	// The old stream is still there; a run that counted it would finish now.
	time.Sleep(3 * time.Second)
	select {
	case <-done:
		t.Fatalf("the primary start --restart finished on the old stream (started %s): %s", oldStart, p)
	default:
	}
	if st := workflowStatus(t, primarySide(b)).step("8_wait_standby"); st.Status != "started" {
		t.Fatalf("8_wait_standby = %s while the old stream runs, want started", st.Status)
	}

	s := start(t, b, standbySide(b), "--restart", "--timeout", "3m")
	<-done
	if p.Code != 0 || s.Code != 0 {
		t.Fatalf("starts failed:\nprimary: %s\nstandby: %s", p, s)
	}
	raw := sql(t, b, bed.DC1A, "SELECT to_char(backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM pg_stat_replication "+
		"WHERE application_name = '"+mainApp(b)+"' AND state = 'streaming' AND pid = (SELECT active_pid FROM pg_replication_slots WHERE slot_name = '"+mainSlot(b)+"')")
	backendStart, err := time.Parse(time.RFC3339Nano, raw)
	if err != nil {
		t.Fatalf("backend_start of the streaming walsender on the slot: %q: %v", raw, err)
	}
	pd, sd := workflowStatus(t, primarySide(b)), workflowStatus(t, standbySide(b))
	wait, stop := pd.step("8_wait_standby"), sd.step("5_stop_cluster")
	if wait.Started == nil || stop.Ended == nil || wait.Ended == nil {
		t.Fatalf("missing step times: primary 8_wait_standby %+v, standby 5_stop_cluster %+v", wait, stop)
	}
	if !backendStart.After(*wait.Started) {
		t.Errorf("the streaming walsender started at %s, not after the primary's 8_wait_standby began at %s", backendStart, *wait.Started)
	}
	if !backendStart.After(*stop.Ended) {
		t.Errorf("the streaming walsender started at %s, not after the standby side stopped its nodes at %s", backendStart, *stop.Ended)
	}
	if !wait.Ended.After(*stop.Ended) {
		t.Errorf("the primary's 8_wait_standby ended at %s, before the standby side stopped its nodes at %s", *wait.Ended, *stop.Ended)
	}
	if since := pd.Workflows[0].Values["primary.wait_standby.since"]; since == "" {
		t.Error("primary.wait_standby.since is not recorded")
	}
}
