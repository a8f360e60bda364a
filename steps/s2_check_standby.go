package steps

import (
	"context"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

// checkStandbyCluster checks every standby node and waits (bounded by
// --timeout) until the primary accepts the replication user: the primary
// side's run creates the role and opens pg_hba.conf at the same time.
func (e *Env) checkStandbyCluster(ctx context.Context, rc *workflow.RunContext) error {
	nodes := e.standbyNodes()
	majors := make([]int, len(nodes))
	disks := make([]diskObs, len(nodes))
	missing := make([][]string, len(nodes))
	services := make([]*serviceLook, len(nodes))
	// The DR nodes' own checks run while the primary is asked; a failure
	// of theirs, or a tool the fan-out lacks, ends the wait for the primary.
	pctx, pcancel := context.WithCancel(ctx)
	defer pcancel()
	// Where the primary-cluster nodes' data directories are (the
	// classifier's primary view) is probed meanwhile too.
	ictx, icancel := context.WithCancel(ctx)
	defer icancel()
	ids := e.primaryIDsLater(ictx, rc.Log)
	// p and perr are set once polled is closed.
	var p remoteFacts
	var perr error
	polled := make(chan struct{})
	looks := make([]*dirLook, len(nodes))
	nodesDone := make(chan error, 1)
	go func() {
		err := forEach(ctx, nodes, func(ctx context.Context, n *cluster.Node) error {
			i := indexOf(nodes, n)
			// A failure, or a tool the fan-out lacks, ends the wait for
			// the primary at once (the data directory's look waits for it).
			stop := func(err error) error {
				if err != nil {
					pcancel()
				}
				return err
			}
			if _, err := e.access(ctx, n); err != nil {
				return stop(err)
			}
			// The look at the data directory below learns the node's
			// layout (lookAtDir); the configuration read waits for it.
			learn, _ := e.layouts.lead(n.Name)
			tools := fanOutTools(e.Config.Copy)
			return together(
				func() (err error) { majors[i], disks[i], err = e.binAndDisk(ctx, n); return stop(err) },
				func() (err error) {
					if len(tools) > 0 {
						missing[i], err = e.missingTools(ctx, n, tools)
						if len(missing[i]) > 0 {
							pcancel() // refused below: no need to wait for the primary
						}
					}
					return stop(err)
				},
				// Read (and keep for the run) where the node's configuration
				// is, which checkDataDirs needs; a problem is reported there.
				func() error { _, _ = e.confOf(ctx, n); return nil },
				// Who runs the node's PostgreSQL, for checkDataDirs.
				func() error {
					o, err := e.observeService(ctx, n, n.DataDir)
					services[i] = &serviceLook{o: o, err: err}
					return nil
				},
				// Probe the data directory at once; checkDataDirs
				// classifies it. The probe covers the locations of the
				// primary's tablespaces: once the primary has answered, a
				// primary with tablespaces has the node probed again with
				// them (without, the first probe is the whole look).
				func() error {
					early := e.lookAtDir(ctx, n, remoteFacts{}, learn)
					select {
					case <-polled:
					case <-ctx.Done():
						return nil
					}
					switch {
					case perr != nil:
					case early.err == nil && len(p.Tablespaces) == 0:
						looks[i] = early
					default:
						looks[i] = e.lookAtDir(ctx, n, p, nil)
					}
					return nil
				},
			)
		})
		nodesDone <- err
	}()
	var ready primaryReadiness
	var lastLog time.Time
	perr = poll(pctx, e.Timeout, pollSlow, "the primary to accept replication user "+e.Config.Replication.User, func(ctx context.Context) (bool, error) {
		var err error
		p, err = e.remotePrimary(ctx)
		if err == nil {
			ready, err = e.checkPrimaryReady(ctx, p)
		}
		if err != nil && workflow.IsPermanent(err) {
			return false, err
		}
		if err != nil && time.Since(lastLog) > 10*time.Second {
			lastLog = time.Now()
			rc.Log.Info("primary not reachable yet, retrying", zap.Error(err))
		}
		return err == nil, err
	})
	close(polled)
	if err := <-nodesDone; err != nil {
		return err
	}
	var noTools []string
	for i, m := range missing {
		if len(m) > 0 {
			noTools = append(noTools, fmt.Sprintf("%s lacks %s", nodes[i].Name, strings.Join(m, " and ")))
		}
	}
	if len(noTools) > 0 {
		return permanent(fmt.Errorf("copy.fan_out unpacks the copy on every DR node with tar (and the decompressor of copy.compress): %s; "+
			"install them, or turn copy.fan_out off", strings.Join(noTools, "; ")))
	}
	if perr != nil {
		return explainPrimaryNotReady(perr, e.Config.Replication.User, e.Config.Standby.Main)
	}
	pv := pgVersion(p.VersionNum)
	if err := checkSupported("the primary "+p.Node.Name, pv); err != nil {
		return err
	}
	if err := features(pv).checkCopyOptions(e.Config.Copy, p.Node.Name, pv, ready.CompressMethods); err != nil {
		return err
	}
	if pv.Major() > maxMajor {
		rc.Log.Warn("the primary runs a PostgreSQL major newer than sdr knows; sdr uses the rules of the newest it knows",
			zap.String("primary", p.Node.Name), zap.String("version", pv.String()), zap.Int("newest_known", maxMajor))
	}
	for i, n := range nodes {
		if majors[i] != pv.Major() {
			return permanent(fmt.Errorf("%s has PostgreSQL %d binaries in %s, the primary %s runs %d: a standby needs the primary's major version",
				n.Name, majors[i], n.BinDir, p.Node.Name, pv.Major()))
		}
		if v := n.Service.Version; v != "" && v != strconv.Itoa(pv.Major()) {
			return permanent(fmt.Errorf("%s: service.version is %s, the primary %s runs PostgreSQL %d: the DR cluster must be of the primary's "+
				"major version (create it with pg_createcluster %d <name>, or correct service.version)", n.Name, v, p.Node.Name, pv.Major(), pv.Major()))
		}
	}
	if err := checkDiskRoom(disks, ready.DataBytes+ready.WalBytes); err != nil {
		return err
	}
	if len(ready.Unmeasured) > 0 {
		// Their copies go beside their own locations (<location>.<node>),
		// often on other filesystems; the replication user may not read
		// their size (pg_tablespace_size needs CREATE on them).
		rc.Log.Warn("the disk check leaves out tablespaces whose size replication.user cannot read",
			zap.Strings("tablespaces", ready.Unmeasured))
	}
	if err := e.checkDataDirs(ctx, rc, p, ids, looks, services); err != nil {
		return err
	}
	rc.Log.Info("standby nodes and the remote primary are ready", zap.String("primary", p.Node.Name),
		zap.String("system_identifier", p.SystemID), zap.Int64("primary_data_bytes", ready.DataBytes),
		zap.Int64("wal_room_bytes", ready.WalBytes), zap.String("slot_wal_status", ready.Slot.WalStatus))
	return nil
}

// checkNodeSetup checks where a DR node's configuration is and who runs
// its server (nodeconf.go, service.go). Problems come back as text to
// report with the others; err is for what could not be looked at.
func (e *Env) checkNodeSetup(ctx context.Context, n *cluster.Node, lay nodeLayout, running bool, pid int, files *nodeConf,
	early *serviceLook) ([]string, error) {
	var problems []string
	conf, err := e.confOf(ctx, n)
	if err != nil {
		if workflow.IsPermanent(err) {
			return []string{err.Error()}, nil
		}
		return nil, err
	}
	// The three looks are independent reads: they run side by side.
	var confProblem string
	var liveProblems []string
	var o serviceObs
	err = together(
		func() error {
			if !n.SeparateConfig() {
				return nil
			}
			real, err := e.realPath(ctx, n, conf.DataDirectory)
			if err != nil {
				return err
			}
			confProblem = checkConfDataDir(n, lay, conf, real)
			return nil
		},
		func() error {
			if !running {
				return nil
			}
			// The look at the data directory asked the server already.
			var live nodeConf
			var err error
			if files != nil {
				live = *files
			} else if live, err = e.liveConf(ctx, n); err != nil {
				return err
			}
			// A server runs in its data_directory, so it exists: when that
			// is data_dir, its real path is the one this step resolved.
			liveReal := lay.DataDir
			if path.Clean(live.DataDirectory) != path.Clean(n.DataDir) {
				if liveReal, err = e.realPath(ctx, n, live.DataDirectory); err != nil {
					return err
				}
			}
			liveProblems = checkRunningConf(n, lay, conf, live, liveReal)
			return nil
		},
		func() (err error) {
			// The look made beside the probe of the data directory holds
			// when it saw the same postmaster.pid.
			if early != nil && early.err == nil && early.o.PID == pid {
				o = early.o
			} else if o, err = e.observeService(ctx, n, lay.DataDir); err != nil {
				return err
			}
			o.Running, o.DataDir = running, lay.DataDir
			return nil
		},
	)
	if err != nil {
		return nil, err
	}
	if confProblem != "" {
		problems = append(problems, confProblem)
	}
	problems = append(problems, liveProblems...)
	if err := decideService(o); err != nil {
		problems = append(problems, err.Error())
	}
	return problems, nil
}

// serviceLook is one observeService of a DR node for checkDataDirs, made
// beside the probe of its data directory.
type serviceLook struct {
	o   serviceObs
	err error
}

// dirLook is one probe of a DR node's data directory for checkDataDirs.
type dirLook struct {
	lay nodeLayout
	tss []tsMap
	o   DirObs
	pr  cluster.DataDirProbe
	err error
}

// lookAtDir probes n's data directory, its parent, sdr's work directory
// and the locations of its tablespaces' copies.
//
// learn, when not nil, makes this look the one that learns n's layout
// (the layouts flight's lead): data_dir is probed as configured, and the
// probe's real paths give the layout. Where data_dir is its own real path
// (no symlink on the way, the usual case) that probe is the look; else the
// real path is probed again.
func (e *Env) lookAtDir(ctx context.Context, n *cluster.Node, p remoteFacts, learn func(nodeLayout, error)) *dirLook {
	main, _ := e.mainStandby()
	tss := tablespaceMaps(p.Tablespaces, n.Name, main.Name, n == main)
	extraOf := func(lay nodeLayout) []string {
		extra := []string{path.Dir(lay.DataDir), lay.Work}
		for _, t := range tss {
			extra = append(extra, t.Live, path.Dir(t.Live))
		}
		return extra
	}
	var lay nodeLayout
	var first *cluster.DataDirProbe
	var err error
	if learn != nil {
		lay, first, err = e.learnLayoutByProbe(ctx, n, extraOf, learn)
	} else {
		lay, err = e.layoutOf(ctx, n)
	}
	if err != nil {
		return &dirLook{err: err}
	}
	o, pr, err := e.observeDirFrom(ctx, n, lay, nil, extraOf(lay), first)
	return &dirLook{lay: lay, tss: tss, o: o, pr: pr, err: err}
}

// learnLayoutByProbe probes data_dir as configured (with extraOf's paths
// for that layout), gives learn the layout the probe shows, and returns
// the probe when it was made at the layout's own paths.
func (e *Env) learnLayoutByProbe(ctx context.Context, n *cluster.Node, extraOf func(nodeLayout) []string,
	learn func(nodeLayout, error)) (lay nodeLayout, first *cluster.DataDirProbe, err error) {
	defer func() {
		if v := recover(); v != nil {
			learn(nodeLayout{}, errFlightPanicked)
			panic(v)
		}
		learn(lay, err)
	}()
	asIs := configuredLayout(n)
	pr, err := e.probeDir(ctx, n, asIs, nil, extraOf(asIs))
	if err != nil {
		return nodeLayout{}, nil, fmt.Errorf("while resolving data_dir %s on %s: %w", n.DataDir, n.Name, err)
	}
	lay = layoutFromPaths(n.DataDir, pr.Dir, pr.Extra[path.Dir(asIs.DataDir)])
	if lay == asIs {
		first = &pr
	}
	return lay, first, nil
}

// realPath resolves p on n ("" when it does not exist).
func (e *Env) realPath(ctx context.Context, n *cluster.Node, p string) (string, error) {
	if !path.IsAbs(p) {
		return "", nil
	}
	a, err := e.access(ctx, n)
	if err != nil {
		return "", err
	}
	cctx, cancel := e.cmdCtx(ctx)
	defer cancel()
	_, infos, err := cluster.StatPaths(cctx, a, p)
	if err != nil {
		return "", fmt.Errorf("while resolving %s on %s: %w", p, n.Name, err)
	}
	return infos[p].RealPath, nil
}

func indexOf(nodes []*cluster.Node, n *cluster.Node) int {
	for i := range nodes {
		if nodes[i] == n {
			return i
		}
	}
	return -1
}

// checkDataDirs classifies every DR node's data directory, and checks its
// layout, its configuration and its service manager, before anything is
// stopped: a directory that sdr must not replace, a layout a rebuild by
// renames cannot handle, a configuration sdr would not find or a server
// run by another manager than the config says, is refused here, naming
// the node, the directory and why.
func (e *Env) checkDataDirs(ctx context.Context, rc *workflow.RunContext, p remoteFacts, ids func() []DirIdentity, looks []*dirLook,
	services []*serviceLook) error {
	view := later(func() PrimaryView { return e.primaryViewFrom(ctx, rc.Log, p, ids) })
	nodes := e.standbyNodes()
	problems := make([][]string, len(nodes))
	err := forEach(ctx, nodes, func(ctx context.Context, n *cluster.Node) error {
		i := indexOf(nodes, n)
		l := looks[i]
		if l == nil || l.err != nil {
			l = e.lookAtDir(ctx, n, p, nil)
		}
		if l.err != nil {
			return l.err
		}
		lay, o, pr, tss := l.lay, l.o, l.pr, l.tss
		v := ClassifyDataDir(o, view(), e.named(n.Name))
		rc.Log.Info("data directory classified", zap.String("node", n.Name), zap.String("kind", string(v.Kind)),
			zap.Bool("replace", v.Replace), zap.String("why", v.Reason))
		if !v.Replace {
			problems[i] = append(problems[i], v.Reason)
		}
		problems[i] = append(problems[i], layoutProblems(n.Name, lay, pr.Dir, pr.Extra[path.Dir(lay.DataDir)], pr.Extra[lay.Work], tss, pr.Extra)...)
		setup, err := e.checkNodeSetup(ctx, n, lay, o.Running, pr.PostmasterPID, o.Files, services[i])
		if err != nil {
			return err
		}
		problems[i] = append(problems[i], setup...)
		return nil
	})
	if err != nil {
		return err
	}
	var all []string
	for _, p := range problems {
		all = append(all, p...)
	}
	if len(all) > 0 {
		return permanent(fmt.Errorf("nothing was stopped: %s", strings.Join(all, "; ")))
	}
	return nil
}
