package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pgsdr/sdr/store"
	"github.com/pgsdr/sdr/workflow"
)

// planJSONKeys is the documented top level of `plan --json` (docs/plan.md).
// Changing it breaks scripts: add fields only, and bump PlanJSONVersion otherwise.
var planJSONKeys = []string{"version", "pair", "command", "config", "state_file", "state_file_exists", "state", "lock",
	"workflow", "action", "role", "allowed", "refused_at", "refusal", "inputs_changed", "already_complete", "superseded_by", "resumes_at", "steps"}

// planDoc runs `sdr plan ... --json` and decodes what it printed.
func planDoc(t *testing.T, args ...string) (int, PlanDoc, map[string]json.RawMessage, string) {
	t.Helper()
	code, stdout, stderr := run(t, append(args, "--json")...)
	var doc PlanDoc
	var top map[string]json.RawMessage
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("exit %d, stdout is not a plan: %v\n%s\nstderr: %s", code, err, stdout, stderr)
	}
	if err := json.Unmarshal([]byte(stdout), &top); err != nil {
		t.Fatal(err)
	}
	return code, doc, top, stderr
}

func withPassword(t *testing.T, dir string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "pw"), []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestPlanRefusalsCreateNothing: every way a plan can be refused exits 2,
// names where, and leaves no state file and no lock file behind. The
// nodes of the config are local and down, so a plan that gets to the
// checks is refused at 2_check_cluster.
func TestPlanRefusalsCreateNothing(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	cfg := localConfig(t, dir)
	withPassword(t, dir)
	state := filepath.Join(dir, "never-ran.db")
	tests := []struct {
		name      string
		args      []string
		refusedAt string
		steps     int
	}{
		{"start, nodes down", []string{"plan", "start", "--role", "primary"}, "2_check_cluster", 9},
		{"start standby, nodes down", []string{"plan", "start", "--role", "standby", "--timeout", "200ms"}, "2_check_cluster", 9},
		{"stop without a start record", []string{"plan", "stop", "--role", "standby"}, "state file", 7},
		{"stop without a start record, told so", []string{"plan", "stop", "--role", "primary", "--no-start-record"}, "2_check_cluster", 7},
		{"failover, nodes down", []string{"plan", "failover", "--timeout", "200ms"}, "2_check_cluster", 6},
		{"switchover demote half", []string{"plan", "switchover", "--role", "primary"}, "2_check_cluster", 6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, doc, _, stderr := planDoc(t, append([]string{"--config", cfg, "--state", state}, tc.args...)...)
			if code != ExitUsage {
				t.Errorf("exit %d, want %d", code, ExitUsage)
			}
			if doc.Allowed || doc.RefusedAt != tc.refusedAt || doc.Refusal == nil || doc.Refusal.Message == "" {
				t.Errorf("allowed %t refused at %q (%+v), want refused at %q", doc.Allowed, doc.RefusedAt, doc.Refusal, tc.refusedAt)
			}
			if len(doc.Steps) != tc.steps || doc.StateFileExists || doc.Version != PlanJSONVersion || doc.Pair != "dc1_dc2" {
				t.Errorf("%d steps, state file exists %t, version %d, pair %q", len(doc.Steps), doc.StateFileExists, doc.Version, doc.Pair)
			}
			if !strings.Contains(stderr, "would stop at "+tc.refusedAt) {
				t.Errorf("stderr does not name %s:\n%s", tc.refusedAt, stderr)
			}
			for _, p := range []string{state, store.LockPath(state), store.ProgressPath(state)} {
				if _, err := os.Stat(p); !os.IsNotExist(err) {
					t.Errorf("the plan created %s (%v)", p, err)
				}
			}
		})
	}
}

