package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/pgsdr/sdr/workflow"
)

// SchemaVersion is written in every state file.
const SchemaVersion = 1

var (
	bucketMeta      = []byte("sdr")
	bucketWorkflows = []byte("workflows")
	bucketSides     = []byte("sides")
	bucketHistory   = []byte("history")
	keySchema       = []byte("schema")
	keyPair         = []byte("pair")
	keyCreated      = []byte("created")
)

// Options for Open.
type Options struct {
	// Pair is the DR pair name from the config. When set, a file written
	// for another pair is refused, and a new file is stamped with it.
	Pair string
	// Role is the side this run is for. When set, a file that belongs to
	// the other side is refused with ErrOtherSide, and a file not stamped
	// yet is stamped with its side (see claimRole). Update stamps and
	// checks the same way with its own role argument.
	Role workflow.Role
	// Cluster is the cluster (its name in the config) this run acts on.
	// When set, a file stamped with another cluster is refused with
	// ErrOtherCluster, and an unstamped one is stamped; a file of this
	// cluster is accepted whatever role the cluster plays now.
	Cluster string
	// ReadOnly opens without creating or writing anything.
	ReadOnly bool
	// Timeout bounds the wait for the bbolt file lock; default 5s.
	Timeout time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// DB is an sdr state file. It implements workflow.Store.
type DB struct {
	path string
	opts Options
}

var _ workflow.Store = (*DB)(nil)

// HistoryEntry is one state transition.
type HistoryEntry struct {
	Seq      uint64         `json:"seq"`
	Time     time.Time      `json:"time"`
	RunID    string         `json:"run_id"`
	Role     workflow.Role  `json:"role"`
	Workflow string         `json:"workflow"`
	Step     string         `json:"step,omitempty"`
	From     workflow.State `json:"from"`
	To       workflow.State `json:"to"`
}

// Path returns the state file's path.
func (d *DB) Path() string { return d.path }

// Open checks the state file at path (creating it unless opts.ReadOnly)
// and returns a handle. A missing file with ReadOnly gives an error
// wrapping os.ErrNotExist.
func Open(path string, opts Options) (*DB, error) {
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	d := &DB{path: path, opts: opts}
	if opts.ReadOnly {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("while opening state file %s: %w", path, err)
		}
		return d, d.view(func(tx *bolt.Tx) error {
			if err := d.checkMeta(tx); err != nil {
				return err
			}
			if opts.Role != "" {
				return d.checkRole(tx, opts.Role)
			}
			return nil
		})
	}
	// A file that needs no stamp is only read: a run refused before its
	// first step (inputs changed, another cluster's file) leaves it as it
	// was, byte for byte.
	settled := false
	if _, err := os.Stat(path); err == nil {
		if err := d.view(func(tx *bolt.Tx) error {
			settled = d.stamped(tx)
			if !settled {
				return nil
			}
			if err := d.checkMeta(tx); err != nil {
				return err
			}
			if opts.Role != "" {
				return d.checkRole(tx, opts.Role)
			}
			return nil
		}); err != nil || settled {
			return d, err
		}
	}
	return d, d.update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			if err := tx.ForEach(func([]byte, *bolt.Bucket) error { return ErrForeign }); err != nil {
				return fmt.Errorf("state file %s: %w (it holds other data)", path, ErrForeign)
			}
			var err error
			if meta, err = tx.CreateBucket(bucketMeta); err != nil {
				return err
			}
			if err := meta.Put(keySchema, []byte(strconv.Itoa(SchemaVersion))); err != nil {
				return err
			}
			if err := meta.Put(keyCreated, []byte(opts.Now().UTC().Format(time.RFC3339Nano))); err != nil {
				return err
			}
		}
		if err := d.checkMeta(tx); err != nil {
			return err
		}
		if opts.Pair != "" && meta.Get(keyPair) == nil {
			if err := meta.Put(keyPair, []byte(opts.Pair)); err != nil {
				return err
			}
		}
		if opts.Role != "" {
			if err := d.claimRole(tx, opts.Role); err != nil {
				return err
			}
		}
		for _, b := range [][]byte{bucketWorkflows, bucketSides, bucketHistory} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
}

