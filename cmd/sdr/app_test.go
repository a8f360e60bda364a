package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/steps"
	"github.com/pgsdr/sdr/store"
	"github.com/pgsdr/sdr/workflow"
)

// clearEnv keeps the caller's SDR_* settings out of a test.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{"SDR_CONFIG", "SDR_STATE", "SDR_LOG_FILE", workflow.FailpointEnv} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
}

// run drives the real app and returns its exit code and output.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Run(context.Background(), append([]string{"sdr"}, args...), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestRunUsageErrors(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	state := filepath.Join(dir, "state.db")
	badYAML := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badYAML, []byte("name: [unclosed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	unknownField := filepath.Join(dir, "unknown.yaml")
	if err := os.WriteFile(unknownField, []byte("name: p\nno_such_setting: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.yaml")
	tests := []struct {
		name       string
		args       []string
		wantStderr string // a fragment the operator must see
	}{
		{"unknown role", []string{"--state", state, "start", "--role", "witness"}, "witness"},
		{"missing role", []string{"--state", state, "start"}, "role"},
		{"missing config", []string{"--state", state, "start", "--role", "primary"}, "--config"},
		{"missing config file", []string{"--state", state, "--config", missing, "start", "--role", "primary"}, missing},
		{"invalid YAML", []string{"--state", state, "--config", badYAML, "start", "--role", "standby"}, badYAML},
		{"unknown config field", []string{"--state", state, "--config", unknownField, "start", "--role", "primary"}, unknownField},
		{"config error in status", []string{"--state", state, "--config", badYAML, "status"}, badYAML},
		{"start with arguments", []string{"--state", state, "start", "--role", "primary", "extra"}, "extra"},
		{"unknown flag", []string{"--state", state, "status", "--bogus"}, "bogus"},
		{"--no-rewind on the primary side", []string{"--state", state, "start", "--role", "primary", "--no-rewind"}, "--no-rewind applies to --role standby only"},
		{"start --timeout 0s", []string{"--state", state, "start", "--role", "standby", "--timeout", "0s"}, "--timeout must be positive"},
		{"start negative --timeout", []string{"--state", state, "start", "--role", "primary", "--timeout", "-1s"}, "--timeout must be positive"},
		{"failover --timeout 0s", []string{"--state", state, "failover", "--timeout", "0s"}, "--timeout must be positive"},
		{"switchover --timeout 0s", []string{"--state", state, "switchover", "--role", "primary", "--timeout", "0s"}, "--timeout must be positive"},
		{"stop --timeout 0s", []string{"--state", state, "stop", "--role", "standby", "--timeout", "0s"}, "--timeout must be positive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := run(t, tc.args...)
			if code != ExitUsage {
				t.Errorf("exit %d, want %d; stderr %s", code, ExitUsage, stderr)
			}
			if !strings.Contains(stderr, tc.wantStderr) {
				t.Errorf("stderr does not name %q:\n%s", tc.wantStderr, stderr)
			}
			if _, err := os.Stat(state); err == nil {
				t.Errorf("a refused command created the state file")
			}
		})
	}
}

