package steps

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/pgsdr/sdr/cluster"
)

// observeDir probes n's data directory in one round trip (plus one query
// when PostgreSQL runs there) and returns what the classifier needs, with
// the probe itself. files and extra are passed on to the probe.
//
// A PostgreSQL that runs there but does not take sessions yet, because it
// is starting up or shutting down (a run killed during a start or a stop
// leaves one), is looked at again until it takes them or has gone,
// bounded by timeouts.connect (a standby with hot_standby off never takes
// them: that is an error after the wait).
func (e *Env) observeDir(ctx context.Context, n *cluster.Node, lay nodeLayout, files, extra []string) (DirObs, cluster.DataDirProbe, error) {
	return e.observeDirFrom(ctx, n, lay, files, extra, nil)
}

// observeDirFrom is observeDir, with first, when not nil, a probe of the
// same directory with the same files and extra paths made just before:
// it is looked at instead of probing again, and a server that does not
// take sessions yet is probed again as observeDir would.
func (e *Env) observeDirFrom(ctx context.Context, n *cluster.Node, lay nodeLayout, files, extra []string, first *cluster.DataDirProbe) (DirObs, cluster.DataDirProbe, error) {
	var o DirObs
	var pr cluster.DataDirProbe
	var err error
	wait := e.Config.Timeouts.Connect.Duration
	if wait <= 0 {
		wait = cluster.DefaultConnectTimeout
	}
	perr := poll(ctx, wait, pollFast, "PostgreSQL in "+lay.DataDir+" on "+n.Name+" to finish starting or stopping",
		func(ctx context.Context) (bool, error) {
			if first != nil {
				pr, first = *first, nil
				o, err = e.observeProbe(ctx, n, lay, pr)
			} else {
				o, pr, err = e.observeDirOnce(ctx, n, lay, files, extra)
			}
			if cluster.IsCannotConnectNow(err) {
				return false, err
			}
			return true, nil
		})
	if perr != nil && err == nil {
		err = perr
	}
	if perr != nil && cluster.IsCannotConnectNow(err) {
		err = perr // the timeout, which names the last error
	}
	return o, pr, err
}

func (e *Env) observeDirOnce(ctx context.Context, n *cluster.Node, lay nodeLayout, files, extra []string) (DirObs, cluster.DataDirProbe, error) {
	pr, err := e.probeDir(ctx, n, lay, files, extra)
	if err != nil {
		return DirObs{}, pr, err
	}
	o, err := e.observeProbe(ctx, n, lay, pr)
	return o, pr, err
}

// probeDir is the one remote action of observeDirOnce: the probe of the
// data directory, sdr's markers in it and files and extra.
func (e *Env) probeDir(ctx context.Context, n *cluster.Node, lay nodeLayout, files, extra []string) (cluster.DataDirProbe, error) {
	a, err := e.access(ctx, n)
	if err != nil {
		return cluster.DataDirProbe{}, err
	}
	cctx, cancel := e.cmdCtx(ctx)
	defer cancel()
	files = append([]string{markerName, lay.LegacyBuilt(), "backup_label"}, files...)
	pr, err := cluster.ProbeDataDir(cctx, a, n.BinDir, lay.DataDir, files, extra)
	if err != nil {
		return pr, fmt.Errorf("while probing data directory %s on %s: %w", lay.DataDir, n.Name, err)
	}
	return pr, nil
}

// observeProbe turns probeDir's probe into the classifier's input, asking
// a server that runs there what it is.
func (e *Env) observeProbe(ctx context.Context, n *cluster.Node, lay nodeLayout, pr cluster.DataDirProbe) (DirObs, error) {
	o := dirObsFromProbe(n, pr, lay)
	if o.Running {
		cctx, cancel := e.cmdCtx(ctx)
		defer cancel()
		if err := e.observeRunning(cctx, n, &o); err != nil {
			return o, err
		}
	}
	if !o.Running && o.HasControl && o.TimeLineID > 1 && primaryStates[o.ClusterState] {
		// A stopped former primary past timeline 1: its own history of
		// that timeline says where it forked from (ClassifyDataDir holds
		// it against the primary's). Unreadable, it stays unknown.
		var err error
		if o.History, err = e.ownHistory(ctx, n, lay, o.TimeLineID); err != nil {
			o.HistoryErr = err.Error()
		}
	}
	return o, nil
}

