package steps

import (
	"context"

	"go.uber.org/zap"

	"github.com/pgsdr/sdr/workflow"
)

// prepare re-validates the config. The CLI has already validated it and
// taken the run lock; the runner records the run's inputs.
func (e *Env) prepare(_ context.Context, rc *workflow.RunContext) error {
	if err := e.Config.Validate(); err != nil {
		return permanent(err)
	}
	rc.Log.Info("inputs recorded", zap.String("pair", e.Config.Name), zap.Int("primary_nodes", len(e.Config.Primary.Nodes)),
		zap.Int("standby_nodes", len(e.Config.Standby.Nodes)), zap.String("main_standby", e.Config.Standby.Main),
		zap.Duration("timeout", e.Timeout))
	return nil
}
