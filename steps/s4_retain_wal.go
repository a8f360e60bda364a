package steps

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/pgsdr/sdr/workflow"
)

// retainWAL creates the permanent physical slot for the main standby (and recreates it when it
// has lost WAL) and raises wal_keep_size, each only when not already so.
func (e *Env) retainWAL(ctx context.Context, rc *workflow.RunContext) error {
	p, _, err := e.findPrimary(ctx)
	if err != nil {
		return err
	}
	slot := e.slotName()
	return e.withAdmin(ctx, p, func(ctx context.Context, c *pgx.Conn) error {
		o, err := querySlot(ctx, c, p.Name, slot)
		if err != nil {
			return err
		}
		switch act := decideSlot(o); act {
		case slotCreate:
			if _, err := c.Exec(ctx, `SELECT pg_create_physical_replication_slot($1, true)`, slot); err != nil {
				return fmt.Errorf("while creating slot %s on %s: %w", slot, p.Name, err)
			}
			rc.Log.Info("replication slot created", zap.String("node", p.Name), zap.String("slot", slot))
		case slotRecreate:
			// WAL the slot promised is gone: no copy can stream through
			// it. A new slot reserves from the current position, and
			// 7_build_standby makes a new copy through it.
			if _, err := c.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, slot); err != nil {
				return fmt.Errorf("while dropping lost slot %s on %s: %w", slot, p.Name, err)
			}
			if _, err := c.Exec(ctx, `SELECT pg_create_physical_replication_slot($1, true)`, slot); err != nil {
				return fmt.Errorf("while creating slot %s again on %s: %w", slot, p.Name, err)
			}
			rc.Log.Warn("replication slot had lost WAL ("+o.lostWhy()+"); dropped and created again: the main standby needs a new copy",
				zap.String("node", p.Name), zap.String("slot", slot))
		case slotRefuseLostActive, slotRefuseKind:
			return slotRefusal(act, p.Name, slot, o)
		default:
			rc.Log.Info("replication slot already exists", zap.String("node", p.Name), zap.String("slot", slot), zap.String("wal_status", o.WalStatus))
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
	if err := keepWalKeepRecord(ctx, rc, prev, d); err != nil {
		return err
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

// keepWalKeepRecord makes the saved change record the one d holds
// (none when d holds none); prev is the record saved before.
func keepWalKeepRecord(ctx context.Context, rc *workflow.RunContext, prev *walKeepChange, d walKeepRaise) error {
	switch {
	case d.Record == nil && prev != nil:
		return rc.Forget(ctx, valWalKeepChange)
	case d.Record != nil && (prev == nil || *d.Record != *prev):
		if prev != nil {
			if err := rc.Forget(ctx, valWalKeepChange); err != nil {
				return err
			}
		}
		_, err := rc.SaveOnce(ctx, valWalKeepChange, d.Record.String())
		return err
	}
	return nil
}

// querySlot reads the pair's slot on the primary (Exists false when there
// is none) and whether a process holds it.
func querySlot(ctx context.Context, c *pgx.Conn, node, slot string) (slotObs, error) {
	var o slotObs
	err := c.QueryRow(ctx, features(versionOf(c)).slotSQL(), slot).Scan(&o.Type, &o.Temporary, &o.WalStatus, &o.Active, &o.InvalidationReason)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return o, fmt.Errorf("while looking for slot %s on %s: %w", slot, node, err)
	default:
		o.Exists = true
	}
	return o, nil
}

// slotRefusal is why 4_retain_wal refuses the slot it found (act is
// slotRefuseLostActive or slotRefuseKind).
func slotRefusal(act slotAction, node, slot string, o slotObs) error {
	if act == slotRefuseLostActive {
		return fmt.Errorf("slot %s on %s has lost WAL (%s) but a walsender still holds it; "+
			"sdr recreates it once it is free: stop the main standby's stream (or wait until it fails), then rerun", slot, node, o.lostWhy())
	}
	return permanent(fmt.Errorf("slot %s on %s is a %s slot (temporary %t), not sdr's permanent physical slot: drop it, then rerun",
		slot, node, o.Type, o.Temporary))
}

// savedWalKeepChange returns the change record of 4_retain_wal, or nil.
func savedWalKeepChange(ctx context.Context, vals savedValues) (*walKeepChange, error) {
	v, ok, err := vals.Value(ctx, valWalKeepChange)
	if err != nil || !ok {
		return nil, err
	}
	c, err := parseWalKeepChange(v)
	if err != nil {
		return nil, permanent(fmt.Errorf("%w: the state file was edited or written by another version; check wal_keep_size on the primary yourself, then rerun with --restart", err))
	}
	return &c, nil
}

// reloadSettingSQL reads a setting as the server has it now.
const reloadSettingSQL = `SELECT setting FROM pg_settings WHERE name = $1`

// reloadAndWait reloads the configuration and waits (bounded by ctx) until
// the setting shows want. pg_reload_conf only signals the postmaster.
func reloadAndWait(ctx context.Context, c *pgx.Conn, name, want string) error {
	if _, err := c.Exec(ctx, `SELECT pg_reload_conf()`); err != nil {
		return fmt.Errorf("while reloading the configuration: %w", err)
	}
	return poll(ctx, configReloadWait, pollFast, "the reload of "+name, func(ctx context.Context) (bool, error) {
		var got string
		if err := c.QueryRow(ctx, reloadSettingSQL, name).Scan(&got); err != nil {
			return false, err
		}
		if got != want {
			return false, fmt.Errorf("%s is %s, want %s", name, got, want)
		}
		return true, nil
	})
}

type slotAction int

const (
	slotKeep slotAction = iota
	slotCreate
	slotRecreate         // lost WAL, not in use: drop and create again
	slotRefuseLostActive // lost WAL but held by a walsender
	slotRefuseKind       // a slot of that name that is not sdr's kind
)

// decideSlot decides what 4_retain_wal does with the pair's slot. A slot
// whose wal_status is "lost" is never accepted: a standby cannot stream
// through it.
func decideSlot(o slotObs) slotAction {
	switch {
	case !o.Exists:
		return slotCreate
	case o.Type != "physical" || o.Temporary:
		return slotRefuseKind
	case o.WalStatus == "lost" && o.Active:
		return slotRefuseLostActive
	case o.WalStatus == "lost":
		return slotRecreate
	}
	return slotKeep
}
