package steps

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

// rolesMovedError says that the config's primary: contradicts the live
// facts: the DR cluster runs a primary of this pair's system.
func rolesMovedError(cfg *cluster.Config, node string, timeline int) error {
	return permanent(fmt.Errorf("the config says primary: %s, but node %s of cluster %s runs as a primary with the same system identifier "+
		"(timeline %d): the primary moved (a failover?). Set \"primary: %s\" in %s; to make cluster %s the DR side again, run start --role standby on it. "+
		"Nothing was changed", cfg.PrimaryName, node, cfg.StandbyName, timeline, cfg.StandbyName, cfg.Path, cfg.PrimaryName))
}

// checkRolesNotMoved refuses a primary-side run when the DR cluster's main
// standby answers as a primary with the primary cluster's system
// identifier: the roles moved and the config's primary: was not changed.
// It is best effort: when the DR side cannot be reached, nothing is decided.
func (e *Env) checkRolesNotMoved(ctx context.Context, rc *workflow.RunContext) error {
	main, _ := e.mainStandby()
	bound := e.Config.Timeouts.Connect.Duration + 2*time.Second
	cctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	var drSys string
	var inRecovery bool
	var tli int
	err := e.withAdmin(cctx, main, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, drFactsSQL).Scan(&inRecovery, &drSys, &tli)
	})
	if err != nil {
		rc.Log.Debug("DR main standby not reached to check that the roles did not move", zap.String("node", main.Name), zap.Error(err))
		return nil
	}
	if inRecovery {
		return nil
	}
	for _, n := range e.primaryNodes() {
		a, err := e.access(cctx, n)
		if err != nil {
			continue
		}
		cd, err := cluster.ReadControlData(cctx, a, n.BinDir, n.DataDir)
		if err != nil {
			continue
		}
		if cd.SystemID == drSys {
			return rolesMovedError(e.Config, main.Name, tli)
		}
		return nil
	}
	return nil
}
