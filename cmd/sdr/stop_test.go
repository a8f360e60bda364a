package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgsdr/sdr/store"
	"github.com/pgsdr/sdr/workflow"
)

func TestStopRefusedBeforeAnything(t *testing.T) {
	clearEnv(t)
	tests := []struct {
		name  string
		setup func(t *testing.T, state string) // the state file before the run (none when nil)
		args  []string                         // after "stop"
		want  []string                         // fragments of the one error line
	}{
		{name: "promote is not stop's job", args: []string{"--role", "standby", "--promote"}, want: []string{"--promote", "sdr failover"}},
		{name: "drop-role on the DR side", args: []string{"--role", "standby", "--drop-role"}, want: []string{"--drop-role", "primary"}},
		{name: "unknown role", args: []string{"--role", "witness"}, want: []string{"witness"}},
		{name: "no role", args: nil, want: []string{"role"}},
		{name: "arguments", args: []string{"--role", "primary", "now"}, want: []string{"now"}},
		{name: "negative timeout", args: []string{"--role", "primary", "--timeout", "-1s"}, want: []string{"timeout"}},
		{name: "no state file: sdr never ran here", args: []string{"--role", "primary"},
			want: []string{"no state file at", "sdr start has not run on this side", "--no-start-record"}},
		{name: "state file without a start of this side", args: []string{"--role", "standby"},
			setup: func(t *testing.T, state string) {
				if _, err := store.Open(state, store.Options{Pair: "dc1_dc2"}); err != nil {
					t.Fatal(err)
				}
			}, want: []string{"holds no start of the standby side", "--no-start-record"}},
		{name: "state file of the other side", args: []string{"--role", "primary"},
			setup: func(t *testing.T, state string) { writeState(t, state, workflow.RoleStandby, false) },
			want:  []string{"other side", "standby side"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := localConfig(t, dir)
			state := filepath.Join(dir, "state.db")
			if tc.setup != nil {
				tc.setup(t, state)
			}
			before, _ := os.ReadFile(state)
			code, stdout, stderr := run(t, append([]string{"--config", cfg, "--state", state, "stop"}, tc.args...)...)
			if code != ExitUsage {
				t.Fatalf("exit %d, want %d\n%s%s", code, ExitUsage, stdout, stderr)
			}
			lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
			if len(lines) != 1 {
				t.Errorf("want one error line, got:\n%s", stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(lines[0], w) {
					t.Errorf("error %q does not say %q", lines[0], w)
				}
			}
			after, err := os.ReadFile(state)
			if tc.setup == nil && !os.IsNotExist(err) {
				t.Errorf("the refused stop created the state file (%v)", err)
			}
			if tc.setup != nil && !bytes.Equal(after, before) {
				t.Error("the refused stop changed the state file")
			}
			if _, err := os.Stat(store.LockPath(state)); !os.IsNotExist(err) {
				t.Errorf("the refused stop took the run lock (%v)", err)
			}
		})
	}
}

// A stop that fails in its check step (the nodes of this config do not
// exist) changes nothing: the start stays current and complete, and the
// side keeps its state.
func TestStopFailingItsCheckKeepsTheStart(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	cfg := localConfig(t, dir)
	state := filepath.Join(dir, "state.db")
	writeState(t, state, workflow.RolePrimary, false)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := Run(ctx, []string{"sdr", "--config", cfg, "--state", state, "stop", "--role", "primary", "--timeout", "5s"}, &stdout, &stderr)
	if code != ExitUsage && code != ExitStepFailed {
		t.Fatalf("exit %d, want a failed check\n%s%s", code, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "stop/primary for DR pair dc1_dc2") || !strings.Contains(stdout.String(), "2_check_cluster") {
		t.Errorf("stdout does not name the workflow and the step:\n%s", stdout.String())
	}
	db, err := store.Open(state, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := db.Snapshot(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Sides) != 1 || snap.Sides[0].State != workflow.StateFullBackup || snap.Sides[0].ChangedBy == "stop/primary" {
		t.Errorf("sides %+v, want the start's state, not changed by the stop", snap.Sides)
	}
	for _, r := range snap.Workflows {
		if r.Workflow == "start/primary" && (!r.Complete || r.SupersededBy(snap.Sides[0]) != "") {
			t.Errorf("start record %+v is no longer current", r)
		}
	}
}

func TestStatusShowsASupersededStart(t *testing.T) {
	clearEnv(t)
	state := filepath.Join(t.TempDir(), "state.db")
	writeState(t, state, workflow.RolePrimary, false)
	db, err := store.Open(state, store.Options{Pair: "dc1_dc2", Role: workflow.RolePrimary})
	if err != nil {
		t.Fatal(err)
	}
	stop := workflow.Workflow{Action: "stop", Role: workflow.RolePrimary, Steps: []workflow.Step{
		{Num: 1, Name: "1_prepare", Roles: []workflow.Role{workflow.RolePrimary}, CheckOnly: true},
		{Num: 3, Name: "3_close_access", Roles: []workflow.Role{workflow.RolePrimary}, OnStart: workflow.StateStop, OnDone: workflow.StateNormal},
	}}
	r := &workflow.Runner{Store: db, NewRunID: func() string { return "run-2" }}
	if _, err := r.Run(context.Background(), stop, map[string]string{"a": "1"}, workflow.Options{}); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := run(t, "--state", state, "status")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"side primary: state NORMAL", "workflow start/primary: complete", "superseded by a later stop/primary: its next run starts at step 1",
		"workflow stop/primary: complete"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("status does not show %q:\n%s", want, stdout)
		}
	}
	if strings.Count(stdout, "superseded") != 1 {
		t.Errorf("only the start record is superseded:\n%s", stdout)
	}
}

// TestStopAfterARoleMove: a cluster's state file stays with the cluster
// when its role moves. After a switchover or failover made it the other
// side, stop accepts that file for its new role: the promote or demote
// half's record shows that sdr set the cluster up as that side. A file
// with nothing of sdr's for the new role is still refused.
func TestStopAfterARoleMove(t *testing.T) {
	ctx := context.Background()
	// record runs a one-step workflow per action; an action ending in "!"
	// is refused by its check step (a record that did not finish).
	record := func(t *testing.T, path string, role workflow.Role, actions ...string) {
		t.Helper()
		db, err := store.Open(path, store.Options{Pair: "dc1_dc2", Role: role, Cluster: "dc2"})
		if err != nil {
			t.Fatal(err)
		}
		r := &workflow.Runner{Store: db, NewRunID: func() string { return "run-1" }}
		for _, a := range actions {
			refused := strings.HasSuffix(a, "!")
			wf := workflow.Workflow{Action: strings.TrimSuffix(a, "!"), Role: role, Steps: []workflow.Step{{Num: 1, Name: "1_prepare", Roles: []workflow.Role{role},
				CheckOnly: true, Run: func(context.Context, *workflow.RunContext) error {
					if refused {
						return &workflow.Permanent{Err: os.ErrPermission}
					}
					return nil
				}}}}
			if _, err := r.Run(ctx, wf, map[string]string{"a": "1"}, workflow.Options{}); (err != nil) != refused {
				t.Fatalf("%s: %v", a, err)
			}
		}
	}
	tests := []struct {
		name    string
		role    workflow.Role // the role the file was written with
		actions []string
		stop    workflow.Role
		want    string // "" when stop may go ahead
	}{
		{"promoted by a switchover: stop --role primary", workflow.RoleStandby, []string{"start", "switchover"}, workflow.RolePrimary, ""},
		{"promoted by a failover: stop --role primary", workflow.RoleStandby, []string{"start", "failover"}, workflow.RolePrimary, ""},
		{"demoted by a switchover: stop --role standby", workflow.RolePrimary, []string{"start", "switchover"}, workflow.RoleStandby, ""},
		{"a start of the DR side only: stop --role primary", workflow.RoleStandby, []string{"start"}, workflow.RolePrimary, "nor a switchover or failover"},
		{"a failover record does not make a DR side", workflow.RolePrimary, []string{"start", "failover"}, workflow.RoleStandby, "nor a switchover or failover"},
		{"a refused switchover moved nothing", workflow.RoleStandby, []string{"start", "switchover!"}, workflow.RolePrimary, "nor a switchover or failover"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			state := filepath.Join(t.TempDir(), "state.db")
			record(t, state, tc.role, tc.actions...)
			err := checkSomethingToStop(ctx, globals{state: state}, "dc1_dc2", tc.stop, "dc2")
			if tc.want == "" && err != nil {
				t.Fatalf("stop --role %s refused: %v", tc.stop, err)
			}
			if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("stop --role %s: %v, want an error with %q", tc.stop, err, tc.want)
			}
		})
	}
}

