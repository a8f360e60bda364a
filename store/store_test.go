package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pgsdr/sdr/workflow"
)

// openTemp opens a new state file in t.TempDir and checks, after the
// test, that it still opens and reads as a whole.
func openTemp(t testing.TB, pair string) *DB {
	t.Helper()
	db, err := Open(filepath.Join(t.TempDir(), "state.db"), Options{Pair: pair})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ro, err := Open(db.Path(), Options{ReadOnly: true, Pair: pair})
		if err != nil {
			t.Errorf("state file unreadable after the test: %v", err)
			return
		}
		if _, err := ro.Snapshot(0); err != nil {
			t.Errorf("snapshot after the test: %v", err)
		}
	})
	return db
}

func TestOpenCreatesPrivateFileWithSchema(t *testing.T) {
	db := openTemp(t, "pair-a")
	fi, err := os.Stat(db.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	raw, err := bolt.Open(db.Path(), 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	err = raw.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return errors.New("no meta bucket")
		}
		if got := string(meta.Get(keySchema)); got != "1" {
			t.Errorf("schema %q, want 1", got)
		}
		if got := string(meta.Get(keyPair)); got != "pair-a" {
			t.Errorf("pair %q, want pair-a", got)
		}
		if meta.Get(keyCreated) == nil {
			t.Error("no created time")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := db.Pair(); err != nil || p != "pair-a" {
		t.Errorf("Pair() = %q, %v", p, err)
	}
}

func TestOpenRefusesBadFiles(t *testing.T) {
	good := func(t *testing.T) []byte {
		db := openTemp(t, "p")
		for i := 0; i < 20; i++ {
			err := db.Update(context.Background(), fmt.Sprintf("w%d", i), workflow.RolePrimary, func(r **workflow.Record, s *workflow.Side) error {
				*r = &workflow.Record{Workflow: fmt.Sprint(i), Values: map[string]string{"pad": string(make([]byte, 2000))}}
				s.State = workflow.StateRestore
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		raw, err := os.ReadFile(db.Path())
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	random := make([]byte, 64<<10)
	_, _ = rand.Read(random)
	tests := []struct {
		name    string
		content func(t *testing.T, path string)
		opts    Options
		want    error
	}{
		{"truncated to two pages", func(t *testing.T, p string) { writeFile(t, p, good(t)[:8192]) }, Options{}, ErrCorrupt},
		{"truncated to three pages read-only", func(t *testing.T, p string) { writeFile(t, p, good(t)[:12288]) }, Options{ReadOnly: true}, ErrCorrupt},
		{"truncated to 16 KiB", func(t *testing.T, p string) { writeFile(t, p, good(t)[:16384]) }, Options{}, ErrCorrupt},
		{"random garbage", func(t *testing.T, p string) { writeFile(t, p, random) }, Options{}, ErrCorrupt},
		{"random garbage read-only", func(t *testing.T, p string) { writeFile(t, p, random) }, Options{ReadOnly: true}, ErrCorrupt},
		{"one byte", func(t *testing.T, p string) { writeFile(t, p, []byte("x")) }, Options{}, ErrCorrupt},
		{"a short text file", func(t *testing.T, p string) { writeFile(t, p, []byte("name: pair\n")) }, Options{}, ErrCorrupt},
		{"zero page", func(t *testing.T, p string) { writeFile(t, p, make([]byte, 4096)) }, Options{}, ErrCorrupt},
		{"empty file read-only", func(t *testing.T, p string) { writeFile(t, p, nil) }, Options{ReadOnly: true}, ErrCorrupt},
		{"foreign bbolt file", writeForeign, Options{}, ErrForeign},
		{"foreign bbolt file read-only", writeForeign, Options{ReadOnly: true}, ErrForeign},
		{"other pair", func(t *testing.T, p string) { mustOpen(t, p, Options{Pair: "dc1-dc2"}) }, Options{Pair: "dc3-dc4"}, ErrOtherPair},
		{"other pair read-only", func(t *testing.T, p string) { mustOpen(t, p, Options{Pair: "dc1-dc2"}) }, Options{ReadOnly: true, Pair: "dc3-dc4"}, ErrOtherPair},
		{"unknown schema", func(t *testing.T, p string) { mustOpen(t, p, Options{}); setMeta(t, p, keySchema, "99") }, Options{}, ErrSchema},
		{"missing file read-only", func(*testing.T, string) {}, Options{ReadOnly: true}, os.ErrNotExist},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "state.db")
			tc.content(t, p)
			tc.opts.Timeout = time.Second
			if _, err := Open(p, tc.opts); !errors.Is(err, tc.want) {
				t.Fatalf("Open = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestOpenRefusesEmptyFile: a state file of 0 bytes holds no record of
// any run; sdr refuses it, read-only or not, and leaves it as it is (a new
// database made of it would start a side's runs again from step 1). One
// that another process has locked (bbolt creating it) is waited for, not
// refused as empty. A directory is refused naming what it is.
func TestOpenRefusesEmptyFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state.db")
	writeFile(t, p, nil)
	for _, opts := range []Options{{Pair: "p"}, {ReadOnly: true, Pair: "p"}} {
		_, err := Open(p, opts)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(fmt.Sprint(err), "empty (0 bytes)") {
			t.Fatalf("Open(%+v) of an empty file = %v, want ErrCorrupt saying it is empty", opts, err)
		}
		if fi, err := os.Stat(p); err != nil || fi.Size() != 0 {
			t.Fatalf("the refused file was changed: %v %v", fi, err)
		}
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(p, Options{Pair: "p", Timeout: 200 * time.Millisecond}); !errors.Is(err, ErrBusy) {
		t.Fatalf("Open of an empty file another process holds = %v, want ErrBusy (waited for)", err)
	}
	if _, err := Open(t.TempDir(), Options{Pair: "p"}); !errors.Is(err, ErrCorrupt) || !strings.Contains(fmt.Sprint(err), "is a directory") {
		t.Fatalf("Open of a directory = %v, want a refusal naming a directory", err)
	}
}

func TestOpenSamePairAndUnstampedFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state.db")
	mustOpen(t, p, Options{})
	for _, opts := range []Options{{Pair: "a"}, {Pair: "a"}, {}, {ReadOnly: true, Pair: "a"}} {
		if _, err := Open(p, opts); err != nil {
			t.Errorf("Open(%+v) = %v", opts, err)
		}
	}
	if _, err := Open(p, Options{Pair: "b"}); !errors.Is(err, ErrOtherPair) {
		t.Errorf("Open with another pair after stamping = %v, want ErrOtherPair", err)
	}
}

func TestCorruptRecordIsReportedNotPanicked(t *testing.T) {
	db := openTemp(t, "")
	raw, err := bolt.Open(db.Path(), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = raw.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketWorkflows).Put([]byte("start/primary"), []byte("{not json")); err != nil {
			return err
		}
		return tx.Bucket(bucketSides).Put([]byte("primary"), []byte("]"))
	})
	raw.Close()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		call func() error
	}{
		{"Load", func() error { _, err := db.Load(context.Background(), "start/primary"); return err }},
		{"LoadSide", func() error { _, err := db.LoadSide(context.Background(), workflow.RolePrimary); return err }},
		{"Update", func() error {
			return db.Update(context.Background(), "start/primary", workflow.RolePrimary, func(**workflow.Record, *workflow.Side) error { return nil })
		}},
		{"Snapshot", func() error { _, err := db.Snapshot(0); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, ErrCorrupt) {
				t.Errorf("%s = %v, want ErrCorrupt", tc.name, err)
			}
		})
	}
	// Repair so the cleanup check passes.
	raw, err = bolt.Open(db.Path(), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.Update(func(tx *bolt.Tx) error {
		_ = tx.Bucket(bucketWorkflows).Delete([]byte("start/primary"))
		return tx.Bucket(bucketSides).Delete([]byte("primary"))
	})
}

func TestUpdateRollsBackOnError(t *testing.T) {
	db := openTemp(t, "")
	ctx := context.Background()
	errNo := errors.New("no")
	err := db.Update(ctx, "w", workflow.RoleStandby, func(r **workflow.Record, s *workflow.Side) error {
		*r = &workflow.Record{Workflow: "w"}
		s.State = workflow.StateRestore
		return errNo
	})
	if !errors.Is(err, errNo) {
		t.Fatalf("Update = %v", err)
	}
	if rec, err := db.Load(ctx, "w"); err != nil || rec != nil {
		t.Errorf("record after a failed Update: %+v, %v", rec, err)
	}
	if side, _ := db.LoadSide(ctx, workflow.RoleStandby); side.State != workflow.StateNormal {
		t.Errorf("side after a failed Update: %+v", side)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := db.Update(cctx, "w", workflow.RoleStandby, func(**workflow.Record, *workflow.Side) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("Update with a cancelled context = %v", err)
	}
}

func writeFile(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustOpen(t *testing.T, p string, o Options) {
	t.Helper()
	if _, err := Open(p, o); err != nil {
		t.Fatal(err)
	}
}

func writeForeign(t *testing.T, p string) {
	t.Helper()
	db, err := bolt.Open(p, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("users"))
		if err != nil {
			return err
		}
		return b.Put([]byte("alice"), []byte("1"))
	}); err != nil {
		t.Fatal(err)
	}
}

func setMeta(t *testing.T, p string, key []byte, v string) {
	t.Helper()
	db, err := bolt.Open(p, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(key, []byte(v)) }); err != nil {
		t.Fatal(err)
	}
}

// Opening a file that is already stamped for the run reads it only: a run
// refused before its first step leaves the file as it was, byte for byte.
// A file that still needs a stamp is written.
func TestOpenOfAStampedFileWritesNothing(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state.db")
	full := Options{Pair: "p", Role: workflow.RoleStandby, Cluster: "dc2"}
	mustOpen(t, p, full)
	read := func() []byte {
		t.Helper()
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	before := read()
	for _, tc := range []struct {
		name    string
		opts    Options
		wantErr error
	}{
		{"the same stamps", full, nil},
		{"no role", Options{Pair: "p"}, nil},
		{"no pair", Options{Role: workflow.RoleStandby, Cluster: "dc2"}, nil},
		{"another pair", Options{Pair: "q"}, ErrOtherPair},
		{"another cluster", Options{Pair: "p", Role: workflow.RolePrimary, Cluster: "dc1"}, ErrOtherCluster},
	} {
		if _, err := Open(p, tc.opts); !errors.Is(err, tc.wantErr) || (err != nil && tc.wantErr == nil) {
			t.Errorf("%s: Open = %v, want %v", tc.name, err, tc.wantErr)
		}
		if !bytes.Equal(read(), before) {
			t.Fatalf("%s: Open changed the file", tc.name)
		}
	}
	// A file stamped without a cluster gets the run's cluster.
	q := filepath.Join(t.TempDir(), "state.db")
	mustOpen(t, q, Options{Pair: "p", Role: workflow.RoleStandby})
	raw, _ := os.ReadFile(q)
	mustOpen(t, q, full)
	if now, _ := os.ReadFile(q); bytes.Equal(now, raw) {
		t.Error("a file without a cluster stamp was not stamped")
	}
}
