package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/e2e/bed"
)

// TestKillDuringBasebackup kills sdr with SIGKILL while pg_basebackup
// copies the main standby, then reruns the same command, on a bed of each
// flavour (bedFlavours).
func TestKillDuringBasebackup(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	needE2E(t)
	for _, fl := range bedFlavours(t) {
		t.Run(fl.name, func(t *testing.T) { testKillDuringBasebackup(t, fl) })
	}
}

func testKillDuringBasebackup(t *testing.T, fl flavour) {
	if fl.opts.Flavour == bed.FlavourDebian {
		keepDebianMain(t)
	}
	b := newBedWith(t, fl.opts)
	seedData(t, b, 15) // a copy that takes long enough to be killed in the middle
	origSysID := sql(t, b, bed.DC2A, "SELECT system_identifier FROM pg_control_system()")
	dc2a := b.Node(bed.DC2A)
	newDir := dc2a.DataDir + ".sdr/new"

	// The primary side runs in the background and waits for the standby.
	primaryDone := make(chan result, 1)
	go func() { primaryDone <- start(t, b, primarySide(b), "--timeout", "3m") }()

	sd := standbySide(b)
	cmd := exec.Command(sdrBin, "--config", b.ConfigPath, "--state", sd.state, "--log-file", sd.log, "start", "--role", "standby", "--timeout", "3m")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("pg_basebackup never started:\n%s", out.String())
		}
		if fi, err := os.Stat(filepath.Join(newDir, "base")); err == nil && fi.IsDir() {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if cmd.ProcessState.Success() {
		t.Fatalf("sdr was not killed:\n%s", out.String())
	}
	if _, err := os.Stat(dc2a.DataDir + ".sdr/new.complete"); err == nil {
		t.Logf("note: the copy was already complete when sdr was killed")
	} else if _, err := os.Stat(newDir); err == nil {
		t.Logf("sdr killed with a half-built copy in %s", newDir)
	}

	// The previous data directory is intact and in place.
	sysid, err := b.AsPostgres(context.Background(), filepath.Join(bed.BinDir, "pg_controldata"), "-D", dc2a.DataDir)
	if err != nil || !strings.Contains(sysid, origSysID) {
		t.Fatalf("dc2-a's previous data directory is not intact after the kill: %v\n%s", err, sysid)
	}
	d := status(t, "", sd)
	if rec := findStep(d, "7_build_standby"); rec == nil || rec.Status != "started" || !rec.Interrupted {
		t.Fatalf("7_build_standby after the kill: %+v, want started and interrupted", rec)
	}
	if got := d.state("standby"); got != "restore" {
		t.Errorf("standby state after the kill %q, want restore", got)
	}
	// The text says so too, naming the run that is gone and its pid.
	txt := sdr(t, sdrBin, nil, "--state", sd.state, "status")
	for _, want := range []string{"INTERRUPTED", "interrupted: 7_build_standby is recorded as started", fmt.Sprintf("pid %d", cmd.Process.Pid)} {
		if txt.Code != 0 || !strings.Contains(txt.Stdout, want) {
			t.Errorf("status after kill -9 does not say %q:\n%s", want, txt)
		}
	}

	r := start(t, b, sd, "--timeout", "3m")
	if r.Code != 0 {
		t.Fatalf("rerun after the kill: %s", r)
	}
	d = status(t, "", sd)
	recorded := false
	for _, h := range d.History {
		recorded = recorded || (h.From == "restore" && h.To == "restore_fail" && h.Step == "7_build_standby")
	}
	if !recorded {
		t.Errorf("the rerun did not record the interruption (restore -> restore_fail by 7_build_standby): %+v", d.History)
	}
	for _, s := range stepNames["standby"] {
		rec := findStep(d, s)
		want := 1
		if s == "7_build_standby" {
			want = 2
		}
		if rec == nil || rec.Status != "done" || rec.Attempts != want {
			t.Errorf("step %s after the rerun: %+v, want done with %d attempts (resume at step 7)", s, rec, want)
		}
	}
	if _, err := os.Stat(newDir); !os.IsNotExist(err) {
		t.Errorf("half-built copy %s still there (%v)", newDir, err)
	}
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range cmdlines {
		raw, err := os.ReadFile(p)
		if err == nil && bytes.Contains(raw, []byte("pg_basebackup")) && bytes.Contains(raw, []byte(newDir)) {
			t.Errorf("pg_basebackup still running: %s", bytes.ReplaceAll(raw, []byte{0}, []byte{' '}))
		}
	}
	if p := <-primaryDone; p.Code != 0 {
		t.Fatalf("primary side: %s", p)
	}
	checkConverged(t, b)
	if b.Flavour == bed.FlavourDebian {
		checkDebianDR(t, b)
	}
}

