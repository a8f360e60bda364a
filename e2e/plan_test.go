package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pgsdr/sdr/e2e/bed"
)

// planItem and planStep are the parts of `sdr plan --json` the tests read (docs/plan.md).
type planItem struct {
	Kind    string   `json:"kind"`
	Action  string   `json:"action"`
	Node    string   `json:"node"`
	Name    string   `json:"name"`
	What    string   `json:"what"`
	Why     string   `json:"why"`
	Old     string   `json:"old"`
	New     string   `json:"new"`
	Where   string   `json:"where"`
	Lines   []string `json:"lines"`
	Bytes   int64    `json:"bytes"`
	Seconds float64  `json:"seconds"`
	Basis   string   `json:"basis"`
}

type planStep struct {
	Step   string     `json:"step"`
	Status string     `json:"status"`
	Items  []planItem `json:"items"`
	Error  *struct {
		Message string `json:"message"`
	} `json:"error"`
}

type planJSON struct {
	Version         int        `json:"version"`
	Allowed         bool       `json:"allowed"`
	RefusedAt       string     `json:"refused_at"`
	StateFileExists bool       `json:"state_file_exists"`
	Steps           []planStep `json:"steps"`
}

func (p planJSON) step(name string) planStep {
	for _, s := range p.Steps {
		if s.Step == name {
			return s
		}
	}
	return planStep{}
}

func (p planJSON) statuses() map[string]string {
	out := map[string]string{}
	for _, s := range p.Steps {
		out[s.Step] = s.Status
	}
	return out
}

// plan runs `sdr plan` for one side with config (never with a log file:
// a plan writes nothing of its own).
func plan(t *testing.T, config string, s side, args ...string) result {
	t.Helper()
	return sdr(t, sdrBin, nil, append([]string{"--config", config, "--state", s.state, "plan"}, args...)...)
}

func planDocOf(t *testing.T, config string, s side, args ...string) (result, planJSON) {
	t.Helper()
	r := plan(t, config, s, append(args, "--json")...)
	var p planJSON
	if err := json.Unmarshal([]byte(r.Stdout), &p); err != nil {
		t.Fatalf("sdr plan --json is not JSON: %v\n%s", err, r)
	}
	return r, p
}

// sdrBlock is sdr's pg_hba.conf block for the bed, written out here and
// not taken from sdr's code: every node of the bed is on 127.0.0.1.
func sdrBlock(b *bed.Bed) []string {
	return []string{
		"# BEGIN sdr " + b.Name,
		"host    replication     " + b.ReplicationUser + "    127.0.0.1/32    scram-sha-256",
		"host    postgres    " + b.ReplicationUser + "    127.0.0.1/32    scram-sha-256",
		"# END sdr " + b.Name,
	}
}

// nodeSnap is what a plan must leave as it was on one node.
type nodeSnap struct {
	Files    map[string]string // configuration files of the data directory: sha256, or "missing"
	DataDir  []string          // the data directory's entries
	Beside   []string          // the entries of the directory that holds it (a new <data>.sdr would show)
	Work     []string          // every path under <data>.sdr with the sha256 of each file, nil when absent
	Control  map[string]string // pg_controldata, without what checkpoints and restartpoints change on their own
	PID      string            // the postmaster's pid
	Database string            // slots, roles and replication settings as PostgreSQL shows them
}

type bedSnap map[string]nodeSnap

// volatileControl are the pg_controldata fields a checkpoint or a
// restartpoint changes by itself, without anyone asking.
var volatileControl = regexp.MustCompile(`(?i)checkpoint|last modified|minimum recovery|redo|fake lsn|backup (start|end)`)

func snapshotBed(t *testing.T, b *bed.Bed) bedSnap { return snapshotNodes(t, b, bed.NodeNames...) }

