package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pgsdr/sdr/e2e/bed"
)

type bench struct {
	o             options
	bed           *bed.Bed
	sdr           string
	shimDir       string
	config        string            // the bed's config with every bin_dir at shimDir
	lastConfig    string            // the config of the last timed sdr run (the short commands use it)
	configs       map[string]string // the configs of the sdr kinds with copy settings, by kind
	floorPassFile string
	floorBinary   string // a copy of this program that postgres can run
	timeout       time.Duration
	shimOutside   float64 // seconds per shimmed call outside the interval it records
	link          *link   // the rate-limited link (-link-rate), or nil
	systemID      string  // the primary's system identifier
}

// proc is one finished sdr process.
type proc struct {
	args      []string
	start     time.Time
	end       time.Time
	code      int
	maxRSSKiB int64
	out       string
}

func (p proc) took() time.Duration { return p.end.Sub(p.start) }

func (p proc) String() string {
	return fmt.Sprintf("sdr %s: exit %d after %s\n%s", strings.Join(p.args, " "), p.code, p.took().Round(time.Millisecond), tailLines(p.out, 40))
}

// startSDR starts sdr with args; wait finishes it.
func (bm *bench) startSDR(ctx context.Context, bin string, args ...string) (*exec.Cmd, *bytes.Buffer, time.Time, error) {
	return startProc(ctx, bm.bed.Dir, bin, args...)
}

// startProc starts sdr with args in dir; wait finishes it.
func startProc(ctx context.Context, dir, bin string, args ...string) (*exec.Cmd, *bytes.Buffer, time.Time, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	// Interrupted, sdr records the interruption and exits.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	return cmd, &out, start, cmd.Start()
}

func wait(cmd *exec.Cmd, out *bytes.Buffer, start time.Time) proc {
	err := cmd.Wait()
	p := proc{args: cmd.Args[1:], start: start, end: time.Now(), out: out.String()}
	if err != nil {
		p.code = -1
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			p.code = ee.ExitCode()
		}
	}
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			p.maxRSSKiB = ru.Maxrss // KiB on Linux: the child's peak resident set
		}
	}
	return p
}

func (bm *bench) sdrOnce(ctx context.Context, args ...string) (proc, error) {
	return runProc(ctx, bm.bed.Dir, bm.sdr, args...)
}

// runProc runs sdr with args in dir and waits for it.
func runProc(ctx context.Context, dir, bin string, args ...string) (proc, error) {
	cmd, out, start, err := startProc(ctx, dir, bin, args...)
	if err != nil {
		return proc{}, err
	}
	return wait(cmd, out, start), nil
}

func (bm *bench) startArgs(role, config string, restart bool) []string {
	b := bm.bed
	state, logFile := b.StateFilePrimary, b.LogFilePrimary
	if role == "standby" {
		state, logFile = b.StateFileStandby, b.LogFileStandby
	}
	args := []string{"--config", config, "--state", state, "--log-file", logFile, "start", "--role", role,
		"--timeout", bm.timeout.String()}
	if restart {
		args = append(args, "--restart")
	}
	return args
}

// sdrRun is one timed run of both starts at once.
type sdrRun struct {
	Wall        float64               `json:"wall_s"`            // first start to last exit
	Primary     float64               `json:"primary_s"`         // start --role primary alone
	Standby     float64               `json:"standby_s"`         // start --role standby alone
	Tools       float64               `json:"tools_s"`           // union of pg_basebackup and pg_ctl start/stop calls
	Probes      float64               `json:"probes_s"`          // union of pg_ctl status calls
	Own         float64               `json:"own_s"`             // Wall - Tools
	OwnNoProbes float64               `json:"own_excl_probes_s"` // Wall - union of all shimmed calls
	ToolCalls   int                   `json:"tool_calls"`
	ProbeCalls  int                   `json:"probe_calls"`
	RSSPrimary  int64                 `json:"maxrss_primary_kib"`
	RSSStandby  int64                 `json:"maxrss_standby_kib"`
	Env         runEnv                `json:"env"`
	Steps       map[string][]stepTime `json:"steps"` // by role
	Calls       map[string]callSum    `json:"calls"` // by "program mode node"; pg_ctl status of all nodes together
	CallOrder   []string              `json:"-"`
	OwnLessShim float64               `json:"own_less_shim_s"` // Own less the shim's calibrated cost per call
	// MainCopy is the main standby's copy from the primary: the
	// pg_basebackup call into dc2-a (or onto the fan-out's tar stream).
	MainCopy float64 `json:"main_copy_s"`
	// LinkBytes crossed the rate-limited link from the primary (-link-rate).
	LinkBytes int64 `json:"link_bytes,omitempty"`
}