// stamped tells whether Open would write nothing into the file: it has
// its buckets, the pair's name (when the run names one), and the role
// and cluster stamps claimRole would otherwise add.
func (d *DB) stamped(tx *bolt.Tx) bool {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return false
	}
	for _, b := range [][]byte{bucketWorkflows, bucketSides, bucketHistory} {
		if tx.Bucket(b) == nil {
			return false
		}
	}
	if d.opts.Pair != "" && meta.Get(keyPair) == nil {
		return false
	}
	if d.opts.Role != "" {
		if meta.Get(keyRole) == nil || (d.opts.Cluster != "" && fileCluster(tx) != d.opts.Cluster) {
			return false
		}
	}
	return true
}

func (d *DB) checkMeta(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return fmt.Errorf("state file %s: %w", d.path, ErrForeign)
	}
	v := string(meta.Get(keySchema))
	if v != strconv.Itoa(SchemaVersion) {
		return fmt.Errorf("state file %s: %w %q (this sdr reads schema %d)", d.path, ErrSchema, v, SchemaVersion)
	}
	if p := meta.Get(keyPair); d.opts.Pair != "" && p != nil && string(p) != d.opts.Pair {
		return fmt.Errorf("state file %s: %w %q, the config names %q", d.path, ErrOtherPair, p, d.opts.Pair)
	}
	return nil
}

// open opens the bbolt file, turning its errors and panics on a damaged
// file into ErrCorrupt.
func (d *DB) open(ro bool) (db *bolt.DB, err error) {
	defer func() {
		if v := recover(); v != nil {
			db, err = nil, fmt.Errorf("state file %s: %w (%v)", d.path, ErrCorrupt, v)
		}
	}()
	if err := checkNotEmpty(d.path); err != nil {
		return nil, err
	}
	db, err = bolt.Open(d.path, 0o600, &bolt.Options{Timeout: d.opts.Timeout, ReadOnly: ro})
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, fmt.Errorf("state file %s: %w: locked by another process for more than %s", d.path, ErrBusy, d.opts.Timeout)
	case errors.Is(err, os.ErrNotExist), errors.Is(err, os.ErrPermission):
		return nil, fmt.Errorf("while opening state file %s: %w", d.path, err)
	default:
		return nil, fmt.Errorf("state file %s: %w: %v", d.path, ErrCorrupt, err)
	}
}

// checkNotEmpty refuses a path that is a directory, or a file of 0 bytes
// that no process is writing: bbolt would make a new database of it (a
// truncated state file, whose runs would start again from step 1) or fail
// with an unclear error. A file being created holds bbolt's lock until its
// first pages are written; it is not refused here (bbolt waits for it).
func checkNotEmpty(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return nil // a missing file is created; other errors come from bbolt
	}
	if fi.IsDir() {
		return fmt.Errorf("state file %s: %w: it is a directory; give the path of a file", path, ErrCorrupt)
	}
	if fi.Size() > 0 {
		return nil
	}
	// bbolt creates the file, then locks it, then writes its first
	// pages: a file another run is creating may be empty and unlocked for
	// a moment. It is looked at again for a while before it is refused.
	for i := 0; ; i++ {
		empty, err := emptyAndUnlocked(path)
		if err != nil || !empty {
			return nil
		}
		if i == 20 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("state file %s: %w: it is empty (0 bytes), so it holds no record of any run (a file cut short, or made by hand). "+
		"sdr does not reuse it: if it held this side's runs, restore it from a copy (without it, the runs would start again from step 1); "+
		"if sdr never ran with it and no sdr run is using it, remove it", path, ErrCorrupt)
}

// emptyAndUnlocked reports whether path is a file of 0 bytes that no
// process holds bbolt's lock on.
func emptyAndUnlocked(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close() // releases the lock taken below
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return false, nil // held: being created (bbolt waits for it)
	}
	fi, err := f.Stat()
	if err != nil {
		return false, err
	}
	return fi.Size() == 0, nil
}