func snapshotNodes(t *testing.T, b *bed.Bed, nodes ...string) bedSnap {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := bedSnap{}
	for _, name := range nodes {
		n := b.Node(name)
		s := nodeSnap{Files: map[string]string{}, Control: map[string]string{}}
		for _, f := range []string{"pg_hba.conf", "pg_ident.conf", "postgresql.conf", "postgresql.auto.conf", "standby.signal", "sdr_copy"} {
			s.Files[f] = digest(filepath.Join(n.DataDir, f))
		}
		s.DataDir = entries(t, n.DataDir)
		s.Beside = entries(t, filepath.Dir(n.DataDir))
		if _, err := os.Stat(n.DataDir + ".sdr"); err == nil {
			s.Work = []string{}
			_ = filepath.WalkDir(n.DataDir+".sdr", func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if !d.IsDir() {
					p += " " + digest(p)
				}
				s.Work = append(s.Work, p)
				return nil
			})
		}
		cd, err := b.AsPostgres(ctx, filepath.Join(bed.BinDir, "pg_controldata"), "-D", n.DataDir)
		if err != nil {
			t.Fatalf("pg_controldata of %s: %v", name, err)
		}
		for _, l := range strings.Split(cd, "\n") {
			k, v, ok := strings.Cut(l, ":")
			if ok && (!volatileControl.MatchString(k) || strings.Contains(k, "TimeLineID")) {
				s.Control[strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
		}
		if raw, err := os.ReadFile(filepath.Join(n.DataDir, "postmaster.pid")); err == nil {
			s.PID = strings.SplitN(string(raw), "\n", 2)[0]
			s.Database = sql(t, b, name, `SELECT (SELECT coalesce(string_agg(slot_name, ',' ORDER BY slot_name), '') FROM pg_replication_slots) || ' | ' ||
				(SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles) || ' | ' ||
				(SELECT string_agg(name || '=' || setting || '@' || coalesce(sourcefile, source), ',' ORDER BY name) FROM pg_settings
					WHERE name IN ('wal_keep_size', 'primary_conninfo', 'primary_slot_name', 'hot_standby_feedback', 'hba_file'))`)
		}
		out[name] = s
	}
	return out
}

func digest(p string) string {
	raw, err := os.ReadFile(p)
	if err != nil {
		return "missing"
	}
	return fmt.Sprintf("%x", sha256.Sum256(raw))
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("listing %s: %v", dir, err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

// sameBed fails the test, naming what changed, when after differs from before.
func sameBed(t *testing.T, what string, before, after bedSnap) {
	t.Helper()
	for name := range before {
		if !reflect.DeepEqual(before[name], after[name]) {
			bj, _ := json.MarshalIndent(before[name], "", " ")
			aj, _ := json.MarshalIndent(after[name], "", " ")
			t.Errorf("%s changed %s:\nbefore %s\nafter  %s", what, name, bj, aj)
		}
	}
}

func stateFileGone(t *testing.T, s side) {
	t.Helper()
	for _, p := range []string{s.state, s.state + ".lock", s.state + ".progress"} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s exists after a plan (%v)", p, err)
		}
	}
}

// TestPlan: `sdr plan` runs the checks against the real bed, says what
// each step would do, exits 0 or 2 naming the step that refuses, and
// changes nothing: every node's configuration files, the file lists of
// its data and work directories, pg_controldata, its postmaster and what
// PostgreSQL shows of slots, roles and replication settings are compared
// before and after, and so are the state files.
func TestPlan(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := newBed(t)
	p, s := primarySide(b), standbySide(b)
	block := sdrBlock(b)

	// A fresh bed: the primary side's plan lists every step and the
	// exact block that 5_open_access would add, on both primary-cluster nodes.
	before := snapshotBed(t, b)
	r := plan(t, b.ConfigPath, p, "start", "--role", "primary")
	if r.Code != 0 {
		t.Fatalf("plan start --role primary on a fresh bed: %s", r)
	}
	for _, want := range append([]string{"1_prepare", "2_check_cluster", "3_prepare_replication", "4_retain_wal", "5_open_access",
		"6_set_guc", "7_build_standby", "8_wait_standby", "9_finish", "CREATE ROLE", mainSlot(b), "wal_keep_size: 256 MB",
		"Allowed: sdr start --role primary would go ahead now"}, block...) {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("the primary side's plan does not show %q:\n%s", want, r.Stdout)
		}
	}
	r, pj := planDocOf(t, b.ConfigPath, p, "start", "--role", "primary")
	if r.Code != 0 || !pj.Allowed || pj.StateFileExists || pj.Version != 1 {
		t.Fatalf("plan --json: %s", r)
	}
	var hbaNodes []string
	for _, it := range pj.step("5_open_access").Items {
		if it.Kind != "hba" || it.Action != "insert" || !reflect.DeepEqual(it.Lines, block) || !strings.Contains(it.Where, "at the end") {
			t.Errorf("5_open_access item %+v, want the block %q inserted at the end", it, block)
		}
		hbaNodes = append(hbaNodes, it.Node)
	}
	if !reflect.DeepEqual(hbaNodes, []string{bed.DC1A, bed.DC1B}) {
		t.Errorf("5_open_access plans the block on %v", hbaNodes)
	}
	sameBed(t, "plan start --role primary", before, snapshotBed(t, b))
	stateFileGone(t, p)

	// The standby side before the primary side ran: its check cannot log
	// in as the replication user yet. Refused, naming the step.
	r = plan(t, b.ConfigPath, s, "start", "--role", "standby", "--timeout", "2s")
	if r.Code != 2 || !strings.Contains(r.Stdout, "REFUSED at 2_check_cluster") || !strings.Contains(r.Stderr, "would stop at 2_check_cluster") {
		t.Fatalf("plan start --role standby before the primary side ran: %s", r)
	}
	sameBed(t, "a refused plan start --role standby", before, snapshotBed(t, b))
	stateFileGone(t, s)

	// The primary side runs (its step 8 times out: nobody copies yet).
	if r := start(t, b, p, "--timeout", "2s"); r.Code != 1 || !strings.Contains(r.Stdout, "failed at 8_wait_standby") {
		t.Fatalf("start --role primary with nobody to copy: %s", r)
	}
	primaryState := digest(p.state)
	before = snapshotBed(t, b)
	r = plan(t, b.ConfigPath, s, "start", "--role", "standby")
	if r.Code != 0 {
		t.Fatalf("plan start --role standby: %s", r)
	}
	for _, want := range append([]string{"5_stop_cluster", "7_build_standby", "holds another cluster", "pg_basebackup", "bytes to copy:",
		"estimate based on: an assumed rate of 100.0 MiB/s", "primary_slot_name: (not set) -> " + mainSlot(b)}, block...) {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("the standby side's plan does not show %q:\n%s", want, r.Stdout)
		}
	}
	r, pj = planDocOf(t, b.ConfigPath, s, "start", "--role", "standby", "--copy-rate", "1MiB")
	want := map[string]string{"1_prepare": "checked", "2_check_cluster": "checked", "3_prepare_replication": "would_change", "4_retain_wal": "skipped",
		"5_stop_cluster": "would_change", "6_set_guc": "would_change", "7_build_standby": "would_change", "8_start_cluster": "would_change", "9_finish": "would_change"}
	if r.Code != 0 || !reflect.DeepEqual(pj.statuses(), want) {
		t.Fatalf("plan start --role standby --json: statuses %v, want %v\n%s", pj.statuses(), want, r)
	}
	var stopped []string
	for _, it := range pj.step("5_stop_cluster").Items {
		if it.Action != "stop" || !strings.Contains(it.Why, "other-cluster") {
			t.Errorf("5_stop_cluster item %+v: want stop, with the classifier's verdict", it)
		}
		stopped = append(stopped, it.Node)
	}
	if !reflect.DeepEqual(stopped, []string{bed.DC2B, bed.DC2A}) {
		t.Errorf("5_stop_cluster lists %v, want the cascade, then the main standby", stopped)
	}
	copies := map[string]planItem{}
	for _, it := range pj.step("7_build_standby").Items {
		switch it.Kind {
		case "copy":
			copies[it.Node] = it
		case "hba":
			if !reflect.DeepEqual(it.Lines, block) {
				t.Errorf("7_build_standby pg_hba.conf lines of %s: %q, want %q", it.Node, it.Lines, block)
			}
		}
	}
	// The primary's databases as PostgreSQL measures them (a little may
	// have been written since the plan measured).
	var dbBytes int64
	fmt.Sscan(sql(t, b, bed.DC1A, "SELECT sum(pg_tablespace_size(oid)) FROM pg_tablespace WHERE spcname <> 'pg_global'"), &dbBytes)
	for _, n := range []string{bed.DC2A, bed.DC2B} {
		c, ok := copies[n]
		secs := float64(c.Bytes) / (1 << 20)
		if !ok || c.Bytes < dbBytes*9/10 || c.Bytes > dbBytes*11/10 || c.Seconds < secs*0.99 || c.Seconds > secs*1.01 ||
			!strings.Contains(c.Basis, "assumed rate of 1.0 MiB/s") {
			t.Errorf("copy of %s: %+v; want about the primary's %d bytes at the assumed 1 MiB/s", n, c, dbBytes)
		}
	}
	sameBed(t, "plan start --role standby", before, snapshotBed(t, b))
	stateFileGone(t, s)
	if digest(p.state) != primaryState {
		t.Errorf("a plan of the standby side changed the primary side's state file")
	}

	// Broken preconditions: a wrong replication password, then the primary down.
	wrongPW := filepath.Join(t.TempDir(), "wrong.pass")
	writeFile(t, wrongPW, "not-the-password\n")
	badCfg := writeCfg(t, b, t.TempDir(), func(m cfgMap) { sub(m, "replication")["password_file"] = wrongPW })
	r = plan(t, badCfg, s, "start", "--role", "standby", "--timeout", "2s")
	if r.Code != 2 || !strings.Contains(r.Stdout, "REFUSED at 2_check_cluster") || !strings.Contains(r.Stdout, "password authentication failed") {
		t.Fatalf("plan with a wrong replication password: %s", r)
	}
	sameBed(t, "a plan with a wrong password", before, snapshotBed(t, b))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := b.PGCtl(ctx, bed.DC1A, "stop", "-m", "fast"); err != nil {
		t.Fatal(err)
	}
	// The recorded start resumes at 8_wait_standby, which needs the primary too;
	// with --restart, 2_check_cluster refuses first.
	r = plan(t, b.ConfigPath, p, "start", "--role", "primary")
	if r.Code != 2 || !strings.Contains(r.Stdout, "REFUSED at 8_wait_standby") || !strings.Contains(r.Stdout, bed.DC1A) {
		t.Errorf("plan start --role primary with the primary down: %s", r)
	}
	r = plan(t, b.ConfigPath, p, "start", "--role", "primary", "--restart")
	if r.Code != 2 || !strings.Contains(r.Stdout, "REFUSED at 2_check_cluster") || !strings.Contains(r.Stdout, "PostgreSQL is not running") ||
		!strings.Contains(r.Stdout, bed.DC1A) {
		t.Errorf("plan start --role primary --restart with the primary down: %s", r)
	}
	r = plan(t, b.ConfigPath, s, "start", "--role", "standby", "--timeout", "2s")
	if r.Code != 2 || !strings.Contains(r.Stdout, "REFUSED at 2_check_cluster") || !strings.Contains(r.Stdout, "no primary") {
		t.Errorf("plan start --role standby with the primary down: %s", r)
	}
	if err := b.PGCtl(ctx, bed.DC1A, "start"); err != nil {
		t.Fatal(err)
	}
	if digest(p.state) != primaryState {
		t.Errorf("a plan changed the primary side's state file")
	}
	stateFileGone(t, s)

	// A running pair: what the run did is what the plan said.
	if pr, sr := startBoth(t, b); pr.Code != 0 || sr.Code != 0 {
		t.Fatalf("start both:\n%s\n%s", pr, sr)
	}
	for _, n := range []string{bed.DC1A, bed.DC1B} {
		raw, err := os.ReadFile(filepath.Join(b.Node(n).DataDir, "pg_hba.conf"))
		if err != nil || !strings.HasSuffix(string(raw), strings.Join(block, "\n")+"\n") {
			t.Errorf("%s's pg_hba.conf does not end with the block the plan showed (%v)", n, err)
		}
	}
	primaryState, standbyState := digest(p.state), digest(s.state)
	for _, n := range []string{bed.DC2A, bed.DC2B} {
		trashEmptied(t, b.Node(n).DataDir+".sdr/trash") // 9_finish's delete goes on in the background
	}
	before = snapshotBed(t, b)
	r, pj = planDocOf(t, b.ConfigPath, p, "stop", "--role", "primary")
	if r.Code != 0 || !pj.Allowed {
		t.Fatalf("plan stop --role primary: %s", r)
	}
	for _, it := range pj.step("3_close_access").Items {
		if it.Action != "remove" || !reflect.DeepEqual(it.Lines, block) {
			t.Errorf("3_close_access item %+v: want the block removed", it)
		}
	}
	var dropped []string
	for _, it := range pj.step("4_drop_slots").Items {
		if it.Action == "drop" {
			dropped = append(dropped, it.Node+":"+it.Name)
		}
	}
	if !reflect.DeepEqual(dropped, []string{bed.DC1A + ":" + mainSlot(b)}) {
		t.Errorf("4_drop_slots drops %v", dropped)
	}
	r, pj = planDocOf(t, b.ConfigPath, s, "stop", "--role", "standby")
	if r.Code != 0 || !pj.Allowed || pj.step("3_detach").Status != "would_change" {
		t.Fatalf("plan stop --role standby: %s", r)
	}
	r = plan(t, b.ConfigPath, s, "failover")
	if r.Code != 2 || !strings.Contains(r.Stdout, "REFUSED at 2_check_cluster") || !strings.Contains(r.Stdout, "answers as a primary") {
		t.Errorf("plan failover while the primary runs: %s", r)
	}
	r = plan(t, b.ConfigPath, s, "start", "--role", "standby")
	if r.Code != 0 || !strings.Contains(r.Stdout, "has nothing to do") {
		t.Errorf("plan of a finished start: %s", r)
	}
	sameBed(t, "plans on a running pair", before, snapshotBed(t, b))
	if digest(p.state) != primaryState || digest(s.state) != standbyState {
		t.Errorf("a plan changed a state file")
	}
	if got := sql(t, b, bed.DC1A, "SELECT count(*) FROM pg_stat_replication WHERE application_name = '"+mainApp(b)+"' AND state = 'streaming'"); got != "1" {
		t.Errorf("the main standby no longer streams after the plans: %s", got)
	}

	// The primary data centre is lost: the failover's plan needs
	// --accept-data-loss, then says it cannot fence the old primary and
	// which node it would promote, with the data-loss window.
	killDC1(t, b)
	dr := []string{bed.DC2A, bed.DC2B}
	before = snapshotNodes(t, b, dr...)
	r = plan(t, b.ConfigPath, s, "failover")
	if r.Code != 2 || !strings.Contains(r.Stdout, "REFUSED at 2_check_cluster") || !strings.Contains(r.Stdout, "--accept-data-loss") {
		t.Errorf("plan failover with the primary lost, without --accept-data-loss: %s", r)
	}
	r, pj = planDocOf(t, b.ConfigPath, s, "failover", "--accept-data-loss")
	// 3_fence can reach no node of data centre 1, so it changes nothing.
	if r.Code != 0 || !pj.Allowed || pj.step("3_fence").Status != "no_change" || pj.step("4_promote").Status != "would_change" {
		t.Fatalf("plan failover --accept-data-loss: %s", r)
	}
	for _, it := range pj.step("3_fence").Items {
		if it.Action != "none" || !strings.Contains(it.What, "NOT fenced") {
			t.Errorf("3_fence item %+v: data centre 1's SSH is down, so it cannot be fenced", it)
		}
	}
	var promoted, window bool
	for _, it := range pj.step("4_promote").Items {
		promoted = promoted || (it.Action == "promote" && it.Node == bed.DC2A)
		window = window || (it.Kind == "wal" && strings.Contains(it.What, "data-loss window: the main standby received WAL up to"))
	}
	if !promoted || !window {
		t.Errorf("4_promote items %+v: want the promotion of %s and the data-loss window", pj.step("4_promote").Items, bed.DC2A)
	}
	sameBed(t, "plans of a failover", before, snapshotNodes(t, b, dr...))
	if digest(s.state) != standbyState {
		t.Errorf("a failover plan changed the DR side's state file")
	}
	if got := sql(t, b, bed.DC2A, "SELECT pg_is_in_recovery()"); got != "t" {
		t.Errorf("dc2-a left recovery after a plan")
	}
}
