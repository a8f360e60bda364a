package steps

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

// How sdr starts and stops PostgreSQL on a DR node: always through the
// node's service manager (service.manager), never around it, and always
// waiting for the real state afterwards (a live postmaster in the data
// directory that accepts connections; or none), bounded by --timeout.
//
//	manager        start                              stop                                   running?
//	pg_ctl         pg_ctl start -D <conf> -l <log> -w  pg_ctl stop -D <conf> -m fast -w       pg_ctl status -D <conf>
//	pg_ctlcluster  pg_ctlcluster <v> <c> start        pg_ctlcluster --mode fast <v> <c> stop pg_ctlcluster <v> <c> status
//	systemd        <systemctl> start <unit>           <systemctl> stop <unit>                systemctl is-active --quiet <unit>
//	commands       service.start                      service.stop                           service.status (exit 0: runs)
//
// With pg_ctl, sdr returns from the start or stop command as soon as the
// data directory shows the server ready or gone (runServiceCommand), not
// at the end of pg_ctl's 100 ms polling.
//
// <conf> is config_dir, or the data directory. Without systemd on the
// node (containers, this project's test bed) pg_ctlcluster runs pg_ctl
// itself; with systemd, pg_ctlcluster run by a user other than root would
// start the cluster outside systemd, so sdr refuses that combination for a
// cluster systemd starts (start.conf "auto") and asks for manager systemd.

// serviceCmds are the command lines of a node's service manager.
type serviceCmds struct {
	Start, Stop, Status string
	// Describe names the manager in messages ("systemd unit postgresql@15-main").
	Describe string
}

// serviceCommands returns n's service commands. wait bounds pg_ctl's own
// waiting; sdr waits for the real state after each command anyway.
func serviceCommands(n *cluster.Node, wait time.Duration) serviceCmds {
	secs := int(wait.Seconds())
	if secs <= 0 {
		secs = int(cluster.DefaultWaitTimeout.Seconds())
	}
	s := n.Service
	switch s.Manager {
	case cluster.ManagerPgCtlCluster:
		vc := q(s.Version) + " " + q(s.Cluster)
		return serviceCmds{
			Start:    "pg_ctlcluster " + vc + " start",
			Stop:     "pg_ctlcluster --mode fast " + vc + " stop",
			Status:   "pg_ctlcluster " + vc + " status",
			Describe: "pg_ctlcluster " + s.Version + " " + s.Cluster,
		}
	case cluster.ManagerSystemd:
		return serviceCmds{
			Start:    s.Systemctl + " start " + q(s.Unit),
			Stop:     s.Systemctl + " stop " + q(s.Unit),
			Status:   "systemctl is-active --quiet " + q(s.Unit),
			Describe: "systemd unit " + s.Unit,
		}
	case cluster.ManagerCommands:
		return serviceCmds{Start: s.Start, Stop: s.Stop, Status: s.Status, Describe: "the service commands of " + n.Name}
	}
	conf := n.ConfDir()
	return serviceCmds{
		Start: fmt.Sprintf("mkdir -p %s && %s start -D %s -l %s -w -t %d", q(path.Dir(n.LogFile)), bin(n, "pg_ctl"), q(conf), q(n.LogFile), secs),
		Stop:  fmt.Sprintf("%s stop -D %s -m fast -w -t %d", bin(n, "pg_ctl"), q(conf), secs),
		// pg_ctl status: 0 running, 3 not running, 4 no data directory.
		Status:   fmt.Sprintf("%s status -D %s", bin(n, "pg_ctl"), q(conf)),
		Describe: "pg_ctl",
	}
}

// statusRunning reads the exit of a status command: 0 runs, 126 and 127
// (the command cannot run) are errors, anything else does not run.
func statusRunning(err error) (bool, error) {
	var ce *cluster.CommandError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &ce) && ce.ExitCode != 126 && ce.ExitCode != 127 && ce.ExitCode > 0:
		return false, nil
	}
	return false, err
}

// statusIsPgCtl reports whether n's service manager's status command is
// the pg_ctl status on the data directory that pgRunning runs (manager
// pg_ctl, the configuration in the data directory): then the answer
// pgRunning just gave is the manager's, and it is not asked twice.
func statusIsPgCtl(n *cluster.Node) bool {
	m := n.Service.Manager
	return (m == "" || m == cluster.ManagerPgCtl) && !n.SeparateConfig()
}