// TestPrimaryUnreachableDuringBuild freezes the primary while the standby
// builds: the standby ends in restore_fail, and a rerun once the primary
// is back reaches recovery. The primary side, started alone first, times
// out in backup_fail and reaches archive on a rerun after the standby is fixed.
func TestPrimaryUnreachableDuringBuild(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := newBed(t)
	seedData(t, b, 1)

	p := start(t, b, primarySide(b), "--timeout", "5s")
	if p.Code != 1 {
		t.Fatalf("primary without a standby: want exit 1, got %s", p)
	}
	if got := status(t, "", primarySide(b)).state("primary"); got != "backup_fail" {
		t.Fatalf("primary state %q, want backup_fail", got)
	}

	// Bring the standby side up to its build, then stop it there.
	r := startWith(t, sdrBinFP, []string{"SDR_FAILPOINT=7_build_standby:before:kill"}, b.ConfigPath, standbySide(b), "--timeout", "1m")
	if r.Code == 0 || r.Code == 1 {
		t.Fatalf("standby with a kill failpoint at 7: %s", r)
	}

	pids := postgresPIDs(t, b.Node(bed.DC1A).DataDir)
	signalAll(pids, syscall.SIGSTOP)
	frozen := true
	defer func() {
		if frozen {
			signalAll(pids, syscall.SIGCONT)
		}
	}()
	r = start(t, b, standbySide(b), "--timeout", "30s")
	if r.Code != 1 {
		t.Fatalf("standby with the primary frozen: want exit 1, got %s", r)
	}
	if got := status(t, "", standbySide(b)).state("standby"); got != "restore_fail" {
		t.Fatalf("standby state %q, want restore_fail\n%s", got, r)
	}
	if !strings.Contains(r.Stderr, "dc1-a") {
		t.Errorf("the error does not name the primary dc1-a:\n%s", r.Stderr)
	}
	signalAll(pids, syscall.SIGCONT)
	frozen = false

	if r := start(t, b, standbySide(b), "--timeout", "2m"); r.Code != 0 {
		t.Fatalf("standby rerun after the primary is back: %s", r)
	}
	if p := start(t, b, primarySide(b), "--timeout", "2m"); p.Code != 0 {
		t.Fatalf("primary rerun after the standby is fixed: %s", p)
	}
	checkConverged(t, b)
}