// ownHistory reads the timeline history file of timeline tli in the data
// directory on n: the switch point where it left each earlier timeline.
// An error says why it cannot be read (the directory's lineage is then
// unknown).
func (e *Env) ownHistory(ctx context.Context, n *cluster.Node, lay nodeLayout, tli int) (map[int]cluster.LSN, error) {
	a, err := e.access(ctx, n)
	if err != nil {
		return nil, err
	}
	cctx, cancel := e.cmdCtx(ctx)
	defer cancel()
	p := path.Join(lay.DataDir, "pg_wal", fmt.Sprintf("%08X.history", tli))
	raw, err := a.ReadFile(cctx, p)
	if err != nil {
		return nil, fmt.Errorf("while reading %s on %s: %w", p, n.Name, err)
	}
	forks, err := parseForks(string(raw))
	if err == nil && len(forks) == 0 {
		err = errors.New("it names no earlier timeline")
	}
	if err != nil {
		return nil, fmt.Errorf("%s on %s: %w", p, n.Name, err)
	}
	return forks, nil
}

// dirObsFromProbe turns a probe into the classifier's input.
func dirObsFromProbe(n *cluster.Node, pr cluster.DataDirProbe, lay nodeLayout) DirObs {
	o := DirObs{
		Node: n.Name, Path: n.DataDir,
		Identity: DirIdentity{Node: n.Name, Machine: pr.Machine.MachineID, RealPath: pr.Dir.RealPath, Dev: pr.Dir.Dev, Ino: pr.Dir.Ino},
		Exists:   pr.Dir.Exists, Empty: pr.Dir.Empty,
		Running: pr.PostmasterAlive, ControlErr: pr.ControlErr,
	}
	if c := pr.Control; c != nil {
		o.HasControl = true
		o.SystemID, o.ClusterState, o.TimeLineID = c.SystemID, c.State, c.TimeLineID
	}
	if b, ok := pr.Files[markerName]; ok {
		if m, ok := ParseCopyMarker(string(b)); ok {
			o.Marker = &m
		}
	}
	// pg_basebackup's label (PostgreSQL 13-17); an exclusive backup of
	// PostgreSQL 13/14 has the operator's.
	label, ok := pr.Files["backup_label"]
	o.NeverRan = ok && pr.StandbySignal && strings.Contains(string(label), "\nLABEL: pg_basebackup base backup\n")
	if b, ok := pr.Files[lay.LegacyBuilt()]; ok {
		if f := strings.Fields(string(b)); len(f) > 0 {
			o.LegacyMarker = f[0]
		}
	}
	return o
}

const runningDirSQL = `SELECT pg_is_in_recovery(), coalesce(w.sender_host, ''), coalesce(w.sender_port, 0),
	coalesce(w.slot_name, ''), coalesce(w.conninfo, ''),
	current_setting('config_file'), current_setting('hba_file'), current_setting('ident_file'), current_setting('data_directory')
	FROM (SELECT 1) one LEFT JOIN pg_stat_wal_receiver w ON true`

// observeRunning asks the PostgreSQL running in n's data directory
// whether it is in recovery, where it streams from and where it reads its
// configuration (showConfigSQL's settings).
func (e *Env) observeRunning(ctx context.Context, n *cluster.Node, o *DirObs) error {
	return e.withAdmin(ctx, n, func(ctx context.Context, c *pgx.Conn) error {
		var host, slot, conninfo string
		var port int
		var f nodeConf
		if err := c.QueryRow(ctx, runningDirSQL).Scan(&o.InRecovery, &host, &port, &slot, &conninfo,
			&f.ConfigFile, &f.HbaFile, &f.IdentFile, &f.DataDirectory); err != nil {
			return fmt.Errorf("while asking the PostgreSQL running on %s what it is: %w", n.Name, err)
		}
		o.Files = &f
		if host != "" {
			o.Upstream = &UpstreamObs{Host: host, Port: port, Slot: slot, AppName: conninfoValue(conninfo, "application_name")}
		}
		return nil
	})
}

