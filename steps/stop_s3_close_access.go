package steps

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

// closeAccess removes sdr's pg_hba.conf block from the live hba_file of
// every primary-cluster node, keeping every other line, and reloads. It
// reloads also when the file no longer has the block (an earlier attempt
// may have written it and died before the reload), and fails when
// PostgreSQL reports errors in the file: PostgreSQL then keeps the old
// rules, sdr's lines included.
func (s *stopRun) closeAccess(ctx context.Context, rc *workflow.RunContext) error {
	e := s.e
	return forEach(ctx, e.primaryNodes(), func(ctx context.Context, n *cluster.Node) error {
		a, err := e.access(ctx, n)
		if err != nil {
			return err
		}
		return e.withAdmin(ctx, n, func(ctx context.Context, c *pgx.Conn) error {
			hbaFile, old, err := hbaFileOf(ctx, a, c)
			if err != nil {
				return err
			}
			updated := cluster.ReplaceBlock(old, e.hbaMarker(), nil)
			if updated != old {
				if err := a.WriteFile(ctx, hbaFile, []byte(updated), 0o600); err != nil {
					return fmt.Errorf("while writing %s on %s: %w", hbaFile, n.Name, err)
				}
			}
			if err := reloadCheckHBA(ctx, c, n.Name, hbaFile); err != nil {
				return err
			}
			if updated != old {
				rc.Log.Info("sdr's pg_hba.conf block removed and reloaded", zap.String("node", n.Name), zap.String("file", hbaFile))
			} else {
				rc.Log.Info("no sdr pg_hba.conf block (already removed); reloaded", zap.String("node", n.Name), zap.String("file", hbaFile))
			}
			return nil
		})
	})
}

// reloadCheckHBA reloads the configuration of the node behind c and fails
// (permanent) when its pg_hba.conf has errors: PostgreSQL then keeps the
// rules it had.
func reloadCheckHBA(ctx context.Context, c *pgx.Conn, node, file string) error {
	if _, err := c.Exec(ctx, `SELECT pg_reload_conf()`); err != nil {
		return fmt.Errorf("while reloading %s: %w", node, err)
	}
	rows, err := c.Query(ctx, `SELECT line_number::text || ': ' || error FROM pg_hba_file_rules WHERE error IS NOT NULL`)
	if err != nil {
		return fmt.Errorf("while checking pg_hba.conf on %s: %w", node, err)
	}
	bad, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("while checking pg_hba.conf on %s: %w", node, err)
	}
	if len(bad) > 0 {
		return permanent(fmt.Errorf("%s on %s has errors, PostgreSQL keeps the old rules: %v", file, node, bad))
	}
	return nil
}
