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

// keyCluster holds the cluster (its name in the config's clusters:) a
// state file belongs to. A cluster's role moves after a failover or a
// switchover; its state file stays with it.
var keyCluster = []byte("cluster")

// fileCluster returns the cluster the file is stamped with ("" if none).
func fileCluster(tx *bolt.Tx) string {
	if meta := tx.Bucket(bucketMeta); meta != nil {
		return string(meta.Get(keyCluster))
	}
	return ""
}

// checkCluster decides, when the run names its cluster, whether the file
// is this cluster's: done is true when the cluster stamp settles it (then
// the side stamp does not matter: roles move), err refuses another
// cluster's file.
func (d *DB) checkCluster(tx *bolt.Tx, role workflow.Role) (done bool, err error) {
	c := d.opts.Cluster
	if c == "" {
		return false, nil
	}
	switch owner := fileCluster(tx); owner {
	case "":
		return false, nil
	case c:
		return true, nil
	default:
		return false, fmt.Errorf("state file %s: %w: it belongs to cluster %s, this run acts on cluster %s (--role %s, as the config's primary: says); "+
			"give cluster %s's own --state file, or check primary: in the config", d.path, ErrOtherCluster, owner, c, role, c)
	}
}

// claimRole checks that the file belongs to role and stamps it when it is
// not stamped yet (with the side it already holds, or with role when it
// holds nothing). A file of the other side is refused with ErrOtherSide
// and nothing is written. When the run names its cluster, the file is
// stamped with it, and from then on the cluster decides: a file of the
// other cluster is refused with ErrOtherCluster, whatever role it played.
func (d *DB) claimRole(tx *bolt.Tx, role workflow.Role) error {
	meta := tx.Bucket(bucketMeta)
	if done, err := d.checkCluster(tx, role); err != nil || done {
		if err == nil && meta.Get(keyRole) == nil {
			err = meta.Put(keyRole, []byte(role))
		}
		return err
	}
	if d.opts.Cluster != "" {
		if err := meta.Put(keyCluster, []byte(d.opts.Cluster)); err != nil {
			return err
		}
	}
	owner, err := fileRole(tx)
	if err != nil {
		return err
	}
	if owner != "" && owner != role {
		return d.otherSide(owner, role)
	}
	if meta.Get(keyRole) == nil {
		return meta.Put(keyRole, []byte(role))
	}
	return nil
}

// checkRole is claimRole for a read-only transaction: it refuses a file of
// the other side and writes nothing.
func (d *DB) checkRole(tx *bolt.Tx, role workflow.Role) error {
	if done, err := d.checkCluster(tx, role); err != nil || done {
		return err
	}
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
