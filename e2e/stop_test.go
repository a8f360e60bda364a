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

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/e2e/bed"
)

// stopWith runs `sdr stop` for one side with the bed's config.
func stopWith(t *testing.T, bin string, env []string, b *bed.Bed, s side, extra ...string) result {
	t.Helper()
	args := append([]string{"--config", b.ConfigPath, "--state", s.state, "--log-file", s.log, "stop", "--role", s.role}, extra...)
	return sdr(t, bin, env, args...)
}

// stopBoth runs both stops at the same time; envs are the primary's and
// the standby's extra environment.
func stopBoth(t *testing.T, b *bed.Bed, bin string, envP, envS []string) (p, s result) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p = stopWith(t, bin, envP, b, primarySide(b)) }()
	go func() { defer wg.Done(); s = stopWith(t, bin, envS, b, standbySide(b)) }()
	wg.Wait()
	return p, s
}

// primaryBefore is what the primary cluster looked like before any start:
// a stop must leave it so.
type primaryBefore struct {
	hba     map[string]string // node -> pg_hba.conf
	walKeep string            // wal_keep_size setting, source and file
}

func primaryBeforeStart(t *testing.T, b *bed.Bed) primaryBefore {
	t.Helper()
	pb := primaryBefore{hba: map[string]string{}}
	for _, n := range []string{bed.DC1A, bed.DC1B} {
		raw, err := os.ReadFile(filepath.Join(b.Node(n).DataDir, "pg_hba.conf"))
		if err != nil {
			t.Fatal(err)
		}
		pb.hba[n] = string(raw)
	}
	pb.walKeep = sql(t, b, bed.DC1A, walKeepSQL)
	return pb
}

const walKeepSQL = "SELECT setting || ' ' || source || ' ' || coalesce(sourcefile, '') FROM pg_settings WHERE name = 'wal_keep_size'"

// keptAfterStop are the settings that may stay in sdr's block of a DR
// node's postgresql.auto.conf after stop: the node's own identity.
var keptAfterStop = map[string]bool{"port": true, "unix_socket_directories": true, "cluster_name": true, "hot_standby": true,
	"recovery_target_timeline": true}