// localConfig writes a valid config whose nodes are local and unreachable
// (their sockets do not exist), and returns its path.
func localConfig(t *testing.T, dir string) string {
	t.Helper()
	node := func(name string, port int) string {
		return fmt.Sprintf("      - {name: %s, host: 127.0.0.1, pg_port: %d, local: true, data_dir: %s, socket_dir: %s}\n",
			name, port, filepath.Join(dir, name, "data"), filepath.Join(dir, name, "run"))
	}
	text := "name: dc1_dc2\nreplication: {user: sdr_repl, password_file: " + filepath.Join(dir, "pw") + "}\n" +
		"timeouts: {connect: 1s}\nprimary: dc1\nclusters:\n  dc1:\n    main: dc1-a\n    nodes:\n" + node("dc1-a", 5501) + node("dc1-b", 5502) +
		"  dc2:\n    main: dc2-a\n    nodes:\n" + node("dc2-a", 5601) + node("dc2-b", 5602)
	p := filepath.Join(dir, "sdr.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestStatusWithoutStateFile(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	cfg := localConfig(t, dir)
	state := filepath.Join(dir, "never-ran.db")
	tests := []struct {
		name string
		args []string
	}{
		{"text", []string{"--state", state, "status"}},
		{"json", []string{"--state", state, "status", "--json"}},
		{"with config", []string{"--state", state, "--config", cfg, "status"}},
		{"missing directory", []string{"--state", filepath.Join(dir, "no-such-dir", "s.db"), "status"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := run(t, tc.args...)
			if code != ExitNoState {
				t.Errorf("exit %d, want %d; stderr %s", code, ExitNoState, stderr)
			}
			lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], "no state file at "+tc.args[1]) {
				t.Errorf("stderr is not one line naming %s:\n%s", tc.args[1], stderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			if _, err := os.Stat(tc.args[1]); !os.IsNotExist(err) {
				t.Errorf("status created %s (%v)", tc.args[1], err)
			}
			if _, err := os.Stat(store.LockPath(tc.args[1])); !os.IsNotExist(err) {
				t.Errorf("status created the lock file (%v)", err)
			}
		})
	}
}

// writeState runs a small workflow of role through the real store; with
// fail, it fails at its second step.
func writeState(t *testing.T, path string, role workflow.Role, fail bool) {
	t.Helper()
	db, err := store.Open(path, store.Options{Pair: "dc1_dc2", Role: role})
	if err != nil {
		t.Fatal(err)
	}
	mk := func(role workflow.Role, fail bool) workflow.Workflow {
		return workflow.Workflow{Action: "start", Role: role, Steps: []workflow.Step{
			{Num: 1, Name: "1_prepare", Roles: []workflow.Role{role}, OnDone: workflow.StateFullBackup},
			{Num: 2, Name: "2_check_cluster", Roles: []workflow.Role{role}, OnFail: workflow.StateBackupFail,
				Run: func(context.Context, *workflow.RunContext) error {
					if fail {
						return &workflow.Permanent{Err: os.ErrPermission}
					}
					return nil
				}},
		}}
	}
	r := &workflow.Runner{Store: db, NewRunID: func() string { return "run-1" }}
	_, err = r.Run(context.Background(), mk(role, fail), map[string]string{"a": "1"}, workflow.Options{})
	if (err != nil) != fail {
		t.Fatalf("%s workflow: err %v, want failure %v", role, err, fail)
	}
}

// statusJSONKeys is the documented top level of `status --json` (docs/status.md).
// Changing it breaks scripts: add fields only, and bump StatusJSONVersion otherwise.
var statusJSONKeys = []string{"version", "pair", "state_file", "schema", "role", "cluster", "sides", "workflows", "history", "lock", "nodes", "live", "progress", "stale", "primaries"}

func TestStatusJSONGoldenKeys(t *testing.T) {
	clearEnv(t)
	state := filepath.Join(t.TempDir(), "state.db")
	writeState(t, state, workflow.RoleStandby, true)
	code, stdout, stderr := run(t, "--state", state, "status", "--json")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal([]byte(stdout), &top); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout)
	}
	var got []string
	for k := range top {
		got = append(got, k)
	}
	want := append([]string(nil), statusJSONKeys...)
	sort.Strings(got)
	sort.Strings(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("top-level keys\n got %v\nwant %v", got, want)
	}
	var doc StatusDoc
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Version != StatusJSONVersion || doc.Pair != "dc1_dc2" || doc.StateFile != state || doc.Schema != store.SchemaVersion ||
		doc.Role != workflow.RoleStandby || doc.Live != "no config" {
		t.Errorf("header %+v", doc)
	}
	if string(top["nodes"]) != "[]" || string(top["lock"]) != "null" || string(top["progress"]) != "null" {
		t.Errorf("nodes %s lock %s progress %s, want [], null and null", top["nodes"], top["lock"], top["progress"])
	}
	if len(doc.Workflows) != 1 || len(doc.Sides) != 1 || len(doc.History) == 0 {
		t.Fatalf("workflows %d sides %d history %d", len(doc.Workflows), len(doc.Sides), len(doc.History))
	}
	w := doc.Workflows[0]
	sr := w.Step("2_check_cluster")
	if w.Workflow != "start/standby" || w.Complete || sr == nil || sr.Status != workflow.StatusFailed || sr.Error == nil || !sr.Error.Permanent {
		t.Errorf("start/standby: %+v", w)
	}
}