// serviceRunning asks n's service manager whether it runs PostgreSQL.
func (e *Env) serviceRunning(ctx context.Context, n *cluster.Node) (bool, error) {
	cmds := serviceCommands(n, e.Timeout)
	_, err := e.run(ctx, n, cmds.Status, cluster.RunOpts{})
	up, err := statusRunning(err)
	if err != nil {
		return false, fmt.Errorf("while asking %s whether PostgreSQL runs on %s: %w", cmds.Describe, n.Name, err)
	}
	return up, nil
}

// managerRuns checks that n's service manager reports running the
// PostgreSQL that pg_ctl status has just found in dataDir: a server started
// outside its manager is refused (outsideManager). With pg_ctl as the
// manager (statusIsPgCtl) that answer was the manager's, and it is not
// asked again.
func (e *Env) managerRuns(ctx context.Context, n *cluster.Node, dataDir string) error {
	if statusIsPgCtl(n) {
		return nil
	}
	up, err := e.serviceRunning(ctx, n)
	if err != nil {
		return err
	}
	if !up {
		return outsideManager(n, dataDir, serviceCommands(n, e.Timeout).Describe)
	}
	return nil
}

// outsideManager is the error for a server that runs where its service
// manager does not know of it.
func outsideManager(n *cluster.Node, dataDir, describe string) error {
	return permanent(fmt.Errorf("PostgreSQL runs in %s on %s, but %s does not report it running: it was started outside its service "+
		"manager. sdr starts and stops %s only through %s (service.manager): stop that server the way it was started, "+
		"start it with %s (or correct service.*), then rerun", dataDir, n.Name, describe, n.Name, describe, describe))
}

// startNode starts PostgreSQL on n through its service manager unless it
// runs, then waits, bounded by --timeout, until a postmaster runs in the
// data directory and accepts connections, and checks that the manager
// reports it running. It is never started under the tag of sdr's long
// commands, so that no cleanup of a later run can mistake it for a
// leftover.
func (e *Env) startNode(ctx context.Context, rc *workflow.RunContext, n *cluster.Node) error {
	return e.startNodeFrom(ctx, rc, n, false)
}

// startNodeFrom is startNode; knownStopped says the caller has just seen
// that no postmaster runs in the data directory (the swap's own check), so
// that it is not asked again. A server started in between makes the start
// command fail, and then the wait for it is the same as startNode's.
func (e *Env) startNodeFrom(ctx context.Context, rc *workflow.RunContext, n *cluster.Node, knownStopped bool) error {
	lay, err := e.layoutOf(ctx, n)
	if err != nil {
		return err
	}
	cmds := serviceCommands(n, e.Timeout)
	running := false
	if !knownStopped {
		if running, err = e.pgRunning(ctx, n, lay.DataDir); err != nil {
			return err
		}
	}
	if running {
		return e.managerRuns(ctx, n, lay.DataDir)
	}
	lctx, cancel := e.longCtx(ctx)
	defer cancel()
	a, err := e.access(lctx, n)
	if err != nil {
		return err
	}
	runErr := runServiceCommand(lctx, a, n, cmds.Start, lay.DataDir, cluster.Started)
	if runErr != nil {
		alive, err := e.pgRunning(ctx, n, lay.DataDir)
		if err != nil || !alive {
			return fmt.Errorf("while starting %s with %s (see %s): %w", n.Name, cmds.Describe, startLog(n), runErr)
		}
		rc.Log.Warn("the start command failed but PostgreSQL runs; waiting until it accepts connections",
			zap.String("node", n.Name), zap.Error(runErr))
	}
	// A start command RunServerCommand watched and that succeeded has shown
	// a live postmaster, ready, in the data directory: no pg_ctl status
	// before the first connection.
	if err := e.waitAccepting(lctx, n, lay.DataDir, runErr == nil && serverCommandWatched(n)); err != nil {
		return fmt.Errorf("while starting %s with %s (see %s): %w", n.Name, cmds.Describe, startLog(n), err)
	}
	// waitAccepting's last pg_ctl status, or the start's own wait, said it
	// runs.
	if err := e.managerRuns(ctx, n, lay.DataDir); err != nil {
		return err
	}
	rc.Log.Info("started", zap.String("node", n.Name), zap.String("by", cmds.Describe))
	return nil
}