// checkStopped checks the end state of a stop on both sides, in
// PostgreSQL and in the files.
func checkStopped(t *testing.T, b *bed.Bed, before primaryBefore) {
	t.Helper()
	for _, sd := range []side{primarySide(b), standbySide(b)} {
		if got := status(t, "", sd).state(sd.role); got != "normal" {
			t.Errorf("%s side state %q after stop, want normal", sd.role, got)
		}
	}
	// Primary side: no slot of the pair, pg_hba.conf as before the start,
	// wal_keep_size as before, the role still there.
	for _, n := range []string{bed.DC1A, bed.DC1B} {
		if got := sql(t, b, n, "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'sdr%'"); got != "0" {
			t.Errorf("%s has %s sdr slots after stop, want 0", n, got)
		}
		raw, err := os.ReadFile(filepath.Join(b.Node(n).DataDir, "pg_hba.conf"))
		if err != nil {
			t.Fatal(err)
		}
		if string(raw) != before.hba[n] {
			t.Errorf("%s pg_hba.conf after stop differs from before the start:\n%s\nbefore:\n%s", n, raw, before.hba[n])
		}
		if got := sql(t, b, n, "SELECT count(*) FROM pg_hba_file_rules WHERE 'sdr_repl' = ANY(user_name)"); got != "0" {
			t.Errorf("%s still loads %s pg_hba.conf rules for sdr_repl", n, got)
		}
	}
	if got := sql(t, b, bed.DC1A, walKeepSQL); got != before.walKeep {
		t.Errorf("dc1-a wal_keep_size after stop %q, before the start %q", got, before.walKeep)
	}
	if got := sql(t, b, bed.DC1A, "SELECT count(*) FROM pg_roles WHERE rolname = 'sdr_repl'"); got != "1" {
		t.Errorf("the replication role was dropped without --drop-role")
	}
	if got := sql(t, b, bed.DC1A, "SELECT count(*) FROM pg_stat_replication WHERE application_name LIKE 'sdr%'"); got != "0" {
		t.Errorf("dc1-a still sends WAL to %s DR walreceivers", got)
	}
	// DR side: every node up, read-only, no upstream, no sdr settings.
	for _, n := range []string{bed.DC2A, bed.DC2B} {
		node := b.Node(n)
		if got := sql(t, b, n, "SELECT pg_is_in_recovery()::text || ' ' || current_setting('transaction_read_only')"); got != "true on" {
			t.Errorf("%s: in recovery / read only = %q, want a read-only standby", n, got)
		}
		if got := sql(t, b, n, "SELECT count(*) FROM pg_stat_wal_receiver WHERE pid IS NOT NULL"); got != "0" {
			t.Errorf("%s still has a WAL receiver", n)
		}
		if got := sql(t, b, n, "SELECT current_setting('primary_conninfo') || '|' || current_setting('primary_slot_name')"); got != "|" {
			t.Errorf("%s primary_conninfo|primary_slot_name = %q, want empty", n, got)
		}
		if got := sql(t, b, n, "SELECT count(*) FROM pg_replication_slots"); got != "0" {
			t.Errorf("%s has %s slots after stop", n, got)
		}
		for _, f := range []string{node.DataDir + ".sdr/pgpass", node.DataDir + ".sdr/standby.conf", node.DataDir + ".sdr/new", node.DataDir + ".sdr/saved"} {
			if _, err := os.Stat(f); !os.IsNotExist(err) {
				t.Errorf("%s: %s still there (%v)", n, f, err)
			}
		}
		if _, err := os.Stat(filepath.Join(node.DataDir, "standby.signal")); err != nil {
			t.Errorf("%s: standby.signal gone: %v", n, err)
		}
		auto, err := os.ReadFile(filepath.Join(node.DataDir, "postgresql.auto.conf"))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(auto), "primary_conninfo") || strings.Contains(string(auto), "primary_slot_name") {
			t.Errorf("%s postgresql.auto.conf still names the upstream:\n%s", n, auto)
		}
		lines, _ := cluster.BlockLines(string(auto), b.Name)
		for _, l := range lines {
			if name := strings.TrimSpace(strings.SplitN(l, "=", 2)[0]); !keptAfterStop[name] {
				t.Errorf("%s: sdr's block still sets %q", n, l)
			}
		}
		if got := sql(t, b, n, "SELECT current_setting('port')"); got != fmt.Sprint(node.Port) {
			t.Errorf("%s runs on port %s, want its own %d", n, got, node.Port)
		}
		hba, err := os.ReadFile(filepath.Join(node.DataDir, "pg_hba.conf"))
		if err != nil {
			t.Fatal(err)
		}
		if c := cluster.CountBlocks(string(hba), b.Name); c != 0 {
			t.Errorf("%s pg_hba.conf still has %d sdr blocks", n, c)
		}
		if !strings.Contains(string(hba), "10.99.0.0/24") {
			t.Errorf("%s pg_hba.conf lost the custom line:\n%s", n, hba)
		}
	}
	// Not streaming: a write on the primary does not reach the DR nodes.
	sql(t, b, bed.DC1A, "CREATE TABLE IF NOT EXISTS stop_probe (i int); INSERT INTO stop_probe VALUES (1)")
	lsn := sql(t, b, bed.DC1A, "SELECT pg_current_wal_lsn()")
	time.Sleep(2 * time.Second)
	for _, n := range []string{bed.DC2A, bed.DC2B} {
		if got := sql(t, b, n, "SELECT coalesce(pg_last_wal_replay_lsn() < '"+lsn+"'::pg_lsn, true)"); got != "true" && got != "t" {
			t.Errorf("%s replayed WAL written after the stop (up to %s): it still streams", n, lsn)
		}
	}
}

