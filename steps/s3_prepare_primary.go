package steps

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/pgsdr/sdr/workflow"
)

// prepareReplicationPrimary creates or refreshes the replication role on
// the primary.
func (e *Env) prepareReplicationPrimary(ctx context.Context, rc *workflow.RunContext) error {
	p, _, err := e.findPrimary(ctx)
	if err != nil {
		return err
	}
	user := e.Config.Replication.User
	return e.withAdmin(ctx, p, func(ctx context.Context, c *pgx.Conn) error {
		var exists, canRepl, canLogin bool
		var stored *string
		err := c.QueryRow(ctx, `SELECT true, rolreplication, rolcanlogin, rolpassword FROM pg_authid WHERE rolname = $1`, user).
			Scan(&exists, &canRepl, &canLogin, &stored)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("while looking up role %s on %s: %w", user, p.Name, err)
		}
		pwOK := stored != nil && scramMatches(*stored, e.Password)
		if !exists || !canRepl || !canLogin || !pwOK {
			verifier, err := newScramVerifier(e.Password)
			if err != nil {
				return err
			}
			verb := "ALTER"
			if !exists {
				verb = "CREATE"
			}
			// The verifier, not the password, is sent; it is not logged.
			sql := fmt.Sprintf("%s ROLE %s WITH LOGIN REPLICATION PASSWORD '%s'", verb, pgIdent(user), verifier)
			if _, err := c.Exec(ctx, sql); err != nil {
				return fmt.Errorf("while running %s ROLE %s on %s: %w", verb, user, p.Name, err)
			}
			rc.Log.Info("replication role ready", zap.String("node", p.Name), zap.String("role", user), zap.String("action", verb))
		} else {
			rc.Log.Info("replication role already up to date", zap.String("node", p.Name), zap.String("role", user))
		}
		return nil
	})
}