// callSum adds up the calls of one program and mode in one run.
type callSum struct {
	N       int     `json:"n"`
	Seconds float64 `json:"s"`
}

type stepTime struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"s"`
	Own     float64 `json:"own_s"` // less the pg_basebackup and pg_ctl start/stop calls within the step
	start   time.Time
	end     time.Time
}

// nodeOf names the node whose data directory (or sdr's work directory
// beside it) holds dir.
func (bm *bench) nodeOf(dir string) string {
	if dir == "-" {
		return "(tar stream on stdout)"
	}
	for _, name := range bed.NodeNames {
		d := bm.bed.Node(name).DataDir
		if dir == d || strings.HasPrefix(dir, d+".") || strings.HasPrefix(dir, d+"/") {
			return name
		}
	}
	return dir
}

// runPair runs both starts at the same time and splits the wall time.
func (bm *bench) runPair(ctx context.Context, bin, config string, restart bool) (sdrRun, error) {
	if err := resetCallsLog(bm.shimDir); err != nil {
		return sdrRun{}, err
	}
	t0 := time.Now()
	pc, pout, pstart, err := bm.startSDR(ctx, bin, bm.startArgs("primary", config, restart)...)
	if err != nil {
		return sdrRun{}, err
	}
	sc, sout, sstart, err := bm.startSDR(ctx, bin, bm.startArgs("standby", config, restart)...)
	if err != nil {
		_ = pc.Process.Kill()
		_ = pc.Wait()
		return sdrRun{}, err
	}
	done := make(chan proc)
	go func() { done <- wait(pc, pout, pstart) }()
	s := wait(sc, sout, sstart)
	if s.code != 0 {
		// The primary role would wait for the standby until its timeout.
		_ = pc.Process.Signal(syscall.SIGTERM)
	}
	p := <-done
	t1 := p.end
	if s.end.After(t1) {
		t1 = s.end
	}
	if p.code != 0 || s.code != 0 {
		return sdrRun{}, fmt.Errorf("sdr start failed:\n%s\n%s", p, s)
	}
	calls, err := readCalls(bm.shimDir)
	if err != nil {
		return sdrRun{}, err
	}
	for _, c := range calls {
		if c.Exit != 0 && !(c.Prog == "pg_ctl" && c.Mode == "status") {
			return sdrRun{}, fmt.Errorf("a %s %s call during the run exited %d", c.Prog, c.Mode, c.Exit)
		}
	}
	workTime, probes, nw, np := toolTime(calls, t0, t1)
	var all []interval
	for _, c := range calls {
		all = append(all, interval{c.Start, c.End})
	}
	wall := t1.Sub(t0)
	r := sdrRun{
		Wall: wall.Seconds(), Primary: p.took().Seconds(), Standby: s.took().Seconds(),
		Tools: workTime.Seconds(), Probes: probes.Seconds(), Own: (wall - workTime).Seconds(),
		OwnNoProbes: (wall - unionWithin(all, t0, t1)).Seconds(),
		ToolCalls:   nw, ProbeCalls: np, RSSPrimary: p.maxRSSKiB, RSSStandby: s.maxRSSKiB,
		Steps: map[string][]stepTime{}, Calls: map[string]callSum{},
	}
	sort.Slice(calls, func(i, j int) bool { return calls[i].Start.Before(calls[j].Start) })
	for _, c := range calls {
		k := c.Prog
		if c.Mode != "-" {
			k += " " + c.Mode
		}
		if c.Mode != "status" {
			k += " " + bm.nodeOf(c.Dir)
		}
		cs, ok := r.Calls[k]
		if !ok {
			r.CallOrder = append(r.CallOrder, k)
		}
		cs.N++
		cs.Seconds += c.End.Sub(c.Start).Seconds()
		r.Calls[k] = cs
		if c.Prog == "pg_basebackup" && (c.Dir == "-" || bm.nodeOf(c.Dir) == bed.DC2A) {
			r.MainCopy += c.End.Sub(c.Start).Seconds()
		}
	}
	r.OwnLessShim = r.Own - float64(len(calls))*bm.shimOutside
	for role, pr := range map[string]proc{"primary": p, "standby": s} {
		// The calls this role made: those on its side's nodes.
		var work []interval
		for _, c := range calls {
			n, ok := bm.bed.Nodes[bm.nodeOf(c.Dir)]
			if c.Dir == "-" {
				// The fan-out's pg_basebackup writes its tar stream on
				// stdout: it runs on the main standby's node.
				n, ok = bm.bed.Nodes[bed.DC2A], true
			}
			if ok && n.Side == role && !(c.Prog == "pg_ctl" && c.Mode == "status") {
				work = append(work, interval{c.Start, c.End})
			}
		}
		state := bm.bed.StateFilePrimary
		if role == "standby" {
			state = bm.bed.StateFileStandby
		}
		steps, err := bm.stepTimes(ctx, state)
		if err != nil {
			return r, err
		}
		// The time of the process outside every step: start-up, config,
		// lock, state file, connections, and the runner between steps.
		var in []interval
		for i, st := range steps {
			steps[i].Own = st.Seconds - unionWithin(work, st.start, st.end).Seconds()
			in = append(in, interval{st.start, st.end})
		}
		outside := pr.took() - unionWithin(in, pr.start, pr.end)
		steps = append(steps, stepTime{Name: "(outside the steps)", Seconds: outside.Seconds(), Own: outside.Seconds()})
		r.Steps[role] = steps
	}
	return r, nil
}

// stepTimes reads the step durations of the last run from status --json.
func (bm *bench) stepTimes(ctx context.Context, state string) ([]stepTime, error) {
	return readStepTimes(ctx, bm.bed.Dir, bm.sdr, state, "")
}

// readStepTimes reads, from status --json of a state file, the durations
// of the steps done by the last run of every workflow, or of the
// workflow named workflow ("failover/standby") when it is not "".
func readStepTimes(ctx context.Context, dir, sdr, state, workflow string) ([]stepTime, error) {
	p, err := runProc(ctx, dir, sdr, "--state", state, "status", "--json")
	if err != nil {
		return nil, err
	}
	if p.code != 0 {
		return nil, fmt.Errorf("%s", p)
	}
	var doc struct {
		Workflows []struct {
			Workflow string `json:"workflow"`
			Steps    []struct {
				Name    string     `json:"name"`
				Status  string     `json:"status"`
				Started *time.Time `json:"started"`
				Ended   *time.Time `json:"ended"`
			} `json:"steps"`
		} `json:"workflows"`
	}
	if err := json.Unmarshal([]byte(p.out), &doc); err != nil {
		return nil, fmt.Errorf("status --json of %s: %w", state, err)
	}
	var out []stepTime
	for _, w := range doc.Workflows {
		if workflow != "" && w.Workflow != workflow {
			continue
		}
		for _, s := range w.Steps {
			if s.Status != "done" || s.Started == nil || s.Ended == nil {
				continue
			}
			out = append(out, stepTime{Name: s.Name, Seconds: s.Ended.Sub(*s.Started).Seconds(), start: *s.Started, end: *s.Ended})
		}
	}
	return out, nil
}

// shimCalibration is what the timing shim adds to each call.
type shimCalibration struct {
	Calls    int     `json:"calls"`
	OutsideS float64 `json:"outside_s"` // median per call: the shim's wall time less the interval it records
	AddsS    float64 `json:"adds_s"`    // median wall of a call through the shim less median wall of the real program
}

// calibrateShim runs pg_ctl --version as postgres through the shim and
// directly, and compares.
func (bm *bench) calibrateShim(ctx context.Context) (shimCalibration, error) {
	const n = 30
	uid, gid, err := postgresIDs()
	if err != nil {
		return shimCalibration{}, err
	}
	runAs := func(path string) (time.Duration, error) {
		cmd := exec.CommandContext(ctx, path, "--version")
		cmd.Dir = "/"
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		start := time.Now()
		err := cmd.Run()
		return time.Since(start), err
	}
	if err := resetCallsLog(bm.shimDir); err != nil {
		return shimCalibration{}, err
	}
	var viaShim, real []time.Duration
	for i := 0; i < n; i++ {
		d, err := runAs(filepath.Join(bm.shimDir, "pg_ctl"))
		if err != nil {
			return shimCalibration{}, fmt.Errorf("calibrating the shim: %w", err)
		}
		viaShim = append(viaShim, d)
		if d, err = runAs(filepath.Join(bed.BinDir, "pg_ctl")); err != nil {
			return shimCalibration{}, err
		}
		real = append(real, d)
	}
	calls, err := readCalls(bm.shimDir)
	if err != nil {
		return shimCalibration{}, err
	}
	if len(calls) != n {
		return shimCalibration{}, fmt.Errorf("calibrating the shim: %d calls recorded, want %d", len(calls), n)
	}
	var outside []time.Duration
	for i, c := range calls {
		outside = append(outside, viaShim[i]-c.End.Sub(c.Start))
	}
	return shimCalibration{Calls: n, OutsideS: summarise(outside).Median,
		AddsS: summarise(viaShim).Median - summarise(real).Median}, resetCallsLog(bm.shimDir)
}

// repeat runs one short sdr command reps times and checks each outcome.
func (bm *bench) repeat(ctx context.Context, want string, args ...string) ([]time.Duration, int64, error) {
	var d []time.Duration
	var rss int64
	for i := 0; i < bm.o.reps; i++ {
		p, err := bm.sdrOnce(ctx, args...)
		if err != nil {
			return nil, 0, err
		}
		if p.code != 0 || !strings.Contains(p.out, want) {
			return nil, 0, fmt.Errorf("expected exit 0 and %q:\n%s", want, p)
		}
		d = append(d, p.took())
		rss = max(rss, p.maxRSSKiB)
	}
	return d, rss, nil
}

// waitTopology waits until dc2-a streams from dc1-a and dc2-b from dc2-a:
// the starting state of every timed run, and its expected outcome.
func (bm *bench) waitTopology(ctx context.Context, timeout time.Duration) error {
	b := bm.bed
	deadline := time.Now().Add(timeout)
	want := map[string]string{bed.DC2A: "streaming " + strconv.Itoa(b.Node(bed.DC1A).Port), bed.DC2B: "streaming " + strconv.Itoa(b.Node(bed.DC2A).Port)}
	for _, n := range []string{bed.DC2A, bed.DC2B} {
		for {
			got, err := b.SQL(ctx, n, "SELECT coalesce((SELECT status || ' ' || sender_port FROM pg_stat_wal_receiver), 'none')")
			if err == nil && got == want[n] {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: wal receiver %q (err %v), want %q", n, got, err, want[n])
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// prepareRun restores the starting state: the DR cluster streams, sdr's
// built markers are gone (so that sdr copies again instead of reusing the
// finished copies), no old copy of the floor is left, both upstreams have
// just checkpointed, dirty pages are written back, and the calls log is
// empty. Then it waits, up to -quiet-wait, until the rest of the machine
// is quiet: less than -quiet-cores of CPU busy over one second while the
// bed is idle.
func (bm *bench) prepareRun(ctx context.Context) (cleanup time.Duration, env runEnv, err error) {
	b := bm.bed
	if err := bm.waitTopology(ctx, 2*time.Minute); err != nil {
		return 0, env, fmt.Errorf("starting state: %w", err)
	}
	start := time.Now()
	for _, n := range []string{bed.DC2A, bed.DC2B} {
		if err := os.RemoveAll(b.Node(n).DataDir + ".floor-old"); err != nil {
			return 0, env, err
		}
	}
	cleanup = time.Since(start)
	for _, n := range []string{bed.DC2A, bed.DC2B} {
		if err := os.Remove(filepath.Join(b.Node(n).DataDir+".sdr", "built")); err != nil && !os.IsNotExist(err) {
			return 0, env, err
		}
	}
	for _, n := range []string{bed.DC1A, bed.DC2A} {
		if _, err := b.SQL(ctx, n, "CHECKPOINT"); err != nil {
			return 0, env, err
		}
	}
	if err := resetCallsLog(bm.shimDir); err != nil {
		return 0, env, err
	}
	env, err = bm.waitQuiet(ctx)
	return cleanup, env, err
}

// waitQuiet writes back dirty pages, then waits, up to -quiet-wait, until
// fewer than -quiet-cores CPU cores are busy over one second.
func (bm *bench) waitQuiet(ctx context.Context) (runEnv, error) {
	return waitQuiet(ctx, bm.o.quietCores, bm.o.quietWait)
}

// waitQuiet writes back dirty pages, then waits, up to quietWait, until
// fewer than quietCores CPU cores are busy over one second.
func waitQuiet(ctx context.Context, quietCores float64, quietWait time.Duration) (runEnv, error) {
	var env runEnv
	syscall.Sync() // write back what the last run left dirty before the next one starts
	waitStart := time.Now()
	for {
		busy, err := busyCoresOver(ctx, time.Second)
		if err != nil {
			return env, err
		}
		env.BusyBefore = busy
		if busy <= quietCores || time.Since(waitStart) >= quietWait {
			break
		}
	}
	env.WaitedQuiet = time.Since(waitStart).Seconds() - 1
	env.Load1, _, _ = loadavg()
	return env, nil
}

func runBench(ctx context.Context, o options) (*report, error) {
	rep := &report{Version: 1, Date: time.Now().UTC().Format(time.RFC3339), Scale: o.scale, Runs: o.runs, Reps: o.reps,
		Machine: machineInfo()}
	rep.Load.Start[0], rep.Load.Start[1], rep.Load.Start[2] = loadavg()
	logf("building the bed (PostgreSQL 15 x4 and sshd on loopback)")
	b, err := bed.New(ctx, bed.Options{Dir: o.dir, Log: logf})
	if err != nil {
		return nil, err
	}
	defer func() {
		if o.keep {
			logf("bed kept in %s (take it down with: go run ./e2e/cmd/sdr-bed down --dir %s)", b.Dir, b.Dir)
			return
		}
		if err := b.Close(false); err != nil {
			logf("closing the bed: %v", err)
		}
	}()
	bm := &bench{o: o, bed: b, sdr: o.sdr, shimDir: filepath.Join(b.Dir, "shim-bin"), timeout: o.timeout}
	if err := bm.setup(ctx, rep); err != nil {
		return nil, err
	}
	if o.linkBits > 0 {
		defer func() {
			if bm.link != nil {
				bm.link.Close()
			}
			logf("link: removed")
		}()
		if err := bm.setupLink(ctx); err != nil {
			return nil, fmt.Errorf("the rate-limited link: %w", err)
		}
		rep.Link = &linkInfo{RateBits: o.linkBits, Rate: o.linkRate}
	}
	if o.maxRate != "" {
		if rep.Link == nil {
			rep.Link = &linkInfo{}
		}
		rep.Link.MaxRate = o.maxRate
		rep.Link.MaxRateBytes, _ = parseMaxRate(o.maxRate)
	}
	if err := bm.firstStart(ctx, rep); err != nil {
		return nil, err
	}
	if err := bm.rounds(ctx, rep); err != nil {
		return nil, err
	}
	if err := bm.shortCommands(ctx, rep); err != nil {
		return nil, err
	}
	rep.Load.End[0], rep.Load.End[1], rep.Load.End[2] = loadavg()
	return rep, nil
}

// setup makes the shim directory, the shim config and the floor's files,
// calibrates the shim and loads the data.
func (bm *bench) setup(ctx context.Context, rep *report) error {
	b := bm.bed
	if err := makeShimDir(bm.shimDir, bm.o.shim); err != nil {
		return err
	}
	var err error
	// With -link-rate, the primary's replication connections go through
	// the link's relay.
	linked := func(m map[string]any) {
		if bm.o.linkBits > 0 {
			if lerr := linkConfig(m, bed.DC1A, linkNSAddr); lerr != nil {
				err = lerr
			}
		}
	}
	if bm.config, err = b.WriteConfig(func(m *map[string]any) { shimBinDir(*m, bm.shimDir); linked(*m) }); err != nil {
		return err
	}
	bm.lastConfig = bm.config
	for _, k := range bm.o.sdrKinds() {
		if k.copy == nil {
			continue
		}
		copyOpts := k.copy
		if bm.configs == nil {
			bm.configs = map[string]string{}
		}
		if bm.configs[k.name], err = b.WriteConfig(func(m *map[string]any) {
			shimBinDir(*m, bm.shimDir)
			linked(*m)
			(*m)["copy"] = copyOpts
		}); err != nil {
			return err
		}
	}
	if bm.floorPassFile, err = writeFloorPassFile(filepath.Join(b.Dir, "floor"), b.ReplicationUser, b.Password); err != nil {
		return err
	}
	// The floor procedure runs as postgres, from a copy of this program
	// that postgres can read.
	self, err := os.Executable()
	if err != nil {
		return err
	}
	bm.floorBinary = filepath.Join(b.Dir, "floor", "sdr-bench")
	if err := copyFile(self, bm.floorBinary, 0o755); err != nil {
		return err
	}
	if rep.Shim, err = bm.calibrateShim(ctx); err != nil {
		return err
	}
	bm.shimOutside = rep.Shim.OutsideS
	logf("shim: %.2f ms per call outside the interval it records, %.2f ms more than the real program",
		rep.Shim.OutsideS*1000, rep.Shim.AddsS*1000)

	logf("loading pgbench data at scale %d on %s", bm.o.scale, bed.DC1A)
	t := time.Now()
	if err := b.Pgbench(ctx, bed.DC1A, "-i", "-s", strconv.Itoa(bm.o.scale), "-q"); err != nil {
		return err
	}
	rep.LoadSeconds = time.Since(t).Seconds()
	size, err := b.SQL(ctx, bed.DC1A, "SELECT sum(pg_database_size(oid)) FROM pg_database")
	if err != nil {
		return err
	}
	if rep.DBBytes, err = strconv.ParseInt(size, 10, 64); err != nil {
		return fmt.Errorf("database size %q: %w", size, err)
	}
	if rep.Machine.PostgreSQL, err = b.SQL(ctx, bed.DC1A, "SHOW server_version"); err != nil {
		return err
	}
	if bm.systemID, err = b.SQL(ctx, bed.DC1A, "SELECT system_identifier FROM pg_control_system()"); err != nil {
		return err
	}
	logf("database: %d MiB", rep.DBBytes>>20)
	return nil
}

// shimBinDir points the bin_dir of every node of the bed's config m at
// the shim directory (the clusters' defaults; no node sets its own).
func shimBinDir(m map[string]any, dir string) {
	for _, c := range m["clusters"].(map[string]any) {
		cs := c.(map[string]any)
		cs["defaults"].(map[string]any)["bin_dir"] = dir
		for _, n := range cs["nodes"].([]any) {
			delete(n.(map[string]any), "bin_dir")
		}
	}
}

// firstStart runs both starts on the fresh bed. It turns the bed's
// independent dc2 cluster into the DR cluster and creates the primary
// side's role, slot and pg_hba block; it is reported on its own.
func (bm *bench) firstStart(ctx context.Context, rep *report) error {
	env, err := bm.waitQuiet(ctx)
	if err != nil {
		return err
	}
	logf("first sdr start (both roles; sets up the DR pair; %.2f CPUs busy before, waited %.0f s for quiet)", env.BusyBefore, env.WaitedQuiet)
	cpu := startCPU()
	first, err := bm.runPair(ctx, bm.sdr, bm.config, false)
	if err != nil {
		return err
	}
	env.BusyDuring = cpu.cores()
	first.Env = env
	rep.FirstStart = &first
	return nil
}

// rounds runs the floor procedure (and its compressed variant), sdr, its
// copy variants and the baseline alternately.
func (bm *bench) rounds(ctx context.Context, rep *report) error {
	floors := map[string]*floorAcc{"floor": {}}
	kinds := []string{"floor"}
	if bm.o.compress != "" {
		kinds = append(kinds, "floor compressed")
		floors["floor compressed"] = &floorAcc{}
	}
	accs := map[string]*sdrAcc{}
	for _, k := range bm.o.sdrKinds() {
		kinds = append(kinds, k.name)
		bin, cfg := bm.sdr, bm.config
		if k.name == "baseline" {
			bin = bm.o.baseline
		}
		if c, ok := bm.configs[k.name]; ok {
			cfg = c
		}
		accs[k.name] = newSDRAcc(bin)
		accs[k.name].label, accs[k.name].config, accs[k.name].copy = k.name, cfg, k.copyText()
	}
	for i := 0; i < bm.o.runs; i++ {
		// Odd rounds run in the reverse order, so that what a run leaves
		// behind (deleted copies, written-back pages) weighs on each kind alike.
		round := kinds
		if i%2 == 1 {
			round = nil
			for j := len(kinds) - 1; j >= 0; j-- {
				round = append(round, kinds[j])
			}
		}
		for _, which := range round {
			cleanup, env, err := bm.prepareRun(ctx)
			if err != nil {
				return err
			}
			if cleanup > 0 && len(rep.FloorRuns) > 0 {
				rep.FloorRuns[len(rep.FloorRuns)-1].CleanupSeconds = cleanup.Seconds()
			}
			logf("run %d/%d: %s (load %.2f, %.2f CPUs busy before, waited %.0f s for quiet)", i+1, bm.o.runs, which, env.Load1, env.BusyBefore, env.WaitedQuiet)
			rx0 := bm.linkRx()
			cpu := startCPU()
			if fa, ok := floors[which]; ok {
				compress := ""
				if which != "floor" {
					compress = bm.o.compress
				}
				wall, phases, err := bm.runFloor(ctx, compress)
				env.BusyDuring = cpu.cores()
				if err != nil {
					return fmt.Errorf("%w\n%s", err, bm.bed.NodeLogs())
				}
				if err := bm.waitTopology(ctx, 30*time.Second); err != nil {
					return fmt.Errorf("after the floor procedure: %w", err)
				}
				run := floorRun{Wall: wall.Seconds(), Env: env, Phases: phases, LinkBytes: bm.linkRx() - rx0}
				if which == "floor" {
					rep.FloorRuns = append(rep.FloorRuns, run)
				} else {
					rep.FloorCompressedRuns = append(rep.FloorCompressedRuns, run)
				}
				fa.add(wall, phases)
				logf("  %s %.3f s", which, wall.Seconds())
				continue
			}
			acc := accs[which]
			r, err := bm.runPair(ctx, acc.binary, acc.config, true)
			env.BusyDuring = cpu.cores()
			if err != nil {
				return fmt.Errorf("%w\n%s", err, bm.bed.NodeLogs())
			}
			bm.lastConfig = acc.config
			if err := bm.waitTopology(ctx, 30*time.Second); err != nil {
				return fmt.Errorf("after sdr start: %w", err)
			}
			r.Env = env
			r.LinkBytes = bm.linkRx() - rx0
			acc.add(r)
			logf("  %s %.3f s (tools %.3f s, own %.3f s, %d status probes, copy to streaming %.3f s)", which, r.Wall, r.Tools, r.Own, r.ProbeCalls, r.drReady())
		}
	}
	rep.Floor, rep.FloorPhases = floors["floor"].summary()
	rep.FloorReady, rep.FloorMainCopy = floors["floor"].ready()
	if fa := floors["floor compressed"]; fa != nil {
		rep.FloorCompressed = &floorSummary{Compress: bm.o.compress}
		rep.FloorCompressed.Wall, rep.FloorCompressed.Phases = fa.summary()
		rep.FloorCompressed.Ready, rep.FloorCompressed.MainCopy = fa.ready()
	}
	for _, k := range bm.o.sdrKinds() {
		sum := accs[k.name].summary(rep.Floor)
		ref := rep.FloorMainCopy
		if k.compressed() && rep.FloorCompressed != nil {
			ref = rep.FloorCompressed.MainCopy
		}
		if ref.Median > 0 {
			sum.ReadyRatio = sum.Ready.Median / ref.Median
		}
		switch k.name {
		case "sdr":
			rep.SDR = sum
		case "baseline":
			rep.Baseline = &sum
		default:
			rep.Variants = append(rep.Variants, sum)
		}
	}
	return nil
}

// shortCommands times the short commands on the finished pair.
func (bm *bench) shortCommands(ctx context.Context, rep *report) error {
	logf("short commands, %d times each", bm.o.reps)
	for _, role := range []string{"primary", "standby"} {
		state := bm.bed.StateFilePrimary
		if role == "standby" {
			state = bm.bed.StateFileStandby
		}
		short := []struct {
			what, want string
			args       []string
		}{
			{"rerun of a finished start, " + role, "already complete", bm.startArgs(role, bm.lastConfig, false)},
			{"status from the state file, " + role, "workflow start/" + role, []string{"--state", state, "status"}},
			{"status --config (live facts from 4 nodes), " + role, "nodes (live", []string{"--config", bm.lastConfig, "--state", state, "status"}},
		}
		for _, s := range short {
			d, rss, err := bm.repeat(ctx, s.want, s.args...)
			if err != nil {
				return fmt.Errorf("%s: %w", s.what, err)
			}
			rep.Short = append(rep.Short, shortStats{Name: s.what, Stats: summarise(d), MaxRSSKiB: rss})
		}
	}
	return nil
}

// linkRx is what has crossed the rate-limited link from the primary so
// far (0 without a link).
func (bm *bench) linkRx() int64 {
	if bm.link == nil {
		return 0
	}
	n, err := rxBytes()
	if err != nil {
		logf("link: %v", err)
	}
	return n
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
