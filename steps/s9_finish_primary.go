package steps

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/pgsdr/sdr/workflow"
)

// finishPrimary restores wal_keep_size to the value saved by
// 3_prepare_replication: the slot keeps the WAL the main standby needs.
func (e *Env) finishPrimary(ctx context.Context, rc *workflow.RunContext) error {
	orig, ok, err := rc.Value(ctx, valWalKeepSize)
	if err != nil {
		return err
	}
	if !ok {
		return permanent(fmt.Errorf("no original wal_keep_size recorded by 3_prepare_replication; rerun with --restart"))
	}
	inAuto, _, err := rc.Value(ctx, valWalKeepSizeAuto)
	if err != nil {
		return err
	}
	p, _, err := e.findPrimary(ctx)
	if err != nil {
		return err
	}
	return e.withAdmin(ctx, p, func(ctx context.Context, c *pgx.Conn) error {
		var cur string
		if err := c.QueryRow(ctx, `SELECT setting FROM pg_settings WHERE name = 'wal_keep_size'`).Scan(&cur); err != nil {
			return fmt.Errorf("while reading wal_keep_size on %s: %w", p.Name, err)
		}
		if cur == orig {
			rc.Log.Info("wal_keep_size already at its original value", zap.String("node", p.Name), zap.String("wal_keep_size_mb", orig))
			return nil
		}
		sql := "ALTER SYSTEM RESET wal_keep_size"
		if inAuto == "true" {
			sql = "ALTER SYSTEM SET wal_keep_size = '" + orig + "MB'"
		}
		if _, err := c.Exec(ctx, sql); err != nil {
			return fmt.Errorf("while restoring wal_keep_size on %s: %w", p.Name, err)
		}
		if err := reloadAndWait(ctx, c, "wal_keep_size", orig); err != nil {
			return fmt.Errorf("on %s: %w", p.Name, err)
		}
		rc.Log.Info("wal_keep_size restored", zap.String("node", p.Name), zap.String("from_mb", cur), zap.String("to_mb", orig))
		return nil
	})
}