// TestConcurrentRuns: a second run on the same state file fails fast and
// names the holder; after kill -9 of the holder, the next run takes over.
func TestConcurrentRuns(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := newBed(t)
	seedData(t, b, 1)
	ps := primarySide(b)
	first := exec.Command(sdrBin, "--config", b.ConfigPath, "--state", ps.state, "start", "--role", "primary", "--timeout", "5m")
	var out bytes.Buffer
	first.Stdout, first.Stderr = &out, &out
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	defer first.Process.Kill()
	// The first run holds the lock while it waits for the (absent) standby.
	eventually(t, time.Minute, "the first run reaches 8_wait_standby", func() (bool, string) {
		r := sdr(t, sdrBin, nil, "--state", ps.state, "status", "--json")
		return strings.Contains(r.Stdout, `"full_backup"`), r.Stdout
	})
	second := start(t, b, ps)
	if second.Code != 2 {
		t.Errorf("second run: want exit 2, got %s", second)
	}
	want := fmt.Sprintf("another sdr run (pid %d on host", first.Process.Pid)
	if !strings.Contains(second.Stderr, want) {
		t.Errorf("second run does not name the holder (%q):\n%s", want, second.Stderr)
	}
	if second.Took > 10*time.Second {
		t.Errorf("second run took %s to give up", second.Took)
	}
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()

	p, s := startBoth(t, b, "--timeout", "2m")
	if p.Code != 0 || s.Code != 0 {
		t.Fatalf("runs after kill -9:\nprimary: %s\nstandby: %s", p, s)
	}
	if !strings.Contains(p.Stderr, "took over the lock") || !strings.Contains(p.Stderr, strconv.Itoa(first.Process.Pid)) {
		t.Errorf("the run after kill -9 does not report taking the lock over:\n%s", p.Stderr)
	}
	checkConverged(t, b)
}

// TestSigterm: SIGTERM, or SIGHUP from a closed terminal, during a step
// stops it at its next safe point; the failure is recorded (type
// interrupted, with its *_fail state) and the process exits 1; the same
// command then resumes.
func TestSigterm(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) { signalCase(t, sig) })
	}
}

func signalCase(t *testing.T, sig syscall.Signal) {
	b := newBed(t)
	seedData(t, b, 1)
	ps := primarySide(b)
	cmd := exec.Command(sdrBin, "--config", b.ConfigPath, "--state", ps.state, "--log-file", ps.log, "start", "--role", "primary", "--timeout", "5m")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	eventually(t, time.Minute, "the run reaches 8_wait_standby", func() (bool, string) {
		r := sdr(t, sdrBin, nil, "--state", ps.state, "status", "--json")
		return strings.Contains(r.Stdout, `"full_backup"`), r.Stdout
	})
	sent := time.Now()
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Fatalf("exit %d after %s, want 1:\n%s", code, sig, out.String())
	}
	if took := time.Since(sent); took > 15*time.Second {
		t.Errorf("took %s to stop after %s", took, sig)
	}
	d := status(t, "", ps)
	rec := findStep(d, "8_wait_standby")
	if rec == nil || rec.Status != "failed" || rec.Error == nil || rec.Error.Type != "interrupted" {
		t.Fatalf("8_wait_standby after %s: %+v", sig, rec)
	}
	if got := d.state("primary"); got != "backup_fail" {
		t.Errorf("state after %s %q, want backup_fail", sig, got)
	}
	p, s := startBoth(t, b, "--timeout", "2m")
	if p.Code != 0 || s.Code != 0 {
		t.Fatalf("reruns after %s:\nprimary: %s\nstandby: %s", sig, p, s)
	}
	checkConverged(t, b)
}

// TestStartWithTheDRStandbySynchronous: the primary's
// synchronous_standby_names names the DR main standby's application name
// (synchronous replication to the DR side). sdr's own changes on the
// primary (creating its replication role) do not wait for that standby,
// which cannot confirm them before it is built: both starts finish.
func TestStartWithTheDRStandbySynchronous(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := newBed(t)
	seedData(t, b, 1)
	app := cluster.AppName(b.Name, bed.DC2A)
	sql(t, b, bed.DC1A, "ALTER SYSTEM SET synchronous_standby_names = '"+app+"'")
	sql(t, b, bed.DC1A, "SELECT pg_reload_conf()")
	if p, s := startBoth(t, b, "--timeout", "2m"); p.Code != 0 || s.Code != 0 {
		t.Fatalf("starts with %s synchronous:\nprimary: %s\nstandby: %s", app, p, s)
	}
	checkConverged(t, b)
	if got := sql(t, b, bed.DC1A, "SELECT sync_state FROM pg_stat_replication WHERE application_name = '"+app+"'"); got != "sync" {
		t.Errorf("dc2-a's sync_state on dc1-a = %q, want sync", got)
	}
}