func TestPlanJSONKeys(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	cfg := localConfig(t, dir)
	withPassword(t, dir)
	_, _, top, _ := planDoc(t, "--config", cfg, "--state", filepath.Join(dir, "s.db"), "plan", "start", "--role", "primary")
	var got []string
	for k := range top {
		got = append(got, k)
	}
	// inputs_changed and superseded_by are left out when empty.
	want := []string{}
	for _, k := range planJSONKeys {
		if k != "inputs_changed" && k != "superseded_by" {
			want = append(want, k)
		}
	}
	sort.Strings(got)
	sort.Strings(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("top-level keys\n got %v\nwant %v", got, want)
	}
	var all []string
	for _, typ := range []reflect.Type{reflect.TypeOf(PlanDoc{}), reflect.TypeOf(workflow.Plan{})} {
		for i := 0; i < typ.NumField(); i++ {
			if f := typ.Field(i); f.IsExported() && !f.Anonymous {
				all = append(all, strings.Split(f.Tag.Get("json"), ",")[0])
			}
		}
	}
	if !reflect.DeepEqual(all, planJSONKeys) {
		t.Errorf("PlanDoc and workflow.Plan json keys %v, want %v", all, planJSONKeys)
	}
}

func TestPlanWhileARunHoldsTheLock(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	cfg := localConfig(t, dir)
	withPassword(t, dir)
	state := filepath.Join(dir, "state.db")
	writeState(t, state, workflow.RolePrimary, false)
	before, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	lock, err := store.Acquire(state, store.Holder{PID: os.Getpid(), Host: hostname(t), Started: time.Now(), RunID: "run-9", Command: "start --role primary"}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	code, doc, _, _ := planDoc(t, "--config", cfg, "--state", state, "plan", "start", "--role", "primary")
	if code != ExitUsage || doc.RefusedAt != "lock" || doc.Lock == nil || doc.Lock.RunID != "run-9" || !doc.StateFileExists {
		t.Fatalf("exit %d, refused at %q, lock %+v", code, doc.RefusedAt, doc.Lock)
	}
	for _, e := range doc.Steps {
		if e.Status != workflow.PlanNotReached {
			t.Errorf("%s: %s while a run holds the lock", e.Step, e.Status)
		}
	}
	after, err := os.ReadFile(state)
	if err != nil || !bytes.Equal(before, after) {
		t.Fatalf("the plan changed the state file (%v)", err)
	}
}

func hostname(t *testing.T) string {
	h, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestPlanUsageErrors(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	cfg := localConfig(t, dir)
	withPassword(t, dir)
	state := filepath.Join(dir, "s.db")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no action", []string{"plan", "--role", "primary"}, "role"},
		{"no role", []string{"plan", "start"}, "role"},
		{"unknown role", []string{"plan", "start", "--role", "witness"}, "witness"},
		{"arguments", []string{"plan", "start", "--role", "primary", "extra"}, "extra"},
		{"replace-diverged on the primary side", []string{"plan", "start", "--role", "primary", "--replace-diverged", "dc2-a"}, "--replace-diverged"},
		{"replace-diverged of a primary-cluster node", []string{"plan", "start", "--role", "standby", "--replace-diverged", "dc1-a"}, "dc1-a"},
		{"failover on the primary side", []string{"plan", "failover", "--role", "primary"}, "DR side"},
		{"drop-role on the standby side", []string{"plan", "stop", "--role", "standby", "--drop-role"}, "--drop-role"},
		{"token on the demote half", []string{"plan", "switchover", "--role", "primary", "--token", "x"}, "--token"},
		{"bad copy rate", []string{"plan", "start", "--role", "standby", "--copy-rate", "fast"}, "--copy-rate"},
		{"zero timeout", []string{"plan", "start", "--role", "standby", "--timeout", "0s"}, "--timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := run(t, append([]string{"--config", cfg, "--state", state}, tc.args...)...)
			if code != ExitUsage || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want %d naming %q", code, stderr, ExitUsage, tc.want)
			}
			if _, err := os.Stat(state); !os.IsNotExist(err) {
				t.Fatalf("state file created (%v)", err)
			}
		})
	}
}