// runServiceCommand runs a start or stop command of n's service manager.
// pg_ctl's own wait looks at the server every 100 ms; with manager pg_ctl
// the command returns as soon as dataDir shows the server ready or gone
// (cluster.RunServerCommand), and pg_ctl finishes on its own. Other
// managers' commands are waited for, and sdr then checks the real state
// itself (waitAccepting, the stop's poll), as it does after a pg_ctl
// command that failed; one that succeeded has shown the state already (a
// start is still connected to once).
func runServiceCommand(ctx context.Context, a cluster.Access, n *cluster.Node, cmd, dataDir string, w cluster.ServerWait) error {
	if serverCommandWatched(n) {
		return cluster.RunServerCommand(ctx, a, cmd, dataDir, w)
	}
	_, err := a.Run(ctx, cmd, cluster.RunOpts{})
	return err
}

// serverCommandWatched reports whether runServiceCommand runs n's start and
// stop commands through cluster.RunServerCommand (manager pg_ctl): then a
// start that succeeded has shown a ready postmaster in the data directory,
// and a stop that succeeded has shown postmaster.pid gone (pg_ctl status
// would say the same).
func serverCommandWatched(n *cluster.Node) bool {
	m := n.Service.Manager
	return m == "" || m == cluster.ManagerPgCtl
}

// startLog says where to look when a start fails.
func startLog(n *cluster.Node) string {
	switch n.Service.Manager {
	case cluster.ManagerPgCtlCluster:
		return "/var/log/postgresql/postgresql-" + n.Service.Version + "-" + n.Service.Cluster + ".log or the log file set for the cluster"
	case cluster.ManagerSystemd:
		return "journalctl -u " + n.Service.Unit + " and the server log"
	case cluster.ManagerCommands:
		return "the server log"
	}
	return n.LogFile + " on it"
}

// startGrace is how long after a start command returned a postmaster may
// still be missing from the data directory (a manager or an operator's
// command that returns before the server wrote postmaster.pid).
const startGrace = 15 * time.Second

// waitAccepting waits, bounded by ctx and --timeout, until a postmaster
// runs in dataDir and accepts an admin connection. No postmaster there
// startGrace after the start command ends the wait. seenReady says the
// start's own wait has just seen the postmaster ready there: the first
// look is the connection alone.
func (e *Env) waitAccepting(ctx context.Context, n *cluster.Node, dataDir string, seenReady bool) error {
	since := time.Now()
	return poll(ctx, e.Timeout, pollFast, n.Name+" to accept connections", func(ctx context.Context) (bool, error) {
		alive := seenReady
		seenReady = false
		if !alive {
			var err error
			if alive, err = e.pgRunning(ctx, n, dataDir); err != nil {
				return false, err
			}
		}
		if !alive {
			err := fmt.Errorf("no PostgreSQL runs in %s on %s after the start command", dataDir, n.Name)
			if time.Since(since) > startGrace {
				return false, permanent(err)
			}
			return false, err
		}
		cctx, cancel := context.WithTimeout(ctx, e.Config.Timeouts.Connect.Duration)
		defer cancel()
		c, err := e.admin(cctx, n)
		if err != nil {
			return false, err
		}
		c.Close(context.WithoutCancel(ctx))
		return true, nil
	})
}

// stopFailedGrace is how long sdr waits for PostgreSQL to end after its
// stop command failed, unless the server says it is shutting down (then
// up to --timeout: a long shutdown checkpoint outlives a manager's own
// wait).
const stopFailedGrace = 15 * time.Second

// stopNode stops PostgreSQL on n through its service manager with a fast
// shutdown, then waits, bounded by --timeout, until no postmaster runs in
// the data directory. A server its manager does not report running is not
// stopped: it was started some other way, and stopping it through sdr
// would leave the manager out of step.
func (e *Env) stopNode(ctx context.Context, rc *workflow.RunContext, n *cluster.Node) error {
	return e.stopNodeFrom(ctx, rc, n, false)
}

