package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/pgsdr/sdr/workflow"
)

// ProgressPath is the sidecar file of a state file in which the running
// step's progress is kept: "<state file>.progress". It holds no secret and
// nothing that a later run needs; only `sdr status` reads it, and only
// while the run that wrote it holds the run lock.
func ProgressPath(statePath string) string { return statePath + ".progress" }

// ProgressFile is a workflow.ProgressSink that keeps the last report in
// the sidecar file of a state file, replaced atomically (a temporary file
// in the same directory, then a rename), so a reader never sees half a
// report.
type ProgressFile struct {
	path string
}

var _ workflow.ProgressSink = (*ProgressFile)(nil)

// NewProgressFile returns the sink for the state file at statePath.
func NewProgressFile(statePath string) *ProgressFile {
	return &ProgressFile{path: ProgressPath(statePath)}
}

// ReportProgress implements workflow.ProgressSink.
func (p *ProgressFile) ReportProgress(r workflow.ProgressReport) error {
	raw, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("while encoding the progress for %s: %w", p.path, err)
	}
	// Not synced: the report is replaced every second and lost with the
	// run anyway; a stalled disk must not hold up the step.
	return writeAtomic(p.path, raw, 0o600, false)
}

// Remove deletes the sidecar file; a missing file is not an error.
func (p *ProgressFile) Remove() error {
	if err := os.Remove(p.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("while removing %s: %w", p.path, err)
	}
	return nil
}

// ReadProgress reads the last report kept next to the state file; nil
// when there is none.
func ReadProgress(statePath string) (*workflow.ProgressReport, error) {
	path := ProgressPath(statePath)
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("while reading %s: %w", path, err)
	}
	var r workflow.ProgressReport
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("while reading %s: %w", path, err)
	}
	return &r, nil
}

// liveProgress is the progress of the run holding the lock: the sidecar
// file's report when that run wrote it and it has parts in progress.
// A report of another run (one that was killed) is ignored.
func liveProgress(statePath string, holder *Holder) *workflow.ProgressReport {
	if holder == nil || holder.RunID == "" {
		return nil
	}
	r, err := ReadProgress(statePath)
	if err != nil || r == nil || r.RunID != holder.RunID || len(r.Parts) == 0 {
		return nil
	}
	return r
}

// WriteFileAtomic writes data to path through a temporary file in the
// same directory (named ".<base>.tmp-*", so a reader that picks files by
// suffix, like node_exporter's textfile collector, never takes it),
// synced, given mode, then renamed over path.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	if err := writeAtomic(path, data, mode, true); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("while syncing the directory of %s: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("while syncing the directory of %s: %w", path, err)
	}
	return nil
}

// writeAtomic is WriteFileAtomic without the directory sync; the file
// is synced before the rename when sync is set.
func writeAtomic(path string, data []byte, mode os.FileMode, sync bool) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("while writing %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("while writing %s: %w", f.Name(), err)
	}
	if err = f.Chmod(mode); err != nil {
		return fmt.Errorf("while setting the mode of %s: %w", f.Name(), err)
	}
	if sync {
		if err = f.Sync(); err != nil {
			return fmt.Errorf("while syncing %s: %w", f.Name(), err)
		}
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("while closing %s: %w", f.Name(), err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("while renaming %s to %s: %w", f.Name(), path, err)
	}
	return nil
}