// conninfoValue returns key's value in a libpq key=value connection
// string ("" when it is not there). A key given twice has its last value,
// as libpq takes it.
func conninfoValue(conninfo, key string) string {
	s := conninfo
	last := ""
	for {
		s = strings.TrimLeft(s, " \t\n")
		if s == "" {
			return last
		}
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			return last
		}
		k := strings.TrimSpace(s[:eq])
		s = strings.TrimLeft(s[eq+1:], " \t")
		var v strings.Builder
		if strings.HasPrefix(s, "'") {
			s = s[1:]
			for len(s) > 0 && s[0] != '\'' {
				if s[0] == '\\' && len(s) > 1 {
					s = s[1:]
				}
				v.WriteByte(s[0])
				s = s[1:]
			}
			if len(s) > 0 {
				s = s[1:]
			}
		} else {
			i := strings.IndexAny(s, " \t\n")
			if i < 0 {
				i = len(s)
			}
			v.WriteString(s[:i])
			s = s[i:]
		}
		if k == key {
			last = v.String()
		}
	}
}

// primaryViewLater starts primaryView at once and returns a function that
// waits for it: the probes of the primary-cluster nodes run while the DR
// nodes are probed, and only the classification waits for both.
func (e *Env) primaryViewLater(ctx context.Context, log *zap.Logger, p remoteFacts) func() PrimaryView {
	return later(func() PrimaryView { return e.primaryView(ctx, log, p) })
}

// later runs f at once and returns a function that waits for its result.
func later[T any](f func() T) func() T {
	ch := make(chan T, 1)
	go func() { ch <- f() }()
	var once sync.Once
	var v T
	return func() T {
		once.Do(func() { v = <-ch })
		return v
	}
}

// primaryView is what the classifier knows of the primary: its system
// identifier and timeline, and where the primary-cluster nodes' data
// directories really are. Primary-cluster nodes that cannot be reached
// over SSH from here are left out (logged): the checks on pg_control and
// sdr's markers still apply to every DR node.
func (e *Env) primaryView(ctx context.Context, log *zap.Logger, p remoteFacts) PrimaryView {
	return e.primaryViewFrom(ctx, log, p, e.primaryIDsLater(ctx, log))
}

// primaryViewFrom is primaryView with the primary-cluster nodes' data
// directories probed by ids (primaryIDsLater), which may have started
// before the primary was asked. The primary's timeline history is read
// while they are probed.
func (e *Env) primaryViewFrom(ctx context.Context, log *zap.Logger, p remoteFacts, ids func() []DirIdentity) PrimaryView {
	pair := e.Config.Name
	forks, err := e.timelineForks(ctx, p)
	if err != nil {
		log.Info("the primary's timeline history could not be read; directories of earlier timelines are refused", zap.Error(err))
	}
	var anc map[int]bool
	if forks != nil {
		anc = map[int]bool{}
		for tli := range forks {
			anc[tli] = true
		}
	}
	return PrimaryView{Pair: pair, SystemID: p.SystemID, TimeLineID: p.TimeLineID, Ancestors: anc, Forks: forks,
		AppName:  func(node string) string { return cluster.AppName(pair, node) },
		SlotName: func(node string) string { return cluster.SlotName(pair, node) },
		Nodes:    ids(),
	}
}

// primaryIDsLater starts probing where the primary-cluster nodes' data
// directories really are (all at once) and returns a function that waits
// for the identities. Nodes that cannot be reached over SSH from here are
// left out (logged): the checks on pg_control and sdr's markers still
// apply to every DR node.
func (e *Env) primaryIDsLater(ctx context.Context, log *zap.Logger) func() []DirIdentity {
	return later(func() []DirIdentity {
		nodes := e.primaryNodes()
		ids := make([]*DirIdentity, len(nodes))
		_ = forEach(ctx, nodes, func(ctx context.Context, pn *cluster.Node) error {
			cctx, cancel := e.cmdCtx(ctx)
			defer cancel()
			a, err := e.access(cctx, pn)
			if err == nil {
				var m cluster.Machine
				var infos map[string]cluster.PathInfo
				m, infos, err = cluster.StatPaths(cctx, a, pn.DataDir)
				if err == nil {
					pi := infos[pn.DataDir]
					ids[indexOf(nodes, pn)] = &DirIdentity{Node: pn.Name, Machine: m.MachineID, RealPath: pi.RealPath, Dev: pi.Dev, Ino: pi.Ino}
					return nil
				}
			}
			if ctx.Err() == nil {
				log.Info("primary-cluster node not probed; its data directory is recognised by pg_control and sdr's markers only",
					zap.String("node", pn.Name), zap.Error(err))
			}
			return nil
		})
		var out []DirIdentity
		for _, id := range ids {
			if id != nil {
				out = append(out, *id)
			}
		}
		return out
	})
}