func (d *DB) run(ro bool, fn func(tx *bolt.Tx) error) (err error) {
	// bbolt reads the file through mmap: a page that a truncated file no
	// longer has faults with SIGBUS, which kills the process unless the
	// goroutine asked for a panic instead. The recovers in open and below
	// turn that panic into ErrCorrupt.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	db, err := d.open(ro)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := db.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("while closing state file %s: %w", d.path, cerr)
		}
	}()
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("state file %s: %w (%v)", d.path, ErrCorrupt, v)
		}
	}()
	if ro {
		return db.View(fn)
	}
	return db.Update(fn)
}

func (d *DB) view(fn func(tx *bolt.Tx) error) error   { return d.run(true, fn) }
func (d *DB) update(fn func(tx *bolt.Tx) error) error { return d.run(false, fn) }

// Pair returns the DR pair name the file is stamped with ("" if none yet).
func (d *DB) Pair() (string, error) {
	var p string
	err := d.view(func(tx *bolt.Tx) error {
		if err := d.checkMeta(tx); err != nil {
			return err
		}
		p = string(tx.Bucket(bucketMeta).Get(keyPair))
		return nil
	})
	return p, err
}

func getJSON(b *bolt.Bucket, key string, v any) (bool, error) {
	if b == nil {
		return false, nil
	}
	raw := b.Get([]byte(key))
	if raw == nil {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return false, fmt.Errorf("%w: record %q: %v", ErrCorrupt, key, err)
	}
	return true, nil
}

func putJSON(b *bolt.Bucket, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), raw)
}

// Load implements workflow.Store.
func (d *DB) Load(_ context.Context, key string) (*workflow.Record, error) {
	var rec *workflow.Record
	err := d.view(func(tx *bolt.Tx) error {
		var r workflow.Record
		ok, err := getJSON(tx.Bucket(bucketWorkflows), key, &r)
		if ok {
			rec = &r
		}
		return err
	})
	return rec, err
}

// LoadSide implements workflow.Store. A side never written is in state normal.
func (d *DB) LoadSide(_ context.Context, role workflow.Role) (workflow.Side, error) {
	side := workflow.Side{Role: role, State: workflow.StateNormal}
	err := d.view(func(tx *bolt.Tx) error {
		_, err := getJSON(tx.Bucket(bucketSides), string(role), &side)
		return err
	})
	return side, err
}

// Update implements workflow.Store: the record, the side and, when the
// side's state changed, a history entry are written in one transaction.
func (d *DB) Update(ctx context.Context, key string, role workflow.Role, fn func(rec **workflow.Record, side *workflow.Side) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return d.update(func(tx *bolt.Tx) error {
		if err := d.checkMeta(tx); err != nil {
			return err
		}
		if err := d.claimRole(tx, role); err != nil {
			return err
		}
		wfs, sides, hist := tx.Bucket(bucketWorkflows), tx.Bucket(bucketSides), tx.Bucket(bucketHistory)
		if wfs == nil || sides == nil || hist == nil {
			return fmt.Errorf("state file %s: %w: missing buckets", d.path, ErrCorrupt)
		}
		var rec *workflow.Record
		var r workflow.Record
		if ok, err := getJSON(wfs, key, &r); err != nil {
			return err
		} else if ok {
			rec = &r
		}
		side := workflow.Side{Role: role}
		if _, err := getJSON(sides, string(role), &side); err != nil {
			return err
		}
		before := side
		if err := fn(&rec, &side); err != nil {
			return err
		}
		if rec != nil {
			if err := putJSON(wfs, key, rec); err != nil {
				return err
			}
		}
		if side != before {
			if err := putJSON(sides, string(role), side); err != nil {
				return err
			}
		}
		if side.State != before.State {
			seq, err := hist.NextSequence()
			if err != nil {
				return err
			}
			e := HistoryEntry{Seq: seq, Time: side.Since, RunID: side.RunID, Role: role, Workflow: key,
				Step: side.Step, From: before.State, To: side.State}
			if e.Time.IsZero() {
				e.Time = d.opts.Now().UTC()
			}
			raw, err := json.Marshal(e)
			if err != nil {
				return err
			}
			k := make([]byte, 8)
			binary.BigEndian.PutUint64(k, seq)
			return hist.Put(k, raw)
		}
		return nil
	})
}