// TestUnfinishedRoleMove: stop is refused while a switchover, failover or
// abort has changed nodes (it was the last to change its side) and has not
// finished; a refused or superseded one, or a finished one, does not stop it.
func TestUnfinishedRoleMove(t *testing.T) {
	rec := func(key string, complete bool, steps ...string) *workflow.Record {
		role := workflow.Role(key[strings.LastIndex(key, "/")+1:])
		r := &workflow.Record{Workflow: key, Role: role, Complete: complete, Values: map[string]string{"switchover.token": "{}"}, Steps: []workflow.StepRecord{
			{Name: "1_prepare", Status: workflow.StatusDone}, {Name: "2_check_cluster", Status: workflow.StatusDone}}}
		for i, s := range steps {
			st := workflow.StatusDone
			if i == len(steps)-1 {
				st = workflow.StatusFailed
			}
			r.Steps = append(r.Steps, workflow.StepRecord{Name: s, Status: st})
		}
		return r
	}
	side := func(role workflow.Role, by string) map[workflow.Role]workflow.Side {
		return map[workflow.Role]workflow.Side{role: {Role: role, State: workflow.StateSwitchoverFail, ChangedBy: by}}
	}
	tests := []struct {
		name  string
		recs  map[string]*workflow.Record
		sides map[workflow.Role]workflow.Side
		want  []string // nil: allowed
	}{
		{"demote half failed after demoting", map[string]*workflow.Record{"switchover/primary": rec("switchover/primary", false, "3_demote", "4_rejoin")},
			side(workflow.RolePrimary, "switchover/primary"), []string{"switchover/primary is unfinished", "at 4_rejoin", "--abort", "switchover_fail"}},
		{"demote half killed while demoting (step started)", map[string]*workflow.Record{"switchover/primary": func() *workflow.Record {
			r := rec("switchover/primary", false, "3_demote")
			r.Steps[len(r.Steps)-1].Status = workflow.StatusStarted
			return r
		}()}, side(workflow.RolePrimary, "switchover/primary"), []string{"switchover/primary is unfinished", "at 3_demote"}},
		{"demote half failed before its token: no abort advised", map[string]*workflow.Record{"switchover/primary": func() *workflow.Record {
			r := rec("switchover/primary", false, "3_demote")
			r.Values = nil
			return r
		}()}, side(workflow.RolePrimary, "switchover/primary"), []string{"nothing to abort", "service manager"}},
		{"promote half failed while promoting", map[string]*workflow.Record{"switchover/standby": rec("switchover/standby", false, "3_wait_primary", "4_promote")},
			side(workflow.RoleStandby, "switchover/standby"), []string{"switchover/standby is unfinished", "rerun sdr switchover --role standby"}},
		{"failover failed after fencing", map[string]*workflow.Record{"failover/standby": rec("failover/standby", false, "3_fence", "4_promote")},
			side(workflow.RoleStandby, "failover/standby"), []string{"rerun sdr failover"}},
		{"refused at its check: changed nothing", map[string]*workflow.Record{"switchover/standby": rec("switchover/standby", false)},
			side(workflow.RoleStandby, "start/standby"), nil},
		{"promote half that only waited (the demote half never ran)", map[string]*workflow.Record{"switchover/standby": rec("switchover/standby", false, "3_wait_primary")},
			side(workflow.RoleStandby, "switchover/standby"), nil},
		{"superseded: another workflow changed the side since", map[string]*workflow.Record{"switchover/primary": rec("switchover/primary", false, "3_demote")},
			side(workflow.RolePrimary, "start/primary"), nil},
		{"finished", map[string]*workflow.Record{"switchover/primary": rec("switchover/primary", true, "3_demote")},
			side(workflow.RolePrimary, "switchover/primary"), nil},
		{"no role move", nil, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := unfinishedRoleMove(tc.recs, tc.sides)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("allowed; want a refusal with %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%v: want %q", err, w)
				}
			}
		})
	}
}