func TestParseRate(t *testing.T) {
	tests := []struct {
		in   string
		want float64
		ok   bool
	}{
		{"100MiB", 100 << 20, true},
		{"1.5 GiB/s", 1.5 * (1 << 30), true},
		{"50MB", 50e6, true},
		{"4096", 4096, true},
		{"12KiB/s", 12 << 10, true},
		{"0", 0, false},
		{"-5MiB", 0, false},
		{"fast", 0, false},
		{"", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseRate(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("parseRate(%q) = %v, %v; want %v ok=%t", tc.in, got, err, tc.want, tc.ok)
			}
		})
	}
}

func TestPrintPlan(t *testing.T) {
	doc := PlanDoc{Pair: "dc1_dc2", Command: "start --role standby", StateFile: "/s.db", Plan: &workflow.Plan{
		Workflow: "start/standby", Allowed: true, ResumesAt: "1_prepare", Steps: []workflow.PlanEntry{
			{Num: 1, Step: "1_prepare", Short: "validate", CheckOnly: true, Status: workflow.PlanChecked},
			{Num: 4, Step: "4_retain_wal", Short: "(nothing to do for this role)", Status: workflow.PlanSkipped},
			{Num: 7, Step: "7_build_standby", Short: "rebuild", Status: workflow.PlanWouldChange, OnStart: workflow.StateRestore, OnFail: workflow.StateRestoreFail,
				Items: []workflow.PlanItem{
					{Kind: "hba", Action: "insert", Node: "dc2-a", Name: "/d/pg_hba.conf", What: "sdr's block", Where: "at the end",
						Lines: []string{"# BEGIN sdr p", "host replication r 10.0.0.2/32 scram-sha-256", "# END sdr p"}},
					{Kind: "copy", Action: "create", Node: "dc2-a", What: "pg_basebackup", Bytes: 3 << 30, Seconds: 30.5, Basis: "an assumed rate of 100.0 MiB/s"},
					{Kind: "setting", Action: "set", Node: "dc2-a", Name: "primary_slot_name", Old: "(not set)", New: "s1", What: "primary_slot_name: (not set) -> s1"},
				},
				Notes: []string{"copying takes about 31s"}},
		}}}
	var b bytes.Buffer
	printPlan(&b, doc)
	out := b.String()
	for _, want := range []string{
		"Plan of sdr start --role standby for DR pair dc1_dc2",
		"/s.db (none yet: a run creates it)",
		"4_retain_wal     skipped",
		"7_build_standby  would change  rebuild",
		"state when it starts: restore; if it fails: restore_fail",
		"- dc2-a: sdr's block [insert]",
		"| host replication r 10.0.0.2/32 scram-sha-256",
		"bytes to copy: 3.0 GiB (3221225472 bytes), about 30.5s",
		"estimate based on: an assumed rate of 100.0 MiB/s",
		"- dc2-a: primary_slot_name: (not set) -> s1 [set]",
		"note: copying takes about 31s",
		"Allowed: sdr start --role standby would go ahead now, from 1_prepare.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the plan does not show %q:\n%s", want, out)
		}
	}
	doc.Plan.Allowed, doc.Plan.RefusedAt = false, "2_check_cluster"
	doc.Plan.Refusal = &workflow.ErrorRecord{Message: "PostgreSQL is not running\nin /d on dc1-a", Permanent: true}
	doc.Plan.Steps[0].Step = "2_check_cluster"
	b.Reset()
	printPlan(&b, doc)
	if !strings.Contains(b.String(), "REFUSED at 2_check_cluster: sdr start --role standby would stop there now: PostgreSQL is not running in /d on dc1-a") ||
		!strings.Contains(b.String(), "before changing anything") {
		t.Errorf("refused plan:\n%s", b.String())
	}
}