// checkRunning checks a pair that was started again: states, one slot,
// one block per primary-cluster node, wal_keep_size back, every DR node
// streaming and holding the primary's data, including a fresh write.
func checkRunning(t *testing.T, b *bed.Bed, before primaryBefore) {
	t.Helper()
	if got := status(t, "", primarySide(b)).state("primary"); got != "archive" {
		t.Errorf("primary side state %q, want archive", got)
	}
	if got := status(t, "", standbySide(b)).state("standby"); got != "recovery" {
		t.Errorf("standby side state %q, want recovery", got)
	}
	if got := sql(t, b, bed.DC1A, "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'sdr%' AND active"); got != "1" {
		t.Errorf("dc1-a has %s active sdr slots, want 1", got)
	}
	for _, n := range []string{bed.DC1A, bed.DC1B} {
		raw, _ := os.ReadFile(filepath.Join(b.Node(n).DataDir, "pg_hba.conf"))
		if c := cluster.CountBlocks(string(raw), b.Name); c != 1 {
			t.Errorf("%s pg_hba.conf has %d sdr blocks, want 1", n, c)
		}
	}
	if got := sql(t, b, bed.DC1A, walKeepSQL); got != before.walKeep {
		t.Errorf("dc1-a wal_keep_size %q, want %q", got, before.walKeep)
	}
	mark := fmt.Sprint(time.Now().UnixNano())
	sql(t, b, bed.DC1A, "CREATE TABLE IF NOT EXISTS stop_probe (i int); CREATE TABLE IF NOT EXISTS restart_mark (m text); INSERT INTO restart_mark VALUES ('"+mark+"')")
	want := sql(t, b, bed.DC1A, checksumSQL)
	for _, n := range []string{bed.DC2A, bed.DC2B} {
		eventually(t, 30*time.Second, "a write after the new start reaches "+n, func() (bool, string) {
			got, err := b.SQL(context.Background(), n, "SELECT count(*) FROM restart_mark WHERE m = '"+mark+"'")
			return err == nil && got == "1", fmt.Sprint(got, err)
		})
		if got := sql(t, b, n, checksumSQL); got != want {
			t.Errorf("%s dr_check %s, want %s", n, got, want)
		}
		if got := sql(t, b, n, "SELECT status FROM pg_stat_wal_receiver"); got != "streaming" {
			t.Errorf("%s wal receiver %q, want streaming", n, got)
		}
	}
}

// TestStopBothSidesThenStartAgain starts a pair, stops both sides at the
// same time, checks that nothing of the pair is left and that a second
// stop changes nothing, then starts again and checks the pair converges.
// Before the stop, an ALTER SYSTEM on the cascade has rewritten its
// postgresql.auto.conf without sdr's block markers: stop still takes
// sdr's replication lines off it, and keeps the operator's setting.
func TestStopBothSidesThenStartAgain(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := newBed(t)
	seedData(t, b, 1)
	before := primaryBeforeStart(t, b)
	mustStartBoth(t, b)
	sql(t, b, bed.DC2B, "ALTER SYSTEM SET work_mem = '7MB'")
	if raw, err := os.ReadFile(filepath.Join(b.Node(bed.DC2B).DataDir, "postgresql.auto.conf")); err != nil ||
		strings.Contains(string(raw), "# BEGIN sdr") || !strings.Contains(string(raw), "primary_conninfo") {
		t.Fatalf("ALTER SYSTEM on dc2-b did not leave sdr's lines without markers (%v):\n%s", err, raw)
	}
	started := map[string]string{}
	for _, n := range bed.NodeNames {
		started[n] = sql(t, b, n, "SELECT pg_postmaster_start_time()")
	}
	w := watchCmdlines(b.Password)
	p, s := stopBoth(t, b, sdrBin, nil, nil)
	hits, _ := w.Stop()
	if p.Code != 0 || s.Code != 0 {
		t.Fatalf("stops failed:\nprimary: %s\nstandby: %s", p, s)
	}
	t.Logf("primary stop took %s, standby stop took %s", p.Took.Round(time.Millisecond), s.Took.Round(time.Millisecond))
	for _, r := range []result{p, s} {
		if !strings.Contains(r.Stdout, "complete; state normal") {
			t.Errorf("stop output: %s", r.Stdout)
		}
	}
	if len(hits) > 0 {
		t.Errorf("password seen on command lines during stop: %v", hits)
	}
	checkStopped(t, b, before)
	if got := sql(t, b, bed.DC2B, "SELECT current_setting('work_mem')"); got != "7MB" {
		t.Errorf("dc2-b work_mem after stop %q, want the operator's 7MB", got)
	}
	for _, n := range bed.NodeNames {
		if got := sql(t, b, n, "SELECT pg_postmaster_start_time()"); got != started[n] {
			t.Errorf("stop restarted %s: a reload is enough", n)
		}
	}

	t.Run("second stop changes nothing", func(t *testing.T) {
		snap := snapshotFiles(t, b)
		for _, sd := range []side{primarySide(b), standbySide(b)} {
			r := stopWith(t, sdrBin, nil, b, sd)
			if r.Code != 0 || !strings.Contains(r.Stdout, "already complete") {
				t.Errorf("second stop --role %s: %s", sd.role, r)
			}
		}
		for k, v := range snapshotFiles(t, b) {
			if snap[k] != v {
				t.Errorf("second stop changed %s", k)
			}
		}
	})

	t.Run("status tells the start was superseded", func(t *testing.T) {
		r := sdr(t, sdrBin, nil, "--state", b.StateFilePrimary, "status")
		if r.Code != 0 || !strings.Contains(r.Stdout, "superseded by a later stop/primary") || !strings.Contains(r.Stdout, "workflow stop/primary: complete") {
			t.Errorf("status after stop:\n%s", r)
		}
	})

	t.Run("start again", func(t *testing.T) {
		mustStartBoth(t, b)
		for _, sd := range []side{primarySide(b), standbySide(b)} {
			d := status(t, "", sd)
			for _, wf := range d.Workflows {
				if wf.Workflow == "start/"+sd.role && (wf.Runs != 2 || !wf.Complete) {
					t.Errorf("%s: start record runs %d complete %v, want a complete second run", sd.role, wf.Runs, wf.Complete)
				}
				if wf.Workflow == "start/"+sd.role {
					for _, st := range wf.Steps {
						if st.Status == "done" && st.Attempts != 1 {
							t.Errorf("%s: %s has %d attempts in the new run, want 1 (a fresh record)", sd.role, st.Name, st.Attempts)
						}
					}
				}
			}
		}
		checkConverged(t, b)
	})
}