func TestStatusJSONDocKeysMatchGolden(t *testing.T) {
	// The struct and the golden list must agree, so a new field is a conscious change.
	typ := reflect.TypeOf(StatusDoc{})
	var got []string
	for i := 0; i < typ.NumField(); i++ {
		if typ.Field(i).IsExported() {
			got = append(got, strings.Split(typ.Field(i).Tag.Get("json"), ",")[0])
		}
	}
	if !reflect.DeepEqual(got, statusJSONKeys) {
		t.Errorf("StatusDoc json keys %v, want %v", got, statusJSONKeys)
	}
}

func TestStatusText(t *testing.T) {
	clearEnv(t)
	state := filepath.Join(t.TempDir(), "state.db")
	writeState(t, state, workflow.RoleStandby, true)
	code, stdout, stderr := run(t, "--state", state, "status", "--history", "0")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"DR pair dc1_dc2", "side standby: state BACKUP_FAIL", "workflow start/standby: refused at 2_check_cluster, nothing was changed", "2_check_cluster", "state history:"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("status does not show %q:\n%s", want, stdout)
		}
	}
}

func TestStartHelpListsSteps(t *testing.T) {
	clearEnv(t)
	code, stdout, stderr := run(t, "start", "--help")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, step := range []string{"1_prepare", "2_check_cluster", "3_prepare_replication", "4_retain_wal", "5_open_access",
		"5_stop_cluster", "6_set_guc", "7_build_standby", "8_wait_standby", "8_start_cluster", "9_finish", "--restart", "role primary:", "role standby:",
		"--no-rewind", "pg_rewind"} {
		if !strings.Contains(stdout, step) {
			t.Errorf("start --help does not list %s", step)
		}
	}
	if i, j := strings.Index(stdout, "1_prepare"), strings.Index(stdout, "9_finish"); i < 0 || j < i {
		t.Errorf("steps are not in order 1_prepare … 9_finish")
	}
}

