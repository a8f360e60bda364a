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
		var cur int
		if err := c.QueryRow(ctx, `SELECT setting::int FROM pg_settings WHERE name = 'wal_keep_size'`).Scan(&cur); err != nil {
			return fmt.Errorf("while reading wal_keep_size on %s: %w", p.Name, err)
		}
		if cur >= raisedWalKeepSizeMB {
			rc.Log.Info("wal_keep_size already high enough", zap.String("node", p.Name), zap.Int("wal_keep_size_mb", cur))
			return nil
		}
		if _, err := c.Exec(ctx, "ALTER SYSTEM SET wal_keep_size = '"+strconv.Itoa(raisedWalKeepSizeMB)+"MB'"); err != nil {
			return fmt.Errorf("while raising wal_keep_size on %s: %w", p.Name, err)
		}
		if err := reloadAndWait(ctx, c, "wal_keep_size", strconv.Itoa(raisedWalKeepSizeMB)); err != nil {
			return fmt.Errorf("on %s: %w", p.Name, err)
		}
		rc.Log.Info("wal_keep_size raised", zap.String("node", p.Name), zap.Int("from_mb", cur), zap.Int("to_mb", raisedWalKeepSizeMB))
		return nil
	})
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
