package steps

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

// hbaMarker marks sdr's block in pg_hba.conf; one block per DR pair.
func (e *Env) hbaMarker() string { return e.Config.Name }

// openAccess writes sdr's pg_hba.conf block (replication from every
// standby node) on every primary-cluster node and reloads. The file of a
// node whose block is already right is not rewritten.
func (e *Env) openAccess(ctx context.Context, rc *workflow.RunContext) error {
	lines := hbaLines(e.Config, e.Config.Standby.Nodes)
	var hosts []string
	for _, n := range e.Config.Standby.Nodes {
		hosts = append(hosts, n.ReplHost())
	}
	conns := hbaConns(e.Config.Replication.User, e.Config.Postgres.Database, hosts)
	return forEach(ctx, e.primaryNodes(), func(ctx context.Context, n *cluster.Node) error {
		changed, err := e.ensureHBABlock(ctx, n, lines, conns)
		if err != nil {
			return err
		}
		if changed {
			rc.Log.Info("pg_hba.conf block written and reloaded", zap.String("node", n.Name), zap.Int("lines", len(lines)))
		} else {
			rc.Log.Info("pg_hba.conf block already in place", zap.String("node", n.Name))
		}
		return nil
	})
}

// ensureHBABlock makes n's live pg_hba.conf contain exactly sdr's block
// with lines, keeping every other line, and reloads when it changed. A new
// block goes where it takes effect for conns; a line that would shadow it
// is refused (hba.go).
func (e *Env) ensureHBABlock(ctx context.Context, n *cluster.Node, lines []string, conns []hbaConn) (bool, error) {
	a, err := e.access(ctx, n)
	if err != nil {
		return false, err
	}
	changed := false
	err = e.withAdmin(ctx, n, func(ctx context.Context, c *pgx.Conn) error {
		hbaFile, old, err := hbaFileOf(ctx, a, c)
		if err != nil {
			return err
		}
		f := features(versionOf(c))
		place, err := placeHBABlock(hbaFile+" on "+n.Name, old, e.hbaMarker(), conns, f.hbaSyntax())
		if err != nil {
			return err
		}
		updated := cluster.InsertBlockBefore(old, e.hbaMarker(), lines, place.Before)
		if updated != old {
			if err := a.WriteFile(ctx, hbaFile, []byte(updated), 0o600); err != nil {
				return fmt.Errorf("while writing %s on %s: %w", hbaFile, n.Name, err)
			}
			changed = true
		}
		if _, err := c.Exec(ctx, `SELECT pg_reload_conf()`); err != nil {
			return fmt.Errorf("while reloading %s: %w", n.Name, err)
		}
		var bad []string
		rows, err := c.Query(ctx, f.hbaErrorsSQL())
		if err != nil {
			return fmt.Errorf("while checking pg_hba.conf on %s: %w", n.Name, err)
		}
		bad, err = pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("while checking pg_hba.conf on %s: %w", n.Name, err)
		}
		if len(bad) > 0 {
			return permanent(fmt.Errorf("%s on %s has errors, PostgreSQL keeps the old rules: %v", hbaFile, n.Name, bad))
		}
		return nil
	})
	return changed, err
}

// hbaFileOf returns the live hba_file of the node behind c and its
// content, read through a.
func hbaFileOf(ctx context.Context, a cluster.Access, c *pgx.Conn) (string, string, error) {
	node := a.Node().Name
	var hbaFile string
	if err := c.QueryRow(ctx, `SELECT current_setting('hba_file')`).Scan(&hbaFile); err != nil {
		return "", "", fmt.Errorf("while reading hba_file on %s: %w", node, err)
	}
	raw, err := a.ReadFile(ctx, hbaFile)
	if err != nil {
		return "", "", fmt.Errorf("while reading %s on %s: %w", hbaFile, node, err)
	}
	return hbaFile, string(raw), nil
}
