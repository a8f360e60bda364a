package workflow

import (
	"context"
	"encoding/json"
	"sync"
)

// fakeStore is an in-memory Store. Like the real store it keeps copies, so
// the runner can change nothing outside Update, and it logs every Update
// so tests can check what one transaction wrote.
type fakeStore struct {
	mu      sync.Mutex
	recs    map[string][]byte // JSON, as the real store keeps them
	sides   map[Role]Side
	updates []fakeUpdate
	loads   int
}

// fakeUpdate is what one committed Update changed.
type fakeUpdate struct {
	key                   string
	before, after         *Record
	sideBefore, sideAfter Side
}

var _ Store = (*fakeStore)(nil)

func newFakeStore() *fakeStore {
	return &fakeStore{recs: map[string][]byte{}, sides: map[Role]Side{}}
}

func (f *fakeStore) decode(key string) *Record {
	raw, ok := f.recs[key]
	if !ok {
		return nil
	}
	var r Record
	if err := json.Unmarshal(raw, &r); err != nil {
		panic(err)
	}
	return &r
}

func (f *fakeStore) Load(ctx context.Context, key string) (*Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.loads++
	return f.decode(key), nil
}

func (f *fakeStore) LoadSide(ctx context.Context, role Role) (Side, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.sides[role]
	if !ok {
		s = Side{Role: role, State: StateNormal}
	}
	return s, nil
}

// Update honours ctx like the real store: a cancelled context writes nothing.
func (f *fakeStore) Update(ctx context.Context, key string, role Role, fn func(rec **Record, side *Side) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	rec := f.decode(key)
	side, ok := f.sides[role]
	if !ok {
		side = Side{Role: role}
	}
	sideBefore := side
	if err := fn(&rec, &side); err != nil {
		return err
	}
	u := fakeUpdate{key: key, before: f.decode(key), sideBefore: sideBefore, sideAfter: side}
	if rec != nil {
		raw, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		f.recs[key] = raw
		u.after = f.decode(key)
	}
	f.sides[role] = side
	f.updates = append(f.updates, u)
	return nil
}

// record returns the stored record of key (nil if none).
func (f *fakeStore) record(key string) *Record {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.decode(key)
}

func (f *fakeStore) side(role Role) Side {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sides[role]
}

// transition returns the Update that moved step from another status to
// status, the n-th time (0-based) that happened; nil if none.
func (f *fakeStore) transition(step string, status StepStatus, n int) *fakeUpdate {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.updates {
		u := &f.updates[i]
		if u.after == nil {
			continue
		}
		a := u.after.Step(step)
		if a == nil || a.Status != status {
			continue
		}
		if u.before != nil {
			if b := u.before.Step(step); b != nil && b.Status == status && b.Attempts == a.Attempts {
				continue
			}
		}
		if n == 0 {
			return u
		}
		n--
	}
	return nil
}

func (f *fakeStore) updateCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.updates)
}