// layoutProblems lists what makes a DR node's layout unusable for a
// rebuild by renames: a data_dir that is a mount point, a work directory
// on another filesystem, tablespace locations that cannot be made beside
// the primary's. Each names the node, the path and what to change.
func layoutProblems(node string, lay nodeLayout, data, parent, work cluster.PathInfo, tss []tsMap, paths map[string]cluster.PathInfo) []string {
	var out []string
	if data.MountPoint {
		out = append(out, fmt.Sprintf("DR node %s: data_dir %s is a mount point: sdr builds the new copy beside the data directory and swaps it in "+
			"with a rename, which cannot replace a mount point; set data_dir to a directory inside the mount (for example %s) and move the data there",
			node, lay.DataDir, path.Join(lay.DataDir, "data")))
	}
	if work.Exists && (!work.IsDir || work.IsSymlink || work.MountPoint || work.Dev != parent.Dev || work.Mount != parent.Mount) {
		out = append(out, fmt.Sprintf("DR node %s: sdr's work directory %s is not a plain directory on the filesystem of %s: "+
			"renames between them would copy; remove it (sdr creates it again) or move it onto that filesystem", node, lay.Work, lay.DataDir))
	}
	for _, t := range tss {
		parent := paths[path.Dir(t.Live)]
		live := paths[t.Live]
		switch {
		case !parent.Exists || !parent.IsDir:
			out = append(out, fmt.Sprintf("DR node %s: tablespace %s lives in %s on the primary; its copy on %s goes beside it, in %s, "+
				"but %s does not exist there: create it (owned by the PostgreSQL OS user)", node, t.Name, t.Primary, node, t.Live, path.Dir(t.Live)))
		case live.MountPoint:
			out = append(out, fmt.Sprintf("DR node %s: tablespace %s's location %s is a mount point: it cannot be swapped by a rename; "+
				"unmount it or move the mount to %s", node, t.Name, t.Live, path.Dir(t.Live)))
		case strings.HasPrefix(t.Live+"/", lay.DataDir+"/") || strings.HasPrefix(lay.DataDir+"/", t.Live+"/"):
			out = append(out, fmt.Sprintf("DR node %s: tablespace %s's location %s and the data directory %s overlap", node, t.Name, t.Live, lay.DataDir))
		}
	}
	return out
}

// timelineForks reads the primary's timeline history over a replication
// connection from the main standby (TIMELINE_HISTORY, which the
// replication user may run) and returns the timelines it forked from, each
// with the switch point where it left it.
func (e *Env) timelineForks(ctx context.Context, p remoteFacts) (map[int]cluster.LSN, error) {
	if p.TimeLineID <= 1 {
		return nil, nil
	}
	main, _ := e.mainStandby()
	via, err := e.access(ctx, main)
	if err != nil {
		return nil, err
	}
	cctx, cancel := e.cmdCtx(ctx)
	defer cancel()
	conn, err := cluster.ConnectReplication(cctx, e.Config, via, p.Node.Host, p.Node.PGPort, e.Password)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	results, err := conn.Exec(cctx, fmt.Sprintf("TIMELINE_HISTORY %d", p.TimeLineID)).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("TIMELINE_HISTORY %d on %s: %w", p.TimeLineID, p.Node.Name, err)
	}
	if len(results) != 1 || len(results[0].Rows) != 1 || len(results[0].Rows[0]) < 2 {
		return nil, fmt.Errorf("TIMELINE_HISTORY %d on %s returned no history", p.TimeLineID, p.Node.Name)
	}
	return parseForks(string(results[0].Rows[0][1]))
}