// Snapshot is everything the file holds, for `sdr status`.
type Snapshot struct {
	Path   string        `json:"path"`
	Schema int           `json:"schema"`
	Pair   string        `json:"pair"`
	Role   workflow.Role `json:"role"` // the side the file belongs to; "" before its first run
	// Cluster is the cluster (its name in the config's clusters:) the
	// file belongs to; "" in a file no run with clusters: has stamped.
	Cluster   string            `json:"cluster"`
	Created   string            `json:"created"`
	Workflows []workflow.Record `json:"workflows"`
	Sides     []workflow.Side   `json:"sides"`
	History   []HistoryEntry    `json:"history"`
	Lock      *Holder           `json:"lock,omitempty"`
	// Gone is the run recorded in the lock file that no live process
	// holds: a run that was killed (or whose terminal closed) and did not
	// release the lock. Nil when the last run ended normally.
	Gone *Holder `json:"gone,omitempty"`
	// Progress is what the running step of the run holding the lock
	// reported last (ProgressPath); nil when no live run holds the lock,
	// when its step reports nothing, or when the report is another run's.
	Progress *workflow.ProgressReport `json:"progress,omitempty"`
}

// Snapshot reads the whole file in one read transaction. It keeps the
// last maxHistory transitions (all when maxHistory <= 0).
func (d *DB) Snapshot(maxHistory int) (*Snapshot, error) {
	s := &Snapshot{Path: d.path, Schema: SchemaVersion, Workflows: []workflow.Record{}, Sides: []workflow.Side{}, History: []HistoryEntry{}}
	err := d.view(func(tx *bolt.Tx) error {
		if err := d.checkMeta(tx); err != nil {
			return err
		}
		meta := tx.Bucket(bucketMeta)
		s.Pair, s.Created, s.Cluster = string(meta.Get(keyPair)), string(meta.Get(keyCreated)), fileCluster(tx)
		var err error
		if s.Role, err = fileRole(tx); err != nil {
			return err
		}
		if b := tx.Bucket(bucketWorkflows); b != nil {
			if err := b.ForEach(func(k, v []byte) error {
				var r workflow.Record
				if err := json.Unmarshal(v, &r); err != nil {
					return fmt.Errorf("%w: workflow %q: %v", ErrCorrupt, k, err)
				}
				s.Workflows = append(s.Workflows, r)
				return nil
			}); err != nil {
				return err
			}
		}
		if b := tx.Bucket(bucketSides); b != nil {
			if err := b.ForEach(func(k, v []byte) error {
				var sd workflow.Side
				if err := json.Unmarshal(v, &sd); err != nil {
					return fmt.Errorf("%w: side %q: %v", ErrCorrupt, k, err)
				}
				s.Sides = append(s.Sides, sd)
				return nil
			}); err != nil {
				return err
			}
		}
		if b := tx.Bucket(bucketHistory); b != nil {
			c := b.Cursor()
			for k, v := c.Last(); k != nil && (maxHistory <= 0 || len(s.History) < maxHistory); k, v = c.Prev() {
				var e HistoryEntry
				if err := json.Unmarshal(v, &e); err != nil {
					return fmt.Errorf("%w: history %x: %v", ErrCorrupt, k, err)
				}
				s.History = append([]HistoryEntry{e}, s.History...)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	probe, err := ProbeLock(d.path)
	if err != nil {
		// The lock file cannot be probed (say, another user's file):
		// fall back on the process id it records.
		h, _ := ReadHolder(d.path)
		probe = LockProbe{Held: h.Alive(), Holder: h}
	}
	if probe.Held {
		s.Lock = probe.Holder
		if s.Lock == nil {
			s.Lock = &Holder{} // held, but its holder has not written the file yet
		}
		s.Progress = liveProgress(d.path, s.Lock)
	} else {
		s.Gone = probe.Holder
	}
	return s, nil
}