// snapshotFiles records the files and facts a finished stop's rerun must
// not change.
func snapshotFiles(t *testing.T, b *bed.Bed) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, n := range bed.NodeNames {
		for _, f := range []string{"pg_hba.conf", "postgresql.auto.conf"} {
			raw, _ := os.ReadFile(filepath.Join(b.Node(n).DataDir, f))
			out[n+" "+f] = string(raw)
		}
		out[n+" postmaster start"] = sql(t, b, n, "SELECT pg_postmaster_start_time()")
	}
	for _, sd := range []side{primarySide(b), standbySide(b)} {
		d := status(t, "", sd)
		out[sd.role+" history"] = fmt.Sprint(len(d.History))
	}
	return out
}

// stopSteps are the steps of stop per role that change something; a kill
// after the effects of each must be resumed by a plain rerun.
var stopSteps = map[string][]string{
	"primary": {"3_close_access", "4_drop_slots", "5_restore_settings", "6_drop_role", "7_finish"},
	"standby": {"3_detach", "4_drop_slots", "5_remove_files", "", "7_finish"},
}

// TestStopKilledAtEachStep kills both stops (SIGKILL, from a failpoint)
// right after the side effects of step N and before its checkpoint, for
// each N; a rerun of the same commands must finish the stop, and a start
// afterwards must bring the pair back.
func TestStopKilledAtEachStep(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := newBed(t)
	seedData(t, b, 1)
	before := primaryBeforeStart(t, b)
	mustStartBoth(t, b)
	for i := range stopSteps["primary"] {
		stepP, stepS := stopSteps["primary"][i], stopSteps["standby"][i]
		t.Run(stepP+"+"+stepS, func(t *testing.T) {
			var envP, envS []string
			envP = []string{"SDR_FAILPOINT=" + stepP + ":after-effects:kill"}
			if stepS != "" {
				envS = []string{"SDR_FAILPOINT=" + stepS + ":after-effects:kill"}
			}
			p, s := stopBoth(t, b, sdrBinFP, envP, envS)
			for _, k := range []struct {
				sd   side
				step string
				r    result
			}{{primarySide(b), stepP, p}, {standbySide(b), stepS, s}} {
				if k.step == "" {
					if k.r.Code != 0 {
						t.Fatalf("%s stop without failpoint: %s", k.sd.role, k.r)
					}
					continue
				}
				if k.r.Code != -1 {
					t.Fatalf("%s stop with a kill in %s: want killed, got %s", k.sd.role, k.step, k.r)
				}
				d := status(t, "", k.sd)
				if st := findStopStep(d, k.step); st == nil || st.Status != "started" || !st.Interrupted {
					t.Errorf("%s: %s after the kill: %+v, want started and interrupted", k.sd.role, k.step, st)
				}
				if got := d.state(k.sd.role); got != "stop" {
					t.Errorf("%s: state %q after the kill, want stop", k.sd.role, got)
				}
			}
			p, s = stopBoth(t, b, sdrBin, nil, nil)
			if p.Code != 0 || s.Code != 0 {
				t.Fatalf("rerun of the stops:\nprimary: %s\nstandby: %s", p, s)
			}
			for _, k := range []struct {
				sd   side
				step string
			}{{primarySide(b), stepP}, {standbySide(b), stepS}} {
				if k.step == "" {
					continue
				}
				if st := findStopStep(status(t, "", k.sd), k.step); st == nil || st.Status != "done" || st.Attempts != 2 {
					t.Errorf("%s: %s after the rerun: %+v, want done in 2 attempts", k.sd.role, k.step, st)
				}
			}
			checkStopped(t, b, before)
			mustStartBoth(t, b)
			checkRunning(t, b, before)
		})
		if t.Failed() {
			return
		}
	}
}

