package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgsdr/sdr/e2e/bed"
)

// controlField reads one pg_controldata field of a data directory.
func controlField(t *testing.T, b *bed.Bed, dir, field string) string {
	t.Helper()
	out, err := b.AsPostgres(context.Background(), filepath.Join(bed.BinDir, "pg_controldata"), "-D", dir)
	if err != nil {
		t.Fatalf("pg_controldata %s: %v", dir, err)
	}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == field {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("pg_controldata %s: no field %q", dir, field)
	return ""
}

// mkdirPostgres creates dir (and its parents) owned by the postgres OS user.
func mkdirPostgres(t *testing.T, dir string) {
	t.Helper()
	if out, err := exec.Command("install", "-d", "-o", "postgres", "-g", "postgres", dir).CombinedOutput(); err != nil {
		t.Fatalf("install -d %s: %v: %s", dir, err, out)
	}
}

// inode returns the inode of p (following symlinks).
func inode(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// baseBackups counts the BASE_BACKUP replication commands a node's server
// has logged (the bed sets log_replication_commands).
func baseBackups(t *testing.T, b *bed.Bed, node string) int {
	t.Helper()
	raw, err := os.ReadFile(b.Node(node).LogFile)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(raw, []byte("command: BASE_BACKUP"))
}

// noLeftovers checks that nothing of an earlier run is left: no tagged
// process, no pg_basebackup, no basebackup walsender and no temporary slot.
func noLeftovers(t *testing.T, b *bed.Bed) {
	t.Helper()
	eventually(t, 20*time.Second, "no process of an earlier run", func() (bool, string) {
		var left []string
		envs, _ := filepath.Glob("/proc/[0-9]*/environ")
		for _, p := range envs {
			raw, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			cmd, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "cmdline"))
			if bytes.Contains(raw, []byte("SDR_TASK="+strings.ReplaceAll(b.Dir, "/", ":"))) || (bytes.Contains(cmd, []byte("pg_basebackup")) && bytes.Contains(cmd, []byte(b.Dir))) {
				left = append(left, filepath.Dir(p)+": "+string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})))
			}
		}
		return len(left) == 0, strings.Join(left, "; ")
	})
	for _, n := range []string{bed.DC1A, bed.DC2A} {
		eventually(t, 20*time.Second, "no basebackup walsender or temporary slot on "+n, func() (bool, string) {
			got, err := b.SQL(context.Background(), n, "SELECT (SELECT count(*) FROM pg_stat_replication WHERE application_name LIKE '%basebackup%') || '/' || "+
				"(SELECT count(*) FROM pg_replication_slots WHERE temporary)")
			return err == nil && got == "0/0", fmt.Sprint(got, err)
		})
	}
}