// stopNodeFrom is stopNode; knownRunning says the caller has just seen a
// live postmaster in the data directory (a probe of it), so that pg_ctl
// status is not asked again. A server that ended in between is seen gone
// by the stop's own wait.
func (e *Env) stopNodeFrom(ctx context.Context, rc *workflow.RunContext, n *cluster.Node, knownRunning bool) error {
	lay, err := e.layoutOf(ctx, n)
	if err != nil {
		return err
	}
	cmds := serviceCommands(n, e.Timeout)
	if !knownRunning {
		running, err := e.pgRunning(ctx, n, lay.DataDir)
		if err != nil || !running {
			return err
		}
	}
	if err := e.managerRuns(ctx, n, lay.DataDir); err != nil {
		if knownRunning {
			// Not reported running: unless it has ended since it was seen.
			if running, rerr := e.pgRunning(ctx, n, lay.DataDir); rerr == nil && !running {
				return nil
			}
		}
		return err
	}
	lctx, cancel := e.longCtx(ctx)
	defer cancel()
	a, err := e.access(lctx, n)
	if err != nil {
		return err
	}
	runErr := runServiceCommand(lctx, a, n, cmds.Stop, lay.DataDir, cluster.Stopped)
	if runErr == nil && serverCommandWatched(n) {
		// Its wait has seen postmaster.pid gone.
		rc.Log.Info("stopped", zap.String("node", n.Name), zap.String("by", cmds.Describe))
		return nil
	}
	// After a failed stop command: a server that says it is shutting down
	// (a manager's own wait ran out during a long shutdown checkpoint) is
	// waited for up to --timeout; one that still accepts sessions
	// stopFailedGrace after the command failed is not.
	failedAt, shuttingDown := time.Now(), false
	if runErr != nil {
		rc.Log.Warn("the stop command failed; waiting for PostgreSQL to end", zap.String("node", n.Name), zap.Error(runErr))
	}
	err = poll(lctx, e.Timeout, pollFast, "PostgreSQL on "+n.Name+" to stop", func(ctx context.Context) (bool, error) {
		alive, err := e.pgRunning(ctx, n, lay.DataDir)
		if err == nil && alive {
			err = fmt.Errorf("PostgreSQL still runs in %s", lay.DataDir)
			if runErr != nil && !shuttingDown && time.Since(failedAt) > stopFailedGrace {
				c, cerr := e.admin(ctx, n)
				if cerr == nil {
					c.Close(context.WithoutCancel(ctx))
					return false, permanent(fmt.Errorf("%w and accepts sessions %s after its stop command failed", err, stopFailedGrace))
				}
				// Shutting down (or not answering): waited for.
				shuttingDown = true
				rc.Log.Info("PostgreSQL does not accept sessions; waiting for it to end", zap.String("node", n.Name), zap.Error(cerr))
			}
		}
		return err == nil, err
	})
	if err != nil {
		if runErr != nil {
			err = fmt.Errorf("%w (the stop command: %w)", err, runErr)
		}
		return fmt.Errorf("while stopping %s with %s: %w", n.Name, cmds.Describe, err)
	}
	rc.Log.Info("stopped", zap.String("node", n.Name), zap.String("by", cmds.Describe))
	return nil
}

// serviceObs is what one look at a DR node says about who runs its
// PostgreSQL.
type serviceObs struct {
	Node     string
	Describe string // the configured manager, for messages
	Manager  string
	Unit     string // service.unit (systemd)
	SSHUser  string
	Version  string // service.version (pg_ctlcluster)
	Cluster  string
	DataDir  string

	Systemd   bool   // systemd runs on the node (/run/systemd/system)
	StartConf string // pg_ctlcluster: the first word of start.conf ("auto", "manual", "disabled"), "" when none
	Running   bool   // a postmaster runs in the data directory
	PID       int    // its pid
	// CgroupUnit is the systemd service whose cgroup holds the
	// postmaster ("postgresql@15-main.service"), "" when none, and
	// CgroupUnitMainPID that unit's MainPID.
	CgroupUnit        string
	CgroupUnitMainPID int
	ManagerRunning    bool // the manager's status command says it runs
}

