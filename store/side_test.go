package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pgsdr/sdr/workflow"
)

// legacyFile writes a state file as sdr wrote it before the side stamp:
// one workflow record and side per role in roles, and history entries in
// the order given (first: the first run's side).
func legacyFile(t *testing.T, roles []workflow.Role, history []workflow.Role) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "state.db")
	mustOpen(t, p, Options{Pair: "p"})
	db, err := bolt.Open(p, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		for _, r := range roles {
			rec, _ := json.Marshal(workflow.Record{Workflow: "start/" + string(r), Action: "start", Role: r})
			side, _ := json.Marshal(workflow.Side{Role: r, State: workflow.StateNormal})
			if err := tx.Bucket(bucketWorkflows).Put([]byte("start/"+string(r)), rec); err != nil {
				return err
			}
			if err := tx.Bucket(bucketSides).Put([]byte(r), side); err != nil {
				return err
			}
		}
		for i, r := range history {
			raw, _ := json.Marshal(HistoryEntry{Seq: uint64(i + 1), Role: r, Workflow: "start/" + string(r), To: workflow.StateNormal})
			k := make([]byte, 8)
			binary.BigEndian.PutUint64(k, uint64(i+1))
			if err := tx.Bucket(bucketHistory).Put(k, raw); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func stamp(t *testing.T, p string) string {
	t.Helper()
	db, err := bolt.Open(p, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var out string
	_ = db.View(func(tx *bolt.Tx) error {
		out = string(tx.Bucket(bucketMeta).Get(keyRole))
		return nil
	})
	return out
}

func readAll(t *testing.T, p string) []byte {
	t.Helper()
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestOpenRefusesTheOtherSidesFile(t *testing.T) {
	P, S := workflow.RolePrimary, workflow.RoleStandby
	newFile := func(t *testing.T) string {
		p := filepath.Join(t.TempDir(), "state.db")
		mustOpen(t, p, Options{Pair: "p", Role: P})
		return p
	}
	tests := []struct {
		name      string
		file      func(t *testing.T) string
		role      workflow.Role
		readOnly  bool
		wantErr   bool   // ErrOtherSide, file unchanged
		wantStamp string // after a successful write open
	}{
		{"stamped primary, opened as primary", newFile, P, false, false, "primary"},
		{"stamped primary, opened as standby", newFile, S, false, true, ""},
		{"stamped primary, read as standby", newFile, S, true, true, ""},
		{"legacy primary file, opened as standby", func(t *testing.T) string { return legacyFile(t, []workflow.Role{P}, []workflow.Role{P}) }, S, false, true, ""},
		{"legacy primary file, opened as primary", func(t *testing.T) string { return legacyFile(t, []workflow.Role{P}, []workflow.Role{P}) }, P, false, false, "primary"},
		{"legacy standby file without history, opened as primary", func(t *testing.T) string { return legacyFile(t, []workflow.Role{S}, nil) }, P, false, true, ""},
		{"legacy file holding both sides, first run primary, opened as standby",
			func(t *testing.T) string { return legacyFile(t, []workflow.Role{P, S}, []workflow.Role{P, S}) }, S, false, true, ""},
		{"legacy file holding both sides, first run primary, opened as primary",
			func(t *testing.T) string { return legacyFile(t, []workflow.Role{P, S}, []workflow.Role{P, S}) }, P, false, false, "primary"},
		{"legacy file that recorded nothing, opened as standby", func(t *testing.T) string { return legacyFile(t, nil, nil) }, S, false, false, "standby"},
		{"legacy standby file, read as standby", func(t *testing.T) string { return legacyFile(t, []workflow.Role{S}, []workflow.Role{S}) }, S, true, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.file(t)
			before := readAll(t, p)
			_, err := Open(p, Options{Pair: "p", Role: tc.role, ReadOnly: tc.readOnly})
			if tc.wantErr {
				if !errors.Is(err, ErrOtherSide) {
					t.Fatalf("Open = %v, want ErrOtherSide", err)
				}
				if !bytes.Equal(readAll(t, p), before) {
					t.Error("a refused Open changed the file")
				}
				return
			}
			if err != nil {
				t.Fatalf("Open = %v", err)
			}
			if tc.readOnly {
				if !bytes.Equal(readAll(t, p), before) {
					t.Error("a read-only Open changed the file")
				}
				return
			}
			if got := stamp(t, p); got != tc.wantStamp {
				t.Errorf("stamp %q, want %q", got, tc.wantStamp)
			}
		})
	}
}

func TestUpdateStampsAndChecksTheSide(t *testing.T) {
	ctx := context.Background()
	noop := func(rec **workflow.Record, side *workflow.Side) error {
		if *rec == nil {
			*rec = &workflow.Record{Workflow: "start/x"}
		}
		side.State = workflow.StateNormal
		return nil
	}
	// A legacy file that recorded nothing: the first Update stamps it.
	p := legacyFile(t, nil, nil)
	db, err := Open(p, Options{Pair: "p"})
	if err != nil {
		t.Fatal(err)
	}
	if got := stamp(t, p); got != "" {
		t.Fatalf("Open without a role stamped %q", got)
	}
	if err := db.Update(ctx, "start/standby", workflow.RoleStandby, noop); err != nil {
		t.Fatal(err)
	}
	if got := stamp(t, p); got != "standby" {
		t.Errorf("stamp after the first Update %q, want standby", got)
	}
	before := readAll(t, p)
	if err := db.Update(ctx, "start/primary", workflow.RolePrimary, noop); !errors.Is(err, ErrOtherSide) {
		t.Fatalf("Update of the other side = %v, want ErrOtherSide", err)
	}
	if !bytes.Equal(readAll(t, p), before) {
		t.Error("a refused Update changed the file")
	}
	snap, err := db.Snapshot(0)
	if err != nil || snap.Role != workflow.RoleStandby || len(snap.Sides) != 1 {
		t.Errorf("snapshot role %q sides %+v (%v), want standby only", snap.Role, snap.Sides, err)
	}
	// A legacy file with records: Snapshot infers its side without writing.
	legacy := legacyFile(t, []workflow.Role{workflow.RolePrimary}, []workflow.Role{workflow.RolePrimary})
	ro, err := Open(legacy, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if snap, err := ro.Snapshot(0); err != nil || snap.Role != workflow.RolePrimary || stamp(t, legacy) != "" {
		t.Errorf("legacy snapshot role %q (%v), stamp %q; want primary inferred, no stamp", snap.Role, err, stamp(t, legacy))
	}
}

// TestClusterStamp: a state file belongs to its cluster whatever role the
// cluster plays; a file of the other cluster is refused.
func TestClusterStamp(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state.db")
	mustOpen(t, p, Options{Pair: "p", Role: workflow.RoleStandby, Cluster: "dc2"})
	// The roles moved (failover): dc2 is now the primary; its file follows it.
	if _, err := Open(p, Options{Pair: "p", Role: workflow.RolePrimary, Cluster: "dc2"}); err != nil {
		t.Fatalf("dc2's file refused for dc2 in its new role: %v", err)
	}
	db, err := Open(p, Options{Pair: "p", Role: workflow.RolePrimary, Cluster: "dc2"})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(context.Background(), "start/primary", workflow.RolePrimary, func(rec **workflow.Record, side *workflow.Side) error {
		*rec = &workflow.Record{Workflow: "start/primary", Action: "start", Role: workflow.RolePrimary}
		return nil
	}); err != nil {
		t.Fatalf("update in dc2's new role: %v", err)
	}
	before, _ := os.ReadFile(p)
	for _, role := range []workflow.Role{workflow.RolePrimary, workflow.RoleStandby} {
		_, err := Open(p, Options{Pair: "p", Role: role, Cluster: "dc1"})
		if !errors.Is(err, ErrOtherCluster) {
			t.Fatalf("dc2's file given for cluster dc1 (%s): %v, want ErrOtherCluster", role, err)
		}
		_, err = Open(p, Options{Pair: "p", Role: role, Cluster: "dc1", ReadOnly: true})
		if !errors.Is(err, ErrOtherCluster) {
			t.Fatalf("read-only, dc2's file given for cluster dc1 (%s): %v, want ErrOtherCluster", role, err)
		}
	}
	if after, _ := os.ReadFile(p); !bytes.Equal(before, after) {
		t.Error("a refused open changed the file")
	}
	// A file stamped by side only (before clusters) is claimed by the
	// cluster of its side, and the side check still applies until then.
	legacy := legacyFile(t, []workflow.Role{workflow.RolePrimary}, []workflow.Role{workflow.RolePrimary})
	if _, err := Open(legacy, Options{Pair: "p", Role: workflow.RoleStandby, Cluster: "dc2"}); !errors.Is(err, ErrOtherSide) {
		t.Fatalf("legacy primary file given as standby: %v, want ErrOtherSide", err)
	}
	mustOpen(t, legacy, Options{Pair: "p", Role: workflow.RolePrimary, Cluster: "dc1"})
	if _, err := Open(legacy, Options{Pair: "p", Role: workflow.RoleStandby, Cluster: "dc1"}); err != nil {
		t.Fatalf("legacy file, stamped dc1 now, in dc1's new role: %v", err)
	}
}