// TestRebuildRefusesPrimaryClusterNode names an in-cluster standby of the
// primary, and then a stopped one, as a DR node under another host
// spelling: step 2 refuses before anything is stopped.
func TestRebuildRefusesPrimaryClusterNode(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := newBed(t)
	seedData(t, b, 1)
	if p := start(t, b, primarySide(b), "--timeout", "3s"); p.Code != 1 {
		t.Fatalf("primary side alone: want it to wait in vain (exit 1), got %s", p)
	}
	dc1b, dc2b := b.Node(bed.DC1B), b.Node(bed.DC2B)
	alias := filepath.Join(b.Dir, "alias-dc1-b")
	if err := os.Symlink(dc1b.DataDir, alias); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		dataDir string
		stopped bool
	}{
		{"running in-cluster standby as localhost", dc1b.DataDir, false},
		{"stopped in-cluster standby through a symlink", alias, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.stopped {
				if err := b.PGCtl(context.Background(), bed.DC1B, "stop", "-m", "fast"); err != nil {
					t.Fatal(err)
				}
				defer func() {
					if err := b.PGCtl(context.Background(), bed.DC1B, "start"); err != nil {
						t.Error(err)
					}
				}()
			}
			cfg, err := b.WriteConfig(func(m *map[string]any) {
				n := nodeMap(*m, "standby", 1)
				n["host"] = "localhost"
				n["pg_port"] = dc1b.Port
				n["data_dir"] = c.dataDir
				n["socket_dir"] = dc1b.SocketDir
				n["log_file"] = dc2b.LogFile
			})
			if err != nil {
				t.Fatal(err)
			}
			before := inode(t, dc1b.DataDir)
			st := side{"standby", filepath.Join(b.Dir, "refuse-"+strconv.FormatBool(c.stopped)+".db"), b.LogFileStandby}
			r := startWith(t, sdrBin, nil, cfg, st, "--timeout", "1m")
			if r.Code == 0 {
				t.Fatalf("start --role standby accepted a primary-cluster node: %s", r)
			}
			msg := r.Stderr
			if !strings.Contains(msg, "2_check_cluster") && !strings.Contains(msg, "step 2") {
				d := status(t, "", st)
				if rec := findStep(d, "2_check_cluster"); rec == nil || rec.Status != "failed" {
					t.Errorf("want the refusal in 2_check_cluster, got %+v\n%s", rec, r)
				}
			}
			if !strings.Contains(msg, "primary-cluster node dc1-b") || !strings.Contains(msg, "nothing was stopped") {
				t.Errorf("the error should name dc1-b as a primary-cluster node and say nothing was stopped:\n%s", r)
			}
			if got := inode(t, dc1b.DataDir); got != before {
				t.Errorf("dc1-b's data directory was replaced (inode %d, was %d)", got, before)
			}
			if _, err := os.Stat(dc1b.DataDir + ".sdr"); err == nil {
				t.Errorf("sdr created a work directory beside dc1-b's data directory")
			}
			if !c.stopped {
				if got := sql(t, b, bed.DC1B, "SELECT status FROM pg_stat_wal_receiver"); got != "streaming" {
					t.Errorf("dc1-b no longer streams from dc1-a: %q", got)
				}
			}
			for _, n := range []string{bed.DC2A, bed.DC2B} {
				if got := sql(t, b, n, "SELECT 1"); got != "1" {
					t.Errorf("%s is not running any more", n)
				}
			}
		})
	}
}

// TestPromotedCopyIsKept promotes the DR copy by hand, writes to it and
// stops it: a --restart rebuild refuses it, and with --replace-diverged it
// is rebuilt while the diverged directory is kept aside.
func TestPromotedCopyIsKept(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := startedBed(t, bed.Options{}, 1)
	ctx := context.Background()
	dc2a := b.Node(bed.DC2A)
	promoteByHand(t, b, bed.DC2A)
	sql(t, b, bed.DC2A, "CREATE TABLE written_after_promotion AS SELECT g FROM generate_series(1, 777) g")
	for _, n := range []string{bed.DC2B, bed.DC2A} {
		if err := b.PGCtl(ctx, n, "stop", "-m", "fast"); err != nil {
			t.Fatal(err)
		}
	}
	tli := controlField(t, b, dc2a.DataDir, "Latest checkpoint's TimeLineID")
	if tli == "1" {
		t.Fatalf("dc2-a still on timeline 1 after the promotion")
	}
	ino := inode(t, dc2a.DataDir)

	r := start(t, b, standbySide(b), "--restart", "--timeout", "2m")
	if r.Code == 0 {
		t.Fatalf("--restart replaced a promoted copy that took writes: %s", r)
	}
	if !strings.Contains(r.Stderr, "dc2-a") || !strings.Contains(r.Stderr, "--replace-diverged") {
		t.Errorf("the refusal should name dc2-a and the flag:\n%s", r)
	}
	if got := inode(t, dc2a.DataDir); got != ino {
		t.Fatalf("dc2-a's data directory was moved by a refused run")
	}
	if err := b.PGCtl(ctx, bed.DC2A, "start"); err != nil {
		t.Fatal(err)
	}
	if got := sql(t, b, bed.DC2A, "SELECT count(*) FROM written_after_promotion"); got != "777" {
		t.Errorf("rows written after the promotion: %s, want 777", got)
	}
	if err := b.PGCtl(ctx, bed.DC2A, "stop", "-m", "fast"); err != nil {
		t.Fatal(err)
	}

	r = start(t, b, standbySide(b), "--restart", "--timeout", "2m", "--replace-diverged", bed.DC2A, "--replace-diverged", bed.DC2B)
	if r.Code != 0 {
		t.Fatalf("rebuild with --replace-diverged: %s", r)
	}
	kept, _ := filepath.Glob(dc2a.DataDir + ".sdr/diverged-*")
	if len(kept) != 1 {
		t.Fatalf("want one kept diverged directory beside dc2-a, got %v", kept)
	}
	if got := inode(t, kept[0]); got != ino {
		t.Errorf("the kept directory is not the diverged data directory itself (inode %d, want %d)", got, ino)
	}
	if got := controlField(t, b, kept[0], "Latest checkpoint's TimeLineID"); got != tli {
		t.Errorf("kept directory timeline %s, want %s", got, tli)
	}
	if !strings.Contains(r.Stdout+r.Stderr, "diverged-") {
		t.Errorf("sdr should say where the diverged directory is kept:\n%s", r)
	}
	checkConverged(t, b)
}

