package steps

import (
	"context"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/pgsdr/sdr/workflow"
)

// retainWAL creates the permanent physical slot for the main standby and
// raises wal_keep_size, each only when not already so.
func (e *Env) retainWAL(ctx context.Context, rc *workflow.RunContext) error {
	p, _, err := e.findPrimary(ctx)
	if err != nil {
		return err
	}
	slot := e.slotName()
	return e.withAdmin(ctx, p, func(ctx context.Context, c *pgx.Conn) error {
		var slotType string
		var temporary bool
		err := c.QueryRow(ctx, `SELECT slot_type, temporary FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&slotType, &temporary)
		switch {
		case err == pgx.ErrNoRows:
			if _, err := c.Exec(ctx, `SELECT pg_create_physical_replication_slot($1, true)`, slot); err != nil {
				return fmt.Errorf("while creating slot %s on %s: %w", slot, p.Name, err)
			}
			rc.Log.Info("replication slot created", zap.String("node", p.Name), zap.String("slot", slot))
		case err != nil:
			return fmt.Errorf("while looking for slot %s on %s: %w", slot, p.Name, err)
		case slotType != "physical" || temporary:
			return permanent(fmt.Errorf("slot %s on %s is a %s slot (temporary %t), not sdr's permanent physical slot: drop it, then rerun",
				slot, p.Name, slotType, temporary))
		default:
			rc.Log.Info("replication slot already exists", zap.String("node", p.Name), zap.String("slot", slot))
		}
		return e.raiseWalKeep(ctx, rc, p.Name, c)
	})
}

// raiseWalKeep raises wal_keep_size when it is lower than
// raisedWalKeepSizeMB and records the change for 9_finish (walkeep.go).
// The record is written before the change, so that a crash in between
// leaves a record whose value is not in effect, which 9_finish ignores.
func (e *Env) raiseWalKeep(ctx context.Context, rc *workflow.RunContext, node string, c *pgx.Conn) error {
	o, err := queryWalKeep(ctx, c)
	if err != nil {
		return fmt.Errorf("while reading wal_keep_size on %s: %w", node, err)
	}
	prev, err := savedWalKeepChange(ctx, rc)
	if err != nil {
		return err
	}
	d := decideWalKeepRaise(o, prev, raisedWalKeepSizeMB)
	switch {
	case d.Record == nil && prev != nil:
		if err := rc.Forget(ctx, valWalKeepChange); err != nil {
			return err
		}
	case d.Record != nil && (prev == nil || *d.Record != *prev):
		if prev != nil {
			if err := rc.Forget(ctx, valWalKeepChange); err != nil {
				return err
			}
		}
		if _, err := rc.SaveOnce(ctx, valWalKeepChange, d.Record.String()); err != nil {
			return err
		}
	}
	if !d.Raise {
		rc.Log.Info("wal_keep_size left as it is: "+d.Why, zap.String("node", node), zap.Int("wal_keep_size_mb", o.MB))
		return nil
	}
	if _, err := c.Exec(ctx, fmt.Sprintf("ALTER SYSTEM SET wal_keep_size = '%dMB'", d.Record.ToMB)); err != nil {
		return fmt.Errorf("while raising wal_keep_size on %s: %w", node, err)
	}
	if err := reloadAndWait(ctx, c, "wal_keep_size", strconv.Itoa(d.Record.ToMB)); err != nil {
		return fmt.Errorf("on %s: %w", node, err)
	}
	rc.Log.Info("wal_keep_size raised", zap.String("node", node), zap.String("from", o.String()), zap.Int("to_mb", d.Record.ToMB))
	return nil
}

// savedWalKeepChange returns the change record of 4_retain_wal, or nil.
func savedWalKeepChange(ctx context.Context, rc *workflow.RunContext) (*walKeepChange, error) {
	v, ok, err := rc.Value(ctx, valWalKeepChange)
	if err != nil || !ok {
		return nil, err
	}
	c, err := parseWalKeepChange(v)
	if err != nil {
		return nil, permanent(fmt.Errorf("%w: the state file was edited or written by another version; check wal_keep_size on the primary yourself, then rerun with --restart", err))
	}
	return &c, nil
}

// reloadAndWait reloads the configuration and waits (bounded by ctx) until
// the setting shows want. pg_reload_conf only signals the postmaster.
func reloadAndWait(ctx context.Context, c *pgx.Conn, name, want string) error {
	if _, err := c.Exec(ctx, `SELECT pg_reload_conf()`); err != nil {
		return fmt.Errorf("while reloading the configuration: %w", err)
	}
	return poll(ctx, configReloadWait, pollFast, "the reload of "+name, func(ctx context.Context) (bool, error) {
		var got string
		if err := c.QueryRow(ctx, `SELECT setting FROM pg_settings WHERE name = $1`, name).Scan(&got); err != nil {
			return false, err
		}
		if got != want {
			return false, fmt.Errorf("%s is %s, want %s", name, got, want)
		}
		return true, nil
	})
}
