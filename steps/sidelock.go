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
// (its run lock is held): the run is refused before it changes anything.
var ErrSideLocked = errors.New("another sdr run works on this side of the pair")

// sideLockWait bounds how long a run waits for the DR side's run lock.
const sideLockWait = 3 * time.Second

// sideLock is the run lock a run holds on its side (HoldSide).
type sideLock struct {
	mu    sync.Mutex
	lock  *cluster.NodeLock
	tried bool          // taken, or found impossible (the main node cannot be reached)
	done  chan struct{} // closed once the attempt ended (nil: none began); then err is set
	err   error         // the refusal (ErrSideLocked), or nil
}

// wait waits for this run's attempt at the side's run lock, if one began,
// and returns its refusal.
func (l *sideLock) wait(ctx context.Context) error {
	l.mu.Lock()
	done := l.done
	l.mu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return l.err
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// HoldSide returns the hook (workflow.Options.BeforeSteps) that takes the
// run lock of the DR side for a run of role standby (start, stop,
// failover, the switchover's promote half): a node lock on run.lock in the
// main standby's work directory, held until Close. Two such runs (from two
// state files, or two hosts) never interleave their steps: the second is
// refused, naming the holder. When the run begins with a step that only
// checks, the lock is taken meanwhile and the last such step waits for it
// (sideLocked); a refusal there is the check's, "nothing was changed".
// Otherwise it is taken before anything is recorded. When the main standby
// cannot be reached, or its work directory cannot be made, the run goes on
// without the lock (its steps reach that node, or do without it) and says
// so. The primary side takes none: sdr keeps nothing beside a
// primary-cluster node's data directory.
func (e *Env) HoldSide(role workflow.Role, holder string, log *zap.Logger) func(context.Context, workflow.Step) error {
	return func(ctx context.Context, first workflow.Step) error {
		if e.ReadOnly || role != workflow.RoleStandby {
			return nil
		}
		e.side.mu.Lock()
		if e.side.tried {
			e.side.mu.Unlock()
			return nil
		}
		e.side.tried = true
		done := make(chan struct{})
		e.side.done = done
		e.side.mu.Unlock()
		take := func() {
			err := e.takeSide(ctx, holder, log)
			e.side.mu.Lock()
			e.side.err = err
			e.side.mu.Unlock()
			close(done)
		}
		if first.CheckOnly {
			go take()
			return nil
		}
		take()
		return e.side.wait(ctx)
	}
}

// takeSide takes the DR side's run lock for this run (HoldSide).
func (e *Env) takeSide(ctx context.Context, holder string, log *zap.Logger) error {
	n, _ := e.mainStandby()
	if n == nil {
		return nil
	}
	cl := e.Config.StandbyName
	warn := func(err error) error {
		log.Warn("the run lock of this side was not taken; this run goes on without it", zap.String("node", n.Name),
			zap.String("cluster", cl), zap.Error(err))
		return nil
	}
	a, err := e.access(ctx, n)
	if err != nil && ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if err != nil {
		return warn(err)
	}
	lay, err := e.layoutOf(ctx, n)
	if err != nil && ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if err != nil {
		return warn(err)
	}
	cctx, cancel := e.cmdCtx(ctx)
	defer cancel()
	file := path.Join(lay.Work, "run.lock")
	// A few seconds of waiting cover a run killed a moment ago, whose
	// session sshd is still ending; the wait ends well before the
	// command's own bound, so that a held lock is told as such.
	wait := sideLockWait
	if d, ok := cctx.Deadline(); ok && time.Until(d)/2 < wait {
		wait = time.Until(d) / 2
	}
	l, err := cluster.LockNodeMakingDir(cctx, a, file, holder, wait)
	switch {
	case errors.Is(err, cluster.ErrNodeLocked):
		return fmt.Errorf("%w (cluster %s): %w; nothing was changed: let that run finish, or stop it, then run this command again",
			ErrSideLocked, cl, err)
	case err != nil && ctx.Err() != nil:
		return context.Cause(ctx) // the run itself was stopped
	case err != nil:
		return warn(err)
	}
	e.side.mu.Lock()
	e.side.lock = l
	e.side.mu.Unlock()
	return nil
}

// sideWait is where a step of a DR-side workflow waits for the side's run
// lock (sideWaits).
type sideWait int

const (
	sideWaitNone   sideWait = iota // a check before others: it does not wait
	sideWaitAfter                  // the last check before a change: it waits at its end
	sideWaitBefore                 // a step that changes something: it waits first
)

// sideWaits says, for each step of wf (a DR-side workflow), where it waits
// for the side's run lock: a step that changes something waits first; the
// last of a run of checks before one that changes something waits at its
// end, its own checks having run meanwhile; other checks do not wait.
// Steps that do not run for wf's role do not wait.
func sideWaits(wf workflow.Workflow) []sideWait {
	out := make([]sideWait, len(wf.Steps))
	var idx []int
	for i, s := range wf.Steps {
		if s.AppliesTo(wf.Role) {
			idx = append(idx, i)
		}
	}
	for k, i := range idx {
		switch {
		case !wf.Steps[i].CheckOnly:
			out[i] = sideWaitBefore
		case k+1 == len(idx) || !wf.Steps[idx[k+1]].CheckOnly:
			out[i] = sideWaitAfter
		}
	}
	return out
}

// sideLocked makes the steps of wf, when it is a DR-side workflow (role
// standby), keep to the side's run lock (HoldSide) as sideWaits says.
func (e *Env) sideLocked(wf workflow.Workflow) workflow.Workflow {
	if wf.Role != workflow.RoleStandby {
		return wf
	}
	for i, w := range sideWaits(wf) {
		run := wf.Steps[i].Run
		if run == nil {
			continue
		}
		switch w {
		case sideWaitBefore:
			wf.Steps[i].Run = func(ctx context.Context, rc *workflow.RunContext) error {
				if err := e.side.wait(ctx); err != nil {
					return err
				}
				return run(ctx, rc)
			}
		case sideWaitAfter:
			// The check runs (on this goroutine, so that the runner's
			// recover sees a panic) while the lock is taken; a refusal
			// ends it at once (it may be waiting, say for the primary).
			wf.Steps[i].Run = func(ctx context.Context, rc *workflow.RunContext) error {
				cctx, cancel := context.WithCancelCause(ctx)
				defer cancel(nil)
				waited := make(chan error, 1)
				go func() {
					err := e.side.wait(cctx)
					if err != nil && cctx.Err() == nil {
						cancel(err)
					}
					waited <- err
				}()
				err := run(cctx, rc)
				lerr := e.side.wait(ctx)
				<-waited
				if lerr != nil {
					return lerr
				}
				return err
			}
		}
	}
	return wf
}

// sideHolder names the run that holds the DR side's run lock on the main
// standby n now ("held" when its holder is not known), or "" when none
// does or it cannot be looked at (status; bounded by the command timeout).
func (e *Env) sideHolder(ctx context.Context, n *cluster.Node) string {
	pctx, cancel := context.WithTimeout(ctx, e.Config.Timeouts.Connect.Duration+5*time.Second)
	defer cancel()
	lay, err := e.layoutOf(pctx, n)
	if err != nil {
		return ""
	}
	a, err := e.access(pctx, n)
	if err != nil {
		return ""
	}
	holder, held, err := cluster.LockHolder(pctx, a, path.Join(lay.Work, "run.lock"))
	switch {
	case err != nil || !held:
		return ""
	case holder == "":
		return "held"
	}
	return holder
}

// SideHolder tells whether a run holds the DR side's run lock now, and
// which (sdr plan: a run would be refused).
func (e *Env) SideHolder(ctx context.Context) (node, holder string) {
	n, _ := e.mainStandby()
	if n == nil {
		return "", ""
	}
	return n.Name, e.sideHolder(ctx, n)
}

// releaseSide lets go of the side's run lock, if this run holds it. An
// attempt still under way (the run ended in its first checks) is not
// waited for: a lock it takes is let go when the run's SSH connections
// close, as the process ends.
func (e *Env) releaseSide() {
	e.side.mu.Lock()
	defer e.side.mu.Unlock()
	if e.side.lock != nil {
		_ = e.side.lock.Release()
		e.side.lock = nil
	}
}
