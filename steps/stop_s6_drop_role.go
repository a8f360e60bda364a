package steps

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/pgsdr/sdr/workflow"
)

// dropRole leaves replication.user in place by default. With --drop-role
// it drops the role when sdr created it for this pair and no session of
// it is open (decideDropRole); a role that is already gone is fine.
func (s *stopRun) dropRole(ctx context.Context, rc *workflow.RunContext) error {
	e := s.e
	p, _, err := e.findPrimary(ctx)
	if err != nil {
		return err
	}
	user := e.Config.Replication.User
	return e.withAdmin(ctx, p, func(ctx context.Context, c *pgx.Conn) error {
		o, err := e.observeRole(ctx, c, p.Name)
		if err != nil {
			return err
		}
		sessions := 0
		if s.opts.DropRole && o.Exists {
			if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE usename = $1`, user).Scan(&sessions); err != nil {
				return fmt.Errorf("while counting the sessions of %s on %s: %w", user, p.Name, err)
			}
		}
		d, err := decideDropRole(user, e.Config.Name, o, s.opts.DropRole, sessions)
		if err != nil {
			return err
		}
		if !d.Drop {
			rc.Log.Info(d.Why, zap.String("node", p.Name))
			return nil
		}
		if _, err := c.Exec(ctx, "DROP ROLE IF EXISTS "+pgIdent(user)); err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Code == "2BP01" { // dependent_objects_still_exist
				return permanent(fmt.Errorf("while dropping role %s on %s: it still owns objects or holds privileges (%s). "+
					"In each database: REASSIGN OWNED BY %s TO %s; DROP OWNED BY %s; then rerun. "+
					"Or keep the role: rerun with --restart and without --drop-role: %w",
					user, p.Name, pe.Detail, pgIdent(user), pgIdent(e.Config.Postgres.User), pgIdent(user), err))
			}
			return fmt.Errorf("while dropping role %s on %s: %w", user, p.Name, err)
		}
		rc.Log.Info("replication role dropped: "+d.Why, zap.String("node", p.Name), zap.String("role", user))
		return nil
	})
}
