package store

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/pgsdr/sdr/workflow"
)

// keyRole holds the side a state file belongs to ("primary" or "standby").
// Files written before the stamp existed have none; their side is inferred
// from what they hold (fileRole) and stamped at their next write.
var keyRole = []byte("role")

// fileRole returns the side the file belongs to: its stamp, else the side
// of the first run it recorded (history entry 1), else the side of its
// workflow records or side states when they name exactly one. "" means
// the file has recorded nothing yet: the next run's side claims it.
func fileRole(tx *bolt.Tx) (workflow.Role, error) {
	if meta := tx.Bucket(bucketMeta); meta != nil {
		if r := meta.Get(keyRole); r != nil {
			return workflow.Role(r), nil
		}
	}
	if h := tx.Bucket(bucketHistory); h != nil {
		if k, v := h.Cursor().First(); k != nil {
			var e HistoryEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return "", fmt.Errorf("%w: history %x: %v", ErrCorrupt, k, err)
			}
			if e.Role != "" {
				return e.Role, nil
			}
		}
	}
	seen := map[workflow.Role]bool{}
	if b := tx.Bucket(bucketWorkflows); b != nil {
		if err := b.ForEach(func(k, v []byte) error {
			var r workflow.Record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("%w: workflow %q: %v", ErrCorrupt, k, err)
			}
			seen[r.Role] = true
			return nil
		}); err != nil {
			return "", err
		}
	}
	if b := tx.Bucket(bucketSides); b != nil {
		_ = b.ForEach(func(k, _ []byte) error { seen[workflow.Role(k)] = true; return nil })
	}
	delete(seen, "")
	if len(seen) == 1 {
		for r := range seen {
			return r, nil
		}
	}
	return "", nil
}

// claimRole checks that the file belongs to role and stamps it when it is
// not stamped yet (with the side it already holds, or with role when it
// holds nothing). A file of the other side is refused with ErrOtherSide
// and nothing is written.
func (d *DB) claimRole(tx *bolt.Tx, role workflow.Role) error {
	owner, err := fileRole(tx)
	if err != nil {
		return err
	}
	if owner != "" && owner != role {
		return d.otherSide(owner, role)
	}
	meta := tx.Bucket(bucketMeta)
	if meta.Get(keyRole) == nil {
		return meta.Put(keyRole, []byte(role))
	}
	return nil
}

// checkRole is claimRole for a read-only transaction: it refuses a file of
// the other side and writes nothing.
func (d *DB) checkRole(tx *bolt.Tx, role workflow.Role) error {
	owner, err := fileRole(tx)
	if err != nil {
		return err
	}
	if owner != "" && owner != role {
		return d.otherSide(owner, role)
	}
	return nil
}

func (d *DB) otherSide(owner, role workflow.Role) error {
	return fmt.Errorf("state file %s: %w: it holds the %s side (written by sdr start --role %s), this run is --role %s; give this side's own --state file",
		d.path, ErrOtherSide, owner, owner, role)
}