func TestHelpAndExitCodes(t *testing.T) {
	clearEnv(t)
	code, stdout, _ := run(t, "--help")
	if code != ExitOK || !strings.Contains(stdout, "Exit codes") || !strings.Contains(stdout, "start") || !strings.Contains(stdout, "status") {
		t.Errorf("--help: exit %d\n%s", code, stdout)
	}
	if !workflow.FailpointsEnabled && strings.Contains(stdout, "selftest") {
		t.Error("selftest is visible in a normal build")
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, ExitOK},
		{"step error", &workflow.StepError{Step: "1_x", Err: os.ErrClosed}, ExitStepFailed},
		{"wrapped step error", failErr(&workflow.StepError{Step: "1_x", Err: os.ErrClosed}), ExitStepFailed},
		{"usage", usageErr(os.ErrNotExist), ExitUsage},
		{"store failure", failErr(os.ErrClosed), ExitStepFailed},
		{"unclassified", os.ErrInvalid, ExitUsage},
		{"inputs changed", usageErr(&workflow.InputsChangedError{}), ExitUsage},
		{"no state file", &codedError{code: ExitNoState, err: os.ErrNotExist}, ExitNoState},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := exitCode(tc.err); got != tc.want {
				t.Errorf("exitCode = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestStartRefusesTheOtherSidesStateFile(t *testing.T) {
	clearEnv(t)
	tests := []struct {
		name      string
		fileRole  workflow.Role
		startRole string
	}{
		{"primary file given to the standby side", workflow.RolePrimary, "standby"},
		{"standby file given to the primary side", workflow.RoleStandby, "primary"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := localConfig(t, dir)
			if err := os.WriteFile(filepath.Join(dir, "pw"), []byte("secret\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			state := filepath.Join(dir, "state.db")
			writeState(t, state, tc.fileRole, false)
			before, err := os.ReadFile(state)
			if err != nil {
				t.Fatal(err)
			}
			code, stdout, stderr := run(t, "--config", cfg, "--state", state, "start", "--role", tc.startRole)
			if code != ExitUsage {
				t.Fatalf("exit %d, want %d\n%s%s", code, ExitUsage, stdout, stderr)
			}
			lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], "other side") || !strings.Contains(lines[0], state) ||
				!strings.Contains(lines[0], string(tc.fileRole)) {
				t.Errorf("want one line naming the file, its side %s and the mismatch:\n%s", tc.fileRole, stderr)
			}
			if after, _ := os.ReadFile(state); !bytes.Equal(after, before) {
				t.Error("the refused run changed the state file")
			}
			if _, err := os.Stat(store.LockPath(state)); !os.IsNotExist(err) {
				t.Errorf("the refused run took the run lock (%v)", err)
			}
		})
	}
}

func TestRefusedBeforeChange(t *testing.T) {
	primary := steps.Start(workflow.RolePrimary, &steps.Env{})
	standby := steps.Start(workflow.RoleStandby, &steps.Env{})
	hostKey := fmt.Errorf("while checking dc1-a: %w", fmt.Errorf("on dc1-a: host key not in /k: %w", errors.Join(cluster.ErrHostKey, os.ErrInvalid)))
	sshAuth := fmt.Errorf("on dc2-a: %w", cluster.ErrSSHAuth)
	perm := &workflow.Permanent{Err: errors.New("replication.user is a superuser")}
	tests := []struct {
		name string
		wf   workflow.Workflow
		step string
		err  error
		want bool
		code int
	}{
		{"unknown host key in step 2", primary, "2_check_cluster", hostKey, true, ExitUsage},
		{"ssh key refused in step 2 (standby)", standby, "2_check_cluster", sshAuth, true, ExitUsage},
		{"permanent check failure in step 2", standby, "2_check_cluster", perm, true, ExitUsage},
		{"permanent failure in step 1", primary, "1_prepare", perm, true, ExitUsage},
		{"one node's permanent error among others", primary, "2_check_cluster", errors.Join(errors.New("dc1-b: timeout"), perm), true, ExitUsage},
		{"transient failure in step 2", standby, "2_check_cluster", fmt.Errorf("while waiting: %w", context.DeadlineExceeded), false, ExitStepFailed},
		{"interrupted in step 2", primary, "2_check_cluster", fmt.Errorf("%w: %w", workflow.ErrInterrupted, perm), false, ExitStepFailed},
		{"host key in step 3, after changes", primary, "3_prepare_replication", hostKey, false, ExitStepFailed},
		{"permanent failure in step 7", standby, "7_build_standby", perm, false, ExitStepFailed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			se := &workflow.StepError{Step: tc.step, Err: tc.err}
			if got := refusedBeforeChange(tc.wf, se); got != tc.want {
				t.Errorf("refusedBeforeChange = %v, want %v", got, tc.want)
			}
			var out bytes.Buffer
			app := NewApp(&out, &out)
			c := cli.NewContext(app, nil, nil)
			code := exitCode(reportRun(c, tc.wf, "p", workflow.Result{State: workflow.StateNormal}, se))
			if code != tc.code {
				t.Errorf("exit code %d, want %d", code, tc.code)
			}
			if wantWord := map[bool]string{true: "refused at " + tc.step + " before changing anything", false: "failed at " + tc.step}[tc.want]; !strings.Contains(out.String(), wantWord) {
				t.Errorf("output %q does not say %q", out.String(), wantWord)
			}
		})
	}
}