// decideService refuses a DR node whose service manager in the config is
// not the one that runs (or would run) its PostgreSQL, before step 5
// stops anything: sdr must never leave a node running outside the
// manager that ran it.
func decideService(o serviceObs) error {
	unitOf := strings.TrimSuffix(o.CgroupUnit, ".service")
	switch {
	case o.Running && o.CgroupUnit != "" && o.CgroupUnitMainPID == o.PID &&
		(o.Manager != cluster.ManagerSystemd || unitOf != strings.TrimSuffix(o.Unit, ".service")):
		return permanent(fmt.Errorf("%s: PostgreSQL runs under systemd unit %s, but the config has it run by %s: set service.manager: systemd "+
			"and service.unit: %s for %s, so that sdr stops and starts it through systemd", o.Node, unitOf, o.Describe, unitOf, o.Node))
	case o.Running && !o.ManagerRunning && o.Manager == cluster.ManagerPgCtlCluster && o.StartConf == "disabled":
		return permanent(fmt.Errorf("%s: PostgreSQL runs in %s (pid %d), but cluster %s/%s is disabled in its start.conf, so pg_ctlcluster "+
			"does not report it running and will not start it again: set start.conf to auto or manual (/etc/postgresql/%s/%s/start.conf), then rerun",
			o.Node, o.DataDir, o.PID, o.Version, o.Cluster, o.Version, o.Cluster))
	case o.Running && !o.ManagerRunning:
		return permanent(fmt.Errorf("%s: PostgreSQL runs in %s (pid %d), but %s does not report it running: it was started outside its "+
			"service manager. Stop it the way it was started and start it with %s (or correct service.*), then rerun",
			o.Node, o.DataDir, o.PID, o.Describe, o.Describe))
	case !o.Running && o.ManagerRunning && o.Manager != cluster.ManagerPgCtl:
		// (pg_ctl is no manager of its own: it reads postmaster.pid and
		// asks the kernel whether that pid lives. A pid file left by a
		// killed server whose pid is a zombie or was reused says
		// "running" though no postmaster runs there: stale, not a server
		// elsewhere.)
		return permanent(fmt.Errorf("%s: %s reports PostgreSQL running, but no PostgreSQL runs in data_dir %s: the service runs "+
			"another data directory; correct data_dir or service.*", o.Node, o.Describe, o.DataDir))
	case o.Manager == cluster.ManagerPgCtlCluster && o.Systemd && o.SSHUser != "root" && o.StartConf == "auto":
		return permanent(fmt.Errorf("%s: systemd runs on this machine and starts cluster %s/%s (start.conf auto), but pg_ctlcluster run as %s "+
			"would start it outside systemd: set service.manager: systemd (unit postgresql@%s-%s) and let %s run service.systemctl "+
			"(default %q, see docs/config.md)", o.Node, o.Version, o.Cluster, o.SSHUser, o.Version, o.Cluster, o.SSHUser, cluster.DefaultSystemctl))
	}
	return nil
}

// cgroupService returns the systemd service whose cgroup /proc/<pid>/cgroup
// names ("postgresql@15-main.service"), or "" when the process is in none
// (a login session's scope, a container's root, no systemd).
func cgroupService(cgroup string) string {
	for _, line := range strings.Split(cgroup, "\n") {
		f := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(f) != 3 || !(f[0] == "0" && f[1] == "" || f[1] == "name=systemd") {
			continue
		}
		parts := strings.Split(f[2], "/")
		for i := len(parts) - 1; i >= 0; i-- {
			if strings.HasSuffix(parts[i], ".service") {
				return parts[i]
			}
			if strings.HasSuffix(parts[i], ".scope") || strings.HasSuffix(parts[i], ".slice") {
				break
			}
		}
	}
	return ""
}