func findStopStep(d statusDoc, name string) *stepRec {
	for _, w := range d.Workflows {
		if !strings.HasPrefix(w.Workflow, "stop/") {
			continue
		}
		for i := range w.Steps {
			if w.Steps[i].Name == name {
				return &w.Steps[i]
			}
		}
	}
	return nil
}

// TestStopAfterUnfinishedStart stops both sides of a pair whose starts
// did not finish: the primary side failed in 8_wait_standby (slot made,
// wal_keep_size raised, pg_hba.conf block written), the standby side in
// 7_build_standby right after copying dc2-a (nodes stopped, a complete
// copy in new/, the own files in saved/). The DR side's stop, before any
// start there, is refused. Stop puts wal_keep_size back from start's
// record, drops the slot and, with --drop-role, the role; on the DR side
// it removes the copy, the saved files and the password file and leaves
// the nodes down with their own data directories. A start of both sides
// afterwards converges.
func TestStopAfterUnfinishedStart(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := newBed(t)
	seedData(t, b, 1)
	before := primaryBeforeStart(t, b)

	r := stopWith(t, sdrBin, nil, b, standbySide(b))
	if r.Code != 2 || !strings.Contains(errorLine(r.Stderr), "no state file") || !strings.Contains(errorLine(r.Stderr), b.StateFileStandby) {
		t.Errorf("stop on the DR side where sdr never ran: %s", r)
	}
	if _, err := os.Stat(b.StateFileStandby); !os.IsNotExist(err) {
		t.Errorf("the refused stop created the standby state file (%v)", err)
	}

	r = startWith(t, sdrBinFP, []string{"SDR_FAILPOINT=8_wait_standby:before"}, b.ConfigPath, primarySide(b))
	if r.Code != 1 {
		t.Fatalf("primary start with a failpoint in 8_wait_standby: %s", r)
	}
	if got := sql(t, b, bed.DC1A, "SELECT setting FROM pg_settings WHERE name = 'wal_keep_size'"); got != "1024" {
		t.Fatalf("wal_keep_size %s after 4_retain_wal, want 1024 (the test needs sdr's raise in effect)", got)
	}
	r = startWith(t, sdrBinFP, []string{"SDR_FAILPOINT=7_build_standby:copied@dc2-a"}, b.ConfigPath, standbySide(b), "--timeout", "2m")
	if r.Code != 1 {
		t.Fatalf("standby start with a failpoint after copying dc2-a: %s", r)
	}
	dc2a := b.Node(bed.DC2A)
	for _, p := range []string{dc2a.DataDir + ".sdr/new", dc2a.DataDir + ".sdr/saved", dc2a.DataDir + ".sdr/pgpass"} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("the test needs %s after the failed start: %v", p, err)
		}
	}
	sysID := controlField(t, b, dc2a.DataDir, "Database system identifier")

	s := stopWith(t, sdrBin, nil, b, standbySide(b))
	p := stopWith(t, sdrBin, nil, b, primarySide(b), "--drop-role")
	if p.Code != 0 || s.Code != 0 {
		t.Fatalf("stops:\nprimary: %s\nstandby: %s", p, s)
	}
	// Primary side.
	if got := sql(t, b, bed.DC1A, walKeepSQL); got != before.walKeep {
		t.Errorf("wal_keep_size after stop %q, before the start %q", got, before.walKeep)
	}
	if got := sql(t, b, bed.DC1A, "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'sdr%'"); got != "0" {
		t.Errorf("%s sdr slots left", got)
	}
	for _, n := range []string{bed.DC1A, bed.DC1B} {
		raw, _ := os.ReadFile(filepath.Join(b.Node(n).DataDir, "pg_hba.conf"))
		if string(raw) != before.hba[n] {
			t.Errorf("%s pg_hba.conf after stop differs from before the start:\n%s", n, raw)
		}
	}
	if got := sql(t, b, bed.DC1A, "SELECT count(*) FROM pg_roles WHERE rolname = 'sdr_repl'"); got != "0" {
		t.Errorf("--drop-role left the role sdr created for this pair")
	}
	if vals := workflowValues(t, primarySide(b), "start/primary"); vals["primary.wal_keep_size.change"] != "" {
		t.Errorf("the start record still holds the wal_keep_size change: %v", vals)
	}
	// DR side: the rebuild's leftovers are gone, the nodes stay down with
	// their own data directories.
	for _, n := range []string{bed.DC2A, bed.DC2B} {
		node := b.Node(n)
		for _, p := range []string{"new", "new.complete", "saved", "pgpass", "standby.conf"} {
			if _, err := os.Stat(node.DataDir + ".sdr/" + p); !os.IsNotExist(err) {
				t.Errorf("%s: %s.sdr/%s still there (%v)", n, node.DataDir, p, err)
			}
		}
		if _, err := os.Stat(filepath.Join(node.DataDir, "postmaster.pid")); !os.IsNotExist(err) {
			t.Errorf("%s: stop started a node that 5_stop_cluster had stopped (%v)", n, err)
		}
	}
	if got := controlField(t, b, dc2a.DataDir, "Database system identifier"); got != sysID {
		t.Errorf("dc2-a's data directory changed: system identifier %s, was %s", got, sysID)
	}
	for _, sd := range []side{primarySide(b), standbySide(b)} {
		if got := status(t, "", sd).state(sd.role); got != "normal" {
			t.Errorf("%s side state %q after stop, want normal", sd.role, got)
		}
	}

	mustStartBoth(t, b)
	checkConverged(t, b)
}