// TestTablespaceAndSymlink builds, rebuilds and finishes a pair whose
// primary has a tablespace holding a table, with a DR node whose data_dir
// is a symlink.
func TestTablespaceAndSymlink(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := newBed(t)
	ctx := context.Background()
	seedData(t, b, 1)
	// dc1-b runs on the same host: it could not replay the tablespace's
	// creation into the same directory. It leaves the pair for this test.
	if err := b.PGCtl(ctx, bed.DC1B, "stop", "-m", "fast"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WriteConfigTo(b.ConfigPath, func(m *map[string]any) {
		p := clusterMap(*m, "primary")
		p["nodes"] = p["nodes"].([]any)[:1]
	}); err != nil {
		t.Fatal(err)
	}
	loc := filepath.Join(b.Dir, "tablespaces", "one")
	mkdirPostgres(t, filepath.Dir(loc)) // DR nodes keep their copies beside it
	mkdirPostgres(t, loc)
	sql(t, b, bed.DC1A, "CREATE TABLESPACE ts_one LOCATION '"+loc+"'")
	sql(t, b, bed.DC1A, "CREATE TABLE ts_table TABLESPACE ts_one AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g")
	oid := sql(t, b, bed.DC1A, "SELECT oid FROM pg_tablespace WHERE spcname = 'ts_one'")
	const tsSum = "SELECT count(*) || ':' || md5(string_agg(id::text || v, ',' ORDER BY id)) FROM ts_table"

	dc2b := b.Node(bed.DC2B)
	real := dc2b.DataDir + "-real"
	if err := b.PGCtl(ctx, bed.DC2B, "stop", "-m", "fast"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dc2b.DataDir, real); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, dc2b.DataDir); err != nil {
		t.Fatal(err)
	}
	if err := b.PGCtl(ctx, bed.DC2B, "start"); err != nil {
		t.Fatal(err)
	}

	check := func(t *testing.T) {
		want := sql(t, b, bed.DC1A, tsSum)
		for _, n := range []string{bed.DC2A, bed.DC2B} {
			eventually(t, 30*time.Second, "ts_table identical on "+n, func() (bool, string) {
				got, err := b.SQL(ctx, n, tsSum)
				return err == nil && got == want, fmt.Sprint(got, err)
			})
			link, err := os.Readlink(filepath.Join(b.Node(n).DataDir, "pg_tblspc", oid))
			if err != nil || link != loc+"."+n {
				t.Errorf("%s: tablespace link -> %q (%v), want %s", n, link, err, loc+"."+n)
			}
			if _, err := os.Stat(loc + "." + n + ".sdr/old"); !os.IsNotExist(err) {
				t.Errorf("%s: old tablespace copy not removed by 9_finish (%v)", n, err)
			}
			trashEmptied(t, loc+"."+n+".sdr/trash")
		}
		if fi, err := os.Lstat(dc2b.DataDir); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Fatalf("dc2-b's data_dir is no longer a symlink: %v %v", fi, err)
		}
		if target, _ := os.Readlink(dc2b.DataDir); target != real {
			t.Errorf("dc2-b's symlink points to %s, want %s", target, real)
		}
		if _, err := os.Stat(filepath.Join(real, "sdr_copy")); err != nil {
			t.Errorf("the new copy of dc2-b is not at the symlink's target: %v", err)
		}
		if _, err := os.Stat(real + ".sdr/old"); !os.IsNotExist(err) {
			t.Errorf("dc2-b's old data not freed at the real path (%v)", err)
		}
		if _, err := os.Stat(dc2b.DataDir + ".sdr/new"); err == nil {
			t.Errorf("a copy was built beside the symlink instead of at the real path")
		}
		noLeftovers(t, b)
	}
	t.Run("build", func(t *testing.T) {
		if p, s := startBoth(t, b, "--timeout", "3m"); p.Code != 0 || s.Code != 0 {
			t.Fatalf("starts failed:\nprimary: %s\nstandby: %s", p, s)
		}
		check(t)
	})
	t.Run("rebuild after --restart", func(t *testing.T) {
		sql(t, b, bed.DC1A, "INSERT INTO ts_table SELECT g, md5(g::text) FROM generate_series(20001, 21000) g")
		if p, s := startBoth(t, b, "--timeout", "3m", "--restart"); p.Code != 0 || s.Code != 0 {
			t.Fatalf("starts failed:\nprimary: %s\nstandby: %s", p, s)
		}
		check(t)
	})
	// A DR copy promoted by hand takes writes into the tablespace; the
	// rebuild with --replace-diverged keeps the data directory aside, and
	// its tablespace with it: the kept directory starts on its own and
	// holds those writes, and the new copy's tablespace is untouched.
	t.Run("diverged copy kept with its tablespace", func(t *testing.T) {
		dc2a := b.Node(bed.DC2A)
		promoteByHand(t, b, bed.DC2A)
		sql(t, b, bed.DC2A, "INSERT INTO ts_table SELECT g, 'DIVERGED' FROM generate_series(1000001, 1000555) g")
		sql(t, b, bed.DC2A, "CHECKPOINT")
		for _, n := range []string{bed.DC2B, bed.DC2A} {
			if err := b.PGCtl(ctx, n, "stop", "-m", "fast"); err != nil {
				t.Fatal(err)
			}
		}
		// The plan names the tablespace's move beside its location.
		pr := plan(t, b.ConfigPath, standbySide(b), "start", "--role", "standby", "--restart", "--replace-diverged", bed.DC2A, "--replace-diverged", bed.DC2B)
		if want := loc + "." + bed.DC2A + " -> " + loc + "." + bed.DC2A + ".sdr/diverged-"; pr.Code != 0 || !strings.Contains(pr.Stdout, want) {
			t.Errorf("the plan does not say %q:\n%s", want, pr)
		}
		r := start(t, b, standbySide(b), "--restart", "--timeout", "3m", "--replace-diverged", bed.DC2A, "--replace-diverged", bed.DC2B)
		if r.Code != 0 {
			t.Fatalf("rebuild with --replace-diverged: %s", r)
		}
		check(t)
		kept, _ := filepath.Glob(dc2a.DataDir + ".sdr/diverged-*")
		keptTS, _ := filepath.Glob(loc + "." + bed.DC2A + ".sdr/diverged-*")
		if len(kept) != 1 || len(keptTS) != 1 {
			t.Fatalf("want one kept data directory and one kept tablespace for dc2-a, got %v and %v", kept, keptTS)
		}
		if link, err := os.Readlink(filepath.Join(kept[0], "pg_tblspc", oid)); err != nil || link != keptTS[0] {
			t.Fatalf("the kept directory's tablespace link -> %q (%v), want %s", link, err, keptTS[0])
		}
		// The kept directory starts on a port of its own and holds the
		// writes made after the promotion.
		port := freePort(t)
		sock := filepath.Join(b.Dir, "kept-sock")
		mkdirPostgres(t, sock)
		pgctl := filepath.Join(bed.BinDir, "pg_ctl")
		opts := fmt.Sprintf("-p %d -k %s -c listen_addresses= -c primary_conninfo= -c primary_slot_name=", port, sock)
		if _, err := b.AsPostgres(ctx, pgctl, "-D", kept[0], "-o", opts, "-l", kept[0]+".log", "-w", "-t", "120", "start"); err != nil {
			t.Fatalf("starting the kept directory: %v", err)
		}
		defer func() {
			if _, err := b.AsPostgres(ctx, pgctl, "-D", kept[0], "-m", "fast", "-w", "stop"); err != nil {
				t.Errorf("stopping the kept directory: %v", err)
			}
		}()
		got, err := b.AsPostgres(ctx, filepath.Join(bed.BinDir, "psql"), "-XAtq", "-h", sock, "-p", strconv.Itoa(port), "-U", "postgres", "-d", "postgres",
			"-c", "SELECT count(*) FROM ts_table WHERE v = 'DIVERGED'")
		if err != nil || got != "555" {
			t.Errorf("rows written after the promotion in the kept directory: %q (%v), want 555", got, err)
		}
		// The new copy does not see them.
		if got := sql(t, b, bed.DC2A, "SELECT count(*) FROM ts_table WHERE v = 'DIVERGED'"); got != "0" {
			t.Errorf("the new copy of dc2-a holds %s diverged rows", got)
		}
	})
}

