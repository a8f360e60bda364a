package steps

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

// ErrSideLocked means another sdr run works on the DR side of the pair
// (its run lock is held): the run is refused before anything is recorded
// or changed.
var ErrSideLocked = errors.New("another sdr run works on this side of the pair")

// sideLockWait bounds how long a run waits for the DR side's run lock.
const sideLockWait = 3 * time.Second

// sideLock is the run lock a run holds on its side (HoldSide).
type sideLock struct {
	mu    sync.Mutex
	lock  *cluster.NodeLock
	tried bool // taken, or found impossible (the main node cannot be reached)
}

// HoldSide returns the hook (workflow.Options.BeforeSteps) that takes the
// run lock of the DR side for a run of role standby (start, stop,
// failover, the switchover's promote half): a node lock on run.lock in the
// main standby's work directory, held until Close. Two such runs (from two
// state files, or two hosts) never interleave their steps: the second is
// refused, naming the holder, with nothing recorded. When the main standby
// cannot be reached, or its work directory cannot be made, the run goes on
// without the lock (its steps reach that node, or do without it) and says
// so. The primary side takes none: sdr keeps nothing beside a
// primary-cluster node's data directory.
func (e *Env) HoldSide(role workflow.Role, holder string, log *zap.Logger) func(context.Context) error {
	return func(ctx context.Context) error {
		if e.ReadOnly || role != workflow.RoleStandby {
			return nil
		}
		e.side.mu.Lock()
		defer e.side.mu.Unlock()
		if e.side.tried {
			return nil
		}
		e.side.tried = true
		n, _ := e.mainStandby()
		cl := e.Config.StandbyName
		if n == nil {
			return nil
		}
		warn := func(err error) error {
			log.Warn("the run lock of this side was not taken; this run goes on without it", zap.String("node", n.Name),
				zap.String("cluster", cl), zap.Error(err))
			return nil
		}
		a, err := e.access(ctx, n)
		if err != nil {
			return warn(err)
		}
		lay, err := e.layoutOf(ctx, n)
		if err != nil {
			return warn(err)
		}
		cctx, cancel := e.cmdCtx(ctx)
		defer cancel()
		file := path.Join(lay.Work, "run.lock")
		// A few seconds of waiting cover a run killed a moment ago, whose
		// session sshd is still ending.
		l, err := cluster.LockNodeMakingDir(cctx, a, file, holder, sideLockWait)
		if errors.Is(err, cluster.ErrNodeLocked) {
			return fmt.Errorf("%w (cluster %s): %w; nothing was changed: let that run finish, or stop it, then run this command again",
				ErrSideLocked, cl, err)
		}
		if err != nil {
			return warn(err)
		}
		e.side.lock = l
		return nil
	}
}

// releaseSide lets go of the side's run lock, if this run holds it.
func (e *Env) releaseSide() {
	e.side.mu.Lock()
	defer e.side.mu.Unlock()
	if e.side.lock != nil {
		_ = e.side.lock.Release()
		e.side.lock = nil
	}
}
