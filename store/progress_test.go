package store

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgsdr/sdr/workflow"
)

func report(run string, parts ...string) workflow.ProgressReport {
	r := workflow.ProgressReport{RunID: run, Step: "7_build_standby", Updated: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Parts: []workflow.PartProgress{}}
	for _, p := range parts {
		r.Parts = append(r.Parts, workflow.PartProgress{Part: p, Done: 10, Total: 100})
	}
	return r
}

func TestProgressFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state.db")
	pf := NewProgressFile(state)
	if r, err := ReadProgress(state); r != nil || err != nil {
		t.Fatalf("before any report: %+v, %v; want nil, nil", r, err)
	}
	for i, parts := range [][]string{{"dc2-a"}, {"dc2-a", "dc2-b"}, {}} {
		want := report("run-1", parts...)
		if err := pf.ReportProgress(want); err != nil {
			t.Fatalf("report %d: %v", i, err)
		}
		got, err := ReadProgress(state)
		if err != nil || got == nil || got.RunID != "run-1" || len(got.Parts) != len(parts) {
			t.Fatalf("report %d read back as %+v, %v", i, got, err)
		}
	}
	fi, err := os.Stat(ProgressPath(state))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("progress file %v, %v; want mode 0600", fi, err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
	if err := pf.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := pf.Remove(); err != nil {
		t.Errorf("removing a missing progress file: %v", err)
	}
	if r, err := ReadProgress(state); r != nil || err != nil {
		t.Errorf("after Remove: %+v, %v", r, err)
	}
}

func TestReadProgressDamaged(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state.db")
	if err := os.WriteFile(ProgressPath(state), []byte("{half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadProgress(state); err == nil || !strings.Contains(err.Error(), ProgressPath(state)) {
		t.Errorf("damaged file: err %v, want one naming the file", err)
	}
}

// TestSnapshotProgressOnlyOfTheLiveRun: status shows the sidecar's report
// only while the run that wrote it holds the lock.
func TestSnapshotProgressOnlyOfTheLiveRun(t *testing.T) {
	tests := []struct {
		name   string
		held   bool
		report *workflow.ProgressReport
		want   bool
	}{
		{"live run, its report", true, ptr(report("run-live", "dc2-a")), true},
		{"live run, no report", true, nil, false},
		{"live run, report of a killed run", true, ptr(report("run-old", "dc2-a")), false},
		{"live run, nothing in progress", true, ptr(report("run-live")), false},
		{"no live run, report left by a killed run", false, ptr(report("run-x", "dc2-a")), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db := openTemp(t, "")
			if tc.report != nil {
				if err := NewProgressFile(db.Path()).ReportProgress(*tc.report); err != nil {
					t.Fatal(err)
				}
			}
			if tc.held {
				h := me(t)
				h.RunID = "run-live"
				l, err := Acquire(db.Path(), h, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer l.Release()
			}
			snap, err := db.Snapshot(0)
			if err != nil {
				t.Fatal(err)
			}
			if got := snap.Progress != nil; got != tc.want {
				t.Errorf("progress shown %v (%+v), want %v", got, snap.Progress, tc.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sdr_pair_standby.prom")
	for _, content := range []string{"a 1\n", "a 2\n"} {
		if err := WriteFileAtomic(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p)
		if err != nil || string(got) != content {
			t.Errorf("read %q, %v; want %q", got, err, content)
		}
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, %v; want 0644", fi, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("directory holds %d files, want 1", len(entries))
	}
	if err := WriteFileAtomic(filepath.Join(dir, "missing", "x.prom"), []byte("x"), 0o644); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("write into a missing directory: %v", err)
	}
}