// observeService looks, in one read-only remote action (and a second,
// systemctl show, when the postmaster is in a systemd service), at who runs
// n's PostgreSQL: whether systemd runs on the node, the systemd unit whose
// cgroup holds the postmaster that dataDir's postmaster.pid names (o.PID,
// read by the same script, so that this look need not wait for the probe
// of the data directory), pg_ctlcluster's start.conf, and what the
// configured manager's status command says. The caller sets o.Running (a
// live postmaster in the data directory, from its probe) and o.DataDir.
func (e *Env) observeService(ctx context.Context, n *cluster.Node, dataDir string) (serviceObs, error) {
	cmds := serviceCommands(n, e.Timeout)
	o := serviceObs{Node: n.Name, Describe: cmds.Describe, Manager: n.Service.Manager, Unit: n.Service.Unit, SSHUser: n.SSHUser,
		Version: n.Service.Version, Cluster: n.Service.Cluster, DataDir: dataDir}
	var script strings.Builder
	script.WriteString("[ -d /run/systemd/system ] && echo systemd\n")
	fmt.Fprintf(&script, `p=$(head -n 1 -- %s 2>/dev/null); p=${p#-}
case $p in '' | *[!0-9]*) ;; *) echo "pid $p"; sed 's/^/cgroup /' "/proc/$p/cgroup" 2>/dev/null ;; esac
`, q(path.Join(dataDir, "postmaster.pid")))
	if n.Service.Manager == cluster.ManagerPgCtlCluster {
		fmt.Fprintf(&script, "f=%s; [ -f \"$f\" ] && grep -v '^[[:space:]]*#' \"$f\" | awk 'NF { print \"startconf \" $1; exit }'\n",
			q(path.Join(n.ConfDir(), "start.conf")))
	}
	// The status commands of pg_ctl, pg_ctlcluster and systemd only read
	// (cluster.ReadOnly runs them alone too): asked in the same script.
	// An operator's service.status is run on its own below.
	folded := n.Service.Manager != cluster.ManagerCommands
	if folded {
		fmt.Fprintf(&script, "sdr_e=$( { %s; } 2>&1 >/dev/null </dev/null ); printf 'status %%s\\n' \"$?\"; printf '%%s\\n' \"$sdr_e\" | sed 's/^/statuserr /'\n", cmds.Status)
	}
	script.WriteString("exit 0\n")
	out, err := e.run(ctx, n, cluster.ReadOnlyScript(script.String()), cluster.RunOpts{})
	if err != nil {
		return o, fmt.Errorf("while looking at the service manager of %s: %w", n.Name, err)
	}
	var cgroup, statusErr []string
	status := -1
	for _, line := range strings.Split(out, "\n") {
		switch k, v, _ := strings.Cut(line, " "); k {
		case "systemd":
			o.Systemd = true
		case "pid":
			o.PID, _ = strconv.Atoi(v)
		case "cgroup":
			cgroup = append(cgroup, v)
		case "startconf":
			o.StartConf = v
		case "status":
			status, _ = strconv.Atoi(v)
		case "statuserr":
			statusErr = append(statusErr, v)
		}
	}
	if o.Systemd {
		o.CgroupUnit = cgroupService(strings.Join(cgroup, "\n"))
	}
	if o.CgroupUnit != "" {
		out, err := e.run(ctx, n, "systemctl show -p MainPID --value "+q(o.CgroupUnit), cluster.RunOpts{})
		if err != nil {
			return o, fmt.Errorf("while asking systemd about %s on %s: %w", o.CgroupUnit, n.Name, err)
		}
		o.CgroupUnitMainPID, _ = strconv.Atoi(strings.TrimSpace(out))
	}
	if folded {
		o.ManagerRunning, err = foldedStatus(status, strings.TrimSpace(strings.Join(statusErr, "\n")))
		if err != nil {
			return o, fmt.Errorf("while asking %s whether PostgreSQL runs on %s (%s): %w", cmds.Describe, n.Name, cmds.Status, err)
		}
		return o, nil
	}
	if o.ManagerRunning, err = e.serviceRunning(ctx, n); err != nil {
		return o, err
	}
	return o, nil
}

// foldedStatus reads the exit code of a status command run inside a
// script, as statusRunning reads it when run alone: 0 runs, 126 and 127
// (it cannot run) are errors, any other code does not run. -1: the
// script printed none.
func foldedStatus(code int, stderr string) (bool, error) {
	switch {
	case code == 0:
		return true, nil
	case code < 0:
		return false, errors.New("the probe printed no exit code for it")
	case code == 126 || code == 127:
		return false, fmt.Errorf("exit code %d: %s", code, stderr)
	}
	return false, nil
}
