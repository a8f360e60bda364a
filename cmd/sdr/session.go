package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"
	"go.uber.org/zap"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/steps"
	"github.com/pgsdr/sdr/store"
	"github.com/pgsdr/sdr/workflow"
)

// session is what every run of a workflow sets up, the same way for
// start, stop, failover and switchover: the output and log file, the
// state file of the cluster the run acts on, its run lock, the run id and
// the pool of node connections. close releases them, in reverse order.
type session struct {
	out    *output
	log    *zap.Logger
	cmdLog *zap.Logger // lines of the command itself: run id and step "-"
	db     *store.DB
	runID  string
	pool   *cluster.Pool

	closers []func()
}

// openSession opens the session of a run of role on cluster (named
// command in the lock file). check, when not nil, runs right after the
// state file is opened, before the lock is taken (a refusal that needs the
// file, e.g. a promoted cluster).
func openSession(c *cli.Context, g globals, cfg *cluster.Config, role workflow.Role, cluster_ string, command string,
	check func(db *store.DB) error) (*session, error) {
	s := &session{}
	out, err := newOutput(c.App.ErrWriter, g.logFile, g.verbose)
	if err != nil {
		return nil, err
	}
	s.out, s.log = out, out.log
	s.closers = append(s.closers, out.close)
	if s.db, err = openStore(g, cfg.Name, role, cluster_); err != nil {
		s.close()
		return nil, err
	}
	if check != nil {
		if err := check(s.db); err != nil {
			s.close()
			return nil, err
		}
	}
	now := time.Now()
	s.runID = newRunID(now)
	s.cmdLog = s.log.With(zap.String("run_id", s.runID), zap.String("step", "-"))
	host, _ := os.Hostname()
	lock, err := store.Acquire(s.db.Path(), store.Holder{PID: os.Getpid(), Host: host, Started: now.UTC(), RunID: s.runID, Command: command}, 2*time.Second)
	if err != nil {
		s.close()
		return nil, usageErr(err)
	}
	s.closers = append(s.closers, func() { lock.Release() })
	if h := lock.TookOver; h != nil {
		s.cmdLog.Warn("took over the lock of a run that is gone", zap.Int("old_pid", h.PID),
			zap.String("old_host", h.Host), zap.Time("old_started", h.Started), zap.String("old_run_id", h.RunID))
	}
	if cfg.SSH.InsecureIgnoreHostKey {
		s.cmdLog.Warn("ssh.insecure_ignore_host_key is set: SSH host keys are NOT verified")
	}
	s.pool = cluster.Open(c.Context, cfg, s.cmdLog)
	s.closers = append(s.closers, func() { s.pool.Close() })
	s.cmdLog.Info(fmt.Sprintf("sdr %s for DR pair %s, cluster %s (state file %s)", command, cfg.Name, cluster_, s.db.Path()))
	return s, nil
}

// run runs wf with inputs (the config's, the action and the role added),
// sending progress to the console and the state file's sidecar.
func (s *session) run(c *cli.Context, cfg *cluster.Config, wf workflow.Workflow, inputs map[string]string, opts workflow.Options) (workflow.Result, error) {
	all := cfg.Inputs()
	for k, v := range inputs {
		all[k] = v
	}
	all["action"], all["role"] = wf.Action, string(wf.Role)
	progress, progressDone := runProgress(s.out, s.db.Path())
	defer progressDone()
	runner := &workflow.Runner{Store: s.db, Log: s.log, NewRunID: func() string { return s.runID }, Progress: progress, InputPath: cfg.InputPath}
	return runner.Run(c.Context, wf, all, opts)
}

// holdSide is the hook (workflow.Options.BeforeSteps) that takes the run
// lock of the side wf acts on (steps.Env.HoldSide), naming this run as its
// holder.
func (s *session) holdSide(env *steps.Env, wf workflow.Workflow) func(context.Context, workflow.Step) error {
	host, _ := os.Hostname()
	holder := fmt.Sprintf("sdr %s (pid %d on %s, state file %s, run %s)", wf.Key(), os.Getpid(), host, s.db.Path(), s.runID)
	return env.HoldSide(wf.Role, holder, s.log)
}

func (s *session) close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
}

// timeoutFlag returns --timeout: zero when it is not given (runConfig then
// takes timeouts.wait), and a usage error when it is given and not
// positive, as plan refuses it (a bound of 0s would end every wait at once).
func timeoutFlag(c *cli.Context) (time.Duration, error) {
	d := c.Duration("timeout")
	if c.IsSet("timeout") && d <= 0 {
		return 0, usagef("--timeout must be positive, got %s (leave it out for timeouts.wait from the config)", d)
	}
	return d, nil
}

// runConfig loads the config and, for a run that needs it, the replication
// password, and settles the timeout: --timeout, else timeouts.wait.
func runConfig(g globals, timeout time.Duration, needPassword bool) (cfg *cluster.Config, password string, _ time.Duration, err error) {
	if timeout < 0 {
		return nil, "", 0, usagef("--timeout must be positive, got %s", timeout)
	}
	if cfg, err = loadConfig(g); err != nil {
		return nil, "", 0, err
	}
	if needPassword {
		if password, err = cfg.Password(); err != nil {
			return nil, "", 0, usageErr(err)
		}
	}
	if timeout == 0 {
		timeout = cfg.Timeouts.Wait.Duration
	}
	return cfg, password, timeout, nil
}
