package steps

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

// waitStandby waits, bounded by --timeout, until the main standby streams
// from the primary under its application_name.
func (e *Env) waitStandby(ctx context.Context, rc *workflow.RunContext) error {
	p, _, err := e.findPrimary(ctx)
	if err != nil {
		return err
	}
	app := cluster.AppName(e.Config.Name, e.Config.Standby.Main)
	rc.Log.Info("waiting for the main standby to stream", zap.String("node", p.Name), zap.String("application_name", app),
		zap.Duration("timeout", e.Timeout))
	var state, lsn string
	err = poll(ctx, e.Timeout, pollStream, fmt.Sprintf("%s to stream from %s", app, p.Name), func(ctx context.Context) (bool, error) {
		err := e.withAdmin(ctx, p, func(ctx context.Context, c *pgx.Conn) error {
			return c.QueryRow(ctx, `SELECT state, coalesce(replay_lsn::text, '') FROM pg_stat_replication WHERE application_name = $1
				ORDER BY (state = 'streaming') DESC LIMIT 1`, app).Scan(&state, &lsn)
		})
		if errors.Is(err, pgx.ErrNoRows) {
			return false, fmt.Errorf("no walsender for %s yet", app)
		}
		if err != nil {
			return false, err
		}
		if state != "streaming" {
			return false, fmt.Errorf("walsender for %s is %s", app, state)
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	rc.Log.Info("main standby is streaming", zap.String("node", p.Name), zap.String("application_name", app), zap.String("lsn", lsn))
	return nil
}