// TestKillAtEveryPhase kills the standby side at every recorded phase of
// 7_build_standby, for the main standby and for the cascade, each kill
// resuming the run the previous one cut short. The pair converges, and no
// copy is made twice.
func TestKillAtEveryPhase(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := newBed(t)
	seedData(t, b, 1)
	primaryDone := make(chan result, 1)
	go func() { primaryDone <- start(t, b, primarySide(b), "--timeout", "4m") }()
	fromPrimary, fromMain := baseBackups(t, b, bed.DC1A), baseBackups(t, b, bed.DC2A)
	for _, node := range []string{bed.DC2A, bed.DC2B} {
		for _, phase := range []string{"saved", "copied", "configured", "swapped", "started"} {
			fp := fmt.Sprintf("7_build_standby:%s@%s:kill", phase, node)
			r := startWith(t, sdrBinFP, []string{"SDR_FAILPOINT=" + fp}, b.ConfigPath, standbySide(b), "--timeout", "2m")
			if r.Code != -1 {
				t.Fatalf("%s: want the run killed at the failpoint, got %s", fp, r)
			}
		}
	}
	if r := start(t, b, standbySide(b), "--timeout", "2m"); r.Code != 0 {
		t.Fatalf("rerun after the kills: %s", r)
	}
	if p := <-primaryDone; p.Code != 0 {
		t.Fatalf("primary side: %s", p)
	}
	if got := baseBackups(t, b, bed.DC1A) - fromPrimary; got != 1 {
		t.Errorf("the main standby was copied %d times from the primary, want 1", got)
	}
	if got := baseBackups(t, b, bed.DC2A) - fromMain; got != 1 {
		t.Errorf("the cascade was copied %d times from the main standby, want 1", got)
	}
	checkConverged(t, b)
	noLeftovers(t, b)
}

