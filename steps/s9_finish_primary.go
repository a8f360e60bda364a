package steps

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/pgsdr/sdr/workflow"
)

// finishPrimary puts wal_keep_size back if 4_retain_wal raised it and the
// raised value is still in effect (walkeep.go), then deletes the record of
// the change: the slot keeps the WAL the main standby needs.
func (e *Env) finishPrimary(ctx context.Context, rc *workflow.RunContext) error {
	return e.restoreWalKeep(ctx, rc.Log, rc)
}

// savedValues are the values start/primary saved: read and consumed by
// its own 9_finish (the RunContext), or by stop through the start record.
type savedValues interface {
	Value(ctx context.Context, name string) (string, bool, error)
	Forget(ctx context.Context, name string) error
}

// restoreWalKeep puts wal_keep_size back by the change record in vals
// (walkeep.go), then deletes the record.
func (e *Env) restoreWalKeep(ctx context.Context, log *zap.Logger, vals savedValues) error {
	rec, legacy, err := walKeepRecord(ctx, vals)
	if err != nil {
		return err
	}
	p, _, err := e.findPrimary(ctx)
	if err != nil {
		return err
	}
	err = e.withAdmin(ctx, p, func(ctx context.Context, c *pgx.Conn) error {
		o, err := queryWalKeep(ctx, c)
		if err != nil {
			return fmt.Errorf("while reading wal_keep_size on %s: %w", p.Name, err)
		}
		d := decideWalKeepRestore(o, rec)
		if d.SQL == "" {
			log.Info("wal_keep_size left as it is: "+d.Why, zap.String("node", p.Name), zap.Int("wal_keep_size_mb", o.MB))
			return nil
		}
		if _, err := c.Exec(ctx, d.SQL); err != nil {
			return fmt.Errorf("while restoring wal_keep_size on %s: %w", p.Name, err)
		}
		if err := reloadAndWaitWalKeep(ctx, c, *rec); err != nil {
			return fmt.Errorf("on %s: %w", p.Name, err)
		}
		log.Info("wal_keep_size restored: "+d.Why, zap.String("node", p.Name), zap.String("from", o.String()))
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range []string{valWalKeepChange, valLegacyWalKeepSize, valLegacyWalKeepSizeAuto} {
		if err := vals.Forget(ctx, k); err != nil {
			return err
		}
	}
	if legacy {
		log.Debug("values saved by an earlier sdr version consumed", zap.String("value", valLegacyWalKeepSize))
	}
	return nil
}

// walKeepRecord returns the record of sdr's raise of wal_keep_size in
// vals (nil when there is none), and whether it was made from the values
// an earlier version of sdr saved.
func walKeepRecord(ctx context.Context, vals savedValues) (*walKeepChange, bool, error) {
	rec, err := savedWalKeepChange(ctx, vals)
	if err != nil || rec != nil {
		return rec, false, err
	}
	orig, origSet, err := vals.Value(ctx, valLegacyWalKeepSize)
	if err != nil {
		return nil, false, err
	}
	auto, _, err := vals.Value(ctx, valLegacyWalKeepSizeAuto)
	if err != nil {
		return nil, false, err
	}
	c, ok, err := legacyWalKeepChange(orig, origSet, auto)
	if err != nil {
		return nil, false, permanent(fmt.Errorf("%w: check wal_keep_size on the primary yourself", err))
	}
	if !ok {
		return nil, false, nil
	}
	return &c, true, nil
}

// reloadAndWaitWalKeep reloads the configuration and waits (bounded) until
// wal_keep_size shows that the restore of rec took effect.
func reloadAndWaitWalKeep(ctx context.Context, c *pgx.Conn, rec walKeepChange) error {
	if _, err := c.Exec(ctx, `SELECT pg_reload_conf()`); err != nil {
		return fmt.Errorf("while reloading the configuration: %w", err)
	}
	return poll(ctx, configReloadWait, pollFast, "the reload of wal_keep_size", func(ctx context.Context) (bool, error) {
		o, err := queryWalKeep(ctx, c)
		if err != nil {
			return false, err
		}
		if !walKeepRestored(o, rec) {
			return false, fmt.Errorf("wal_keep_size is %s", o)
		}
		return true, nil
	})
}
