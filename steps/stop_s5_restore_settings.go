package steps

import (
	"context"

	"github.com/pgsdr/sdr/workflow"
)

// restoreSettings puts back what start changed in the primary's settings.
// Today that is wal_keep_size: start's 4_retain_wal records its raise in
// the start record, and start's 9_finish consumes the record. A start that
// did not get to 9_finish leaves it, and this step applies the same rule
// (walkeep.go): the value goes back only while it is still exactly sdr's
// and still comes from postgresql.auto.conf; then the record is deleted
// from the start record. Without a record there is nothing to put back.
func (s *stopRun) restoreSettings(ctx context.Context, rc *workflow.RunContext) error {
	return s.e.restoreWalKeep(ctx, rc.Log, startValues{rc: rc, key: startKey(workflow.RolePrimary)})
}