// TestRandomKillsDuringBuild kills the standby side with SIGKILL at random
// moments of 7_build_standby, 20 times in a row, each followed by a rerun
// that may be killed in turn. A rerun either converges or is killed: it
// never fails by itself. Afterwards nothing of an earlier run is left.
func TestRandomKillsDuringBuild(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := startedBed(t, bed.Options{}, 3)
	seed := time.Now().UnixNano()
	t.Logf("random seed %d", seed)
	rnd := rand.New(rand.NewSource(seed))
	sd := standbySide(b)
	restart := true
	kills, converged := 0, 0
	for i := 0; kills < 20 && i < 60; i++ {
		args := []string{"--config", b.ConfigPath, "--state", sd.state, "--log-file", sd.log, "start", "--role", "standby", "--timeout", "2m"}
		if restart {
			args = append(args, "--restart")
		}
		before := step7Attempts(t, sd)
		if restart {
			before = 0
		}
		cmd := exec.Command(sdrBin, args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		// Wait until step 7 runs, then a random moment of it.
		inStep7 := waitStep7(t, sd, before, done)
		delay := time.Duration(rnd.Int63n(int64(2500 * time.Millisecond)))
		var err error
		killed := false
		if inStep7 {
			select {
			case err = <-done:
			case <-time.After(delay):
				_ = cmd.Process.Signal(syscall.SIGKILL)
				err = <-done
				killed = true
			}
		} else {
			err = <-done
		}
		switch {
		case killed && !cmd.ProcessState.Exited():
			kills++
			restart = false
			t.Logf("run %d killed %s into step 7", i+1, delay.Round(time.Millisecond))
		case err == nil:
			converged++
			restart = true
			t.Logf("run %d converged", i+1)
		default:
			t.Fatalf("run %d failed by itself (%v):\n%s", i+1, err, out.String())
		}
	}
	if kills < 20 {
		t.Fatalf("only %d kills landed in step 7", kills)
	}
	if r := start(t, b, sd, "--timeout", "2m"); r.Code != 0 {
		t.Fatalf("final rerun: %s", r)
	}
	t.Logf("%d kills, %d runs converged on the way", kills, converged)
	checkConverged(t, b)
	noLeftovers(t, b)
}

// step7Attempts reads how often the standby's 7_build_standby was
// started (0 when the state file has no record yet).
func step7Attempts(t *testing.T, sd side) int {
	t.Helper()
	out, err := exec.Command(sdrBin, "--state", sd.state, "status", "--json", "--history", "1").Output()
	if err != nil {
		return 0
	}
	var d statusDoc
	if json.Unmarshal(out, &d) != nil {
		return 0
	}
	if rec := findStep(d, "7_build_standby"); rec != nil && rec.Status == "started" {
		return rec.Attempts
	}
	if rec := findStep(d, "7_build_standby"); rec != nil {
		return rec.Attempts
	}
	return 0
}

// waitStep7 waits until this run has started the standby's
// 7_build_standby (its attempts grew past before): true; or the run ends
// first: false.
func waitStep7(t *testing.T, sd side, before int, done chan error) bool {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			done <- err
			return false
		default:
		}
		out, err := exec.Command(sdrBin, "--state", sd.state, "status", "--json", "--history", "1").Output()
		var d statusDoc
		if err == nil && json.Unmarshal(out, &d) == nil {
			if rec := findStep(d, "7_build_standby"); rec != nil && rec.Status == "started" && rec.Attempts > before {
				return true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("7_build_standby never started")
	return false
}

// TestRemoteErrorShowsCause makes pg_basebackup fail for a real reason (the
// slot it needs is held by pg_receivewal): the error names the cause, not
// only pg_basebackup's cleanup lines. Once the slot is free, a rerun converges.
func TestRemoteErrorShowsCause(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := startedBed(t, bed.Options{}, 1)
	sd := standbySide(b)
	r := startWith(t, sdrBinFP, []string{"SDR_FAILPOINT=6_set_guc:after-checkpoint"}, b.ConfigPath, sd, "--restart", "--timeout", "1m")
	if r.Code != 1 {
		t.Fatalf("want the run to stop after 6_set_guc: %s", r)
	}
	slot := sql(t, b, bed.DC1A, "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'sdr%' AND NOT temporary")
	dc1a := b.Node(bed.DC1A)
	walDir := filepath.Join(b.Dir, "receivewal")
	mkdirPostgres(t, walDir)
	recv := exec.Command("runuser", "-u", "postgres", "--", filepath.Join(bed.BinDir, "pg_receivewal"),
		"-h", dc1a.SocketDir, "-p", strconv.Itoa(dc1a.Port), "-U", "postgres", "-S", slot, "-D", walDir, "--no-password")
	recv.Dir = b.Dir
	recv.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := recv.Start(); err != nil {
		t.Fatal(err)
	}
	stopRecv := func() {
		_ = syscall.Kill(-recv.Process.Pid, syscall.SIGKILL)
		_ = recv.Wait()
	}
	defer stopRecv()
	eventually(t, 20*time.Second, "pg_receivewal holds the slot", func() (bool, string) {
		got := sql(t, b, bed.DC1A, "SELECT active FROM pg_replication_slots WHERE slot_name = '"+slot+"'")
		return got == "t", got
	})
	r = start(t, b, sd, "--timeout", "1m")
	if r.Code != 1 {
		t.Fatalf("want pg_basebackup to fail while the slot is held: %s", r)
	}
	if !strings.Contains(r.Stderr, "is active for PID") {
		t.Errorf("the error does not show pg_basebackup's cause (slot active):\n%s", r)
	}
	stopRecv()
	eventually(t, 20*time.Second, "slot free", func() (bool, string) {
		got := sql(t, b, bed.DC1A, "SELECT active FROM pg_replication_slots WHERE slot_name = '"+slot+"'")
		return got == "f", got
	})
	if r := start(t, b, sd, "--timeout", "2m"); r.Code != 0 {
		t.Fatalf("rerun once the slot is free: %s", r)
	}
	checkConverged(t, b)
	noLeftovers(t, b)
}

// TestHandBuiltStandbyOnSdrStreamIsRebuilt: DR standbys that sdr did not
// build (no sdr marker) but that stream through sdr's own slot and
// application name, as a standby built by hand with sdr's settings does,
// may be replaced while they run. The rebuild must not refuse them in
// 7_build_standby after 5_stop_cluster has stopped them (once stopped,
// nothing in them shows that stream any more): 5_stop_cluster marks them
// first.
func TestHandBuiltStandbyOnSdrStreamIsRebuilt(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := newBed(t)
	seedData(t, b, 1)
	mustStartBoth(t, b)
	for _, n := range []string{bed.DC2A, bed.DC2B} {
		if err := os.Remove(filepath.Join(b.Node(n).DataDir, "sdr_copy")); err != nil {
			t.Fatal(err)
		}
	}
	r, pj := planDocOf(t, b.ConfigPath, standbySide(b), "start", "--role", "standby", "--restart")
	if r.Code != 0 {
		t.Fatalf("plan start --role standby --restart: %s", r)
	}
	for _, it := range pj.step("5_stop_cluster").Items {
		if it.Action != "stop" || !strings.Contains(it.Why, "sdr's own stream") || !strings.Contains(it.What, "sdr_copy") {
			t.Errorf("5_stop_cluster plan item %+v: want a stop that writes sdr's marker first", it)
		}
	}
	restartPrimaryFirst(t, b)
	for _, n := range []string{bed.DC2A, bed.DC2B} {
		raw, err := os.ReadFile(filepath.Join(b.Node(n).DataDir, "sdr_copy"))
		if err != nil || !strings.Contains(string(raw), "node="+n) || strings.Contains(string(raw), "copy=adopted-") {
			t.Errorf("%s: want a new copy with sdr's marker, got %q (%v)", n, raw, err)
		}
	}
	log, _ := os.ReadFile(b.LogFileStandby)
	if c := strings.Count(string(log), "marked as sdr's before it is stopped"); c != 2 {
		t.Errorf("the standby side's log says %d times that it marked a standby before stopping it, want 2 (dc2-a and dc2-b)", c)
	}
	if got := sql(t, b, bed.DC1A, "SELECT count(*) FROM pg_stat_replication WHERE application_name = '"+mainApp(b)+"' AND state = 'streaming'"); got != "1" {
		t.Errorf("dc1-a: %s streaming walsenders for dc2-a, want 1", got)
	}
}

// TestCopyThatNeverRanIsReplaced: a copy that inherits a setting from the
// primary's postgresql.auto.conf that keeps it from starting on the DR
// node (listen_addresses set with ALTER SYSTEM on the primary, which has
// not restarted since) is swapped in and fails to start. Once the
// operator has put the primary's setting back, --restart copies the node
// again: the failed copy still has backup_label and standby.signal, so no
// server ever ran in it, although its pg_control shows the primary's
// "in production".
func TestCopyThatNeverRanIsReplaced(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := startedBed(t, bed.Options{}, 1)
	// 192.0.2.1 (TEST-NET-1) is no address of this machine.
	sql(t, b, bed.DC1A, "ALTER SYSTEM SET listen_addresses = '192.0.2.1'")
	r := start(t, b, standbySide(b), "--restart", "--timeout", "1m")
	if r.Code != 1 {
		t.Fatalf("a copy that cannot listen: want exit 1 (its start fails), got %s", r)
	}
	if !strings.Contains(r.Stderr, "dc2-a") {
		t.Errorf("the failure does not name dc2-a:\n%s", r.Stderr)
	}
	dc2a := b.Node(bed.DC2A)
	if _, err := os.Stat(filepath.Join(dc2a.DataDir, "backup_label")); err != nil {
		t.Fatalf("the failed copy should still hold backup_label: %v", err)
	}
	if got := controlField(t, b, dc2a.DataDir, "Database cluster state"); got != "in production" {
		t.Fatalf("the failed copy's pg_control says %q; this test needs the primary's \"in production\"", got)
	}

	sql(t, b, bed.DC1A, "ALTER SYSTEM RESET listen_addresses")
	if r := start(t, b, standbySide(b), "--restart", "--timeout", "2m"); r.Code != 0 {
		t.Fatalf("--restart after the primary's setting was put back should copy dc2-a again: %s", r)
	}
	checkConverged(t, b)
}