// workflowValues returns the saved values of one workflow record.
func workflowValues(t *testing.T, s side, key string) map[string]string {
	t.Helper()
	r := sdr(t, sdrBin, nil, "--state", s.state, "status", "--json", "--history", "0")
	var d workflowDoc
	if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &d) != nil {
		t.Fatalf("sdr status --json: %s", r)
	}
	for _, w := range d.Workflows {
		if w.Workflow == key {
			return w.Values
		}
	}
	t.Fatalf("no workflow %s in %s", key, s.state)
	return nil
}

// TestStopStandbyWithPrimaryDown stops the DR side while every
// PostgreSQL of the primary cluster is down, as after the loss of the
// primary data centre: the DR side's stop needs nothing from there. Once
// the primary cluster is back, its own stop finishes the teardown.
func TestStopStandbyWithPrimaryDown(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := newBed(t)
	seedData(t, b, 1)
	before := primaryBeforeStart(t, b)
	mustStartBoth(t, b)
	ctx := context.Background()
	for _, n := range []string{bed.DC1B, bed.DC1A} {
		if err := b.PGCtl(ctx, n, "stop", "-m", "fast", "-w"); err != nil {
			t.Fatal(err)
		}
	}
	want := sql(t, b, bed.DC2A, checksumSQL)
	r := stopWith(t, sdrBin, nil, b, standbySide(b), "--timeout", "1m")
	if r.Code != 0 {
		t.Fatalf("stop --role standby with the primary cluster down: %s", r)
	}
	for _, n := range []string{bed.DC2A, bed.DC2B} {
		if got := sql(t, b, n, "SELECT pg_is_in_recovery()::text || ' ' || (SELECT count(*) FROM pg_stat_wal_receiver WHERE pid IS NOT NULL)"); got != "true 0" {
			t.Errorf("%s: in recovery / WAL receivers = %q, want a standby without upstream", n, got)
		}
		if got := sql(t, b, n, checksumSQL); got != want {
			t.Errorf("%s: dr_check %s, want %s: the copy must stay readable", n, got, want)
		}
		if _, err := os.Stat(b.Node(n).DataDir + ".sdr/pgpass"); !os.IsNotExist(err) {
			t.Errorf("%s: pgpass still there (%v)", n, err)
		}
	}
	for _, n := range []string{bed.DC1A, bed.DC1B} {
		if err := b.PGCtl(ctx, n, "start", "-w"); err != nil {
			t.Fatal(err)
		}
	}
	if r := stopWith(t, sdrBin, nil, b, primarySide(b)); r.Code != 0 {
		t.Fatalf("stop --role primary once the primary cluster is back: %s", r)
	}
	checkStopped(t, b, before)
}
