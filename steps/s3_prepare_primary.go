package steps

import (
	"context"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/pgsdr/sdr/workflow"
)

// prepareReplicationPrimary creates or refreshes the replication role on
// the primary: LOGIN REPLICATION and nothing more, marked as sdr's
// (role.go). It checks the role again, as 2_check_cluster did, before it
// changes anything.
func (e *Env) prepareReplicationPrimary(ctx context.Context, rc *workflow.RunContext) error {
	p, _, err := e.findPrimary(ctx)
	if err != nil {
		return err
	}
	user := e.Config.Replication.User
	return e.withAdmin(ctx, p, func(ctx context.Context, c *pgx.Conn) error {
		a, err := e.checkRole(ctx, c, p.Name)
		if err != nil {
			return err
		}
		if a.none() {
			rc.Log.Info("replication role already up to date", zap.String("node", p.Name), zap.String("role", user))
			return nil
		}
		if err := e.applyRole(ctx, c, p.Name, a); err != nil {
			return err
		}
		rc.Log.Info("replication role ready", zap.String("node", p.Name), zap.String("role", user),
			zap.Bool("created", a.Create), zap.Bool("privileges_set", a.SetAttrs), zap.Bool("password_set", a.SetPassword))
		return nil
	})
}
