package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/e2e/bed"
)

// The switchover section (issue 11): how long can a client not write
// while the data centres swap?
//
// One DR pair (newPair) serves every run. A client writes continuously
// (one INSERT per transaction, a pause of -retry after each) to the
// primary; when the primary refuses a write it moves to the other data
// centre's main standby and retries there until a write is accepted. The
// window is from its last write accepted on the old primary to its first
// accepted on the new one. Each run switches there and back (dc1 to dc2,
// then dc2 to dc1), so each gives two measurements and ends where it
// started:
//
//   - sdr: `sdr switchover --role primary` and `--role standby` started
//     together, with the config whose primary: names the current primary.
//   - bare: pg_ctl stop -m fast -w on the primary, then pg_promote(true,
//     60) on the other main standby (a connection opened beforehand).
//     Untimed afterwards, the old primary is made a standby of the new one
//     (standby.signal, and primary_conninfo and the slot sdr uses given on
//     pg_ctl's -o, so that sdr's own files are left alone) and started.
//
// Before each switch: the pair streams as sdr left it, CHECKPOINT on the
// primary, sync, and a quiet machine.

// switchRun is one timed switch.
type switchRun struct {
	Kind      string  `json:"kind"` // bare, sdr, baseline
	Direction string  `json:"direction"`
	Window    float64 `json:"window_s"` // last write accepted on the old primary to the first accepted on the new one
	// Seconds after the start of the action.
	LastOld float64 `json:"last_old_write_s"`
	Refused float64 `json:"first_refused_s"` // the old primary's first refusal
	Done    float64 `json:"done_s"`          // both halves exited, or pg_promote returned
	// Seconds after the last write accepted on the old primary; -1 unknown.
	StopReturned    float64 `json:"stop_returned_s"`    // pg_ctl stop -m fast returned (sdr: its demote half logged it)
	ReplaySeen      float64 `json:"replay_seen_s"`      // sdr's promote half saw the shutdown checkpoint replayed
	PromoteCalled   float64 `json:"promote_called_s"`   // pg_promote called
	PromoteReturned float64 `json:"promote_returned_s"` // pg_promote returned
	DemoteExit      float64 `json:"demote_exit_s,omitempty"`
	PromoteExit     float64 `json:"promote_exit_s,omitempty"`

	Acks         int          `json:"acknowledged"`
	Lost         int          `json:"lost"`
	Reattach     float64      `json:"untimed_reattach_s,omitempty"` // bare: making the old primary a standby again
	MaxRSSKiB    int64        `json:"maxrss_kib,omitempty"`
	DemoteSteps  []stepOffset `json:"demote_steps,omitempty"` // seconds after the start
	PromoteSteps []stepOffset `json:"promote_steps,omitempty"`
	Env          runEnv       `json:"env"`
}

// switchKind sums up the runs of one kind.
type switchKind struct {
	Kind            string            `json:"kind"`
	Binary          string            `json:"binary,omitempty"`
	Window          Stats             `json:"window"`
	Diff            float64           `json:"difference_s,omitempty"` // median window less bare's
	LastOld         Stats             `json:"last_old_write"`
	StopReturned    Stats             `json:"stop_returned"`
	ReplaySeen      Stats             `json:"replay_seen"`
	PromoteCalled   Stats             `json:"promote_called"`
	PromoteReturned Stats             `json:"promote_returned"`
	Done            Stats             `json:"done"`
	DemoteExit      Stats             `json:"demote_exit"`
	PromoteExit     Stats             `json:"promote_exit"`
	Acks            int               `json:"acknowledged"`
	Lost            int               `json:"lost"`
	DemoteSteps     []stepOffsetStats `json:"demote_steps,omitempty"`
	PromoteSteps    []stepOffsetStats `json:"promote_steps,omitempty"`
	PeakRSSKiB      int64             `json:"peak_rss_kib,omitempty"`
}

// switchoverReport is the switchover section's result.
type switchoverReport struct {
	Version int       `json:"version"`
	Date    string    `json:"date"`
	Machine machine   `json:"machine"`
	Scale   int       `json:"scale"`
	Setup   pairSetup `json:"setup"`
	Runs    int       `json:"runs"`
	RetryMS float64   `json:"retry_ms"`
	Load    struct {
		Start [3]float64 `json:"start"`
		End   [3]float64 `json:"end"`
	} `json:"loadavg"`
	Kinds   []switchKind `json:"kinds"`
	Details []switchRun  `json:"runs_detail"`
}

func (r *switchoverReport) kind(k string) *switchKind {
	for i := range r.Kinds {
		if r.Kinds[i].Kind == k {
			return &r.Kinds[i]
		}
	}
	return nil
}

// Kinds of switchover runs (besides kindSDR and kindBaseline).
const kindBare = "bare"

// switchBench is the switchover section's pair and its files.
type switchBench struct {
	o        options
	b        *bed.Bed
	configs  map[string]string // by the cluster that is primary
	passFile string            // the replication password for the bare reattach (libpq passfile)
	nextID   int64
}

// sides of a cluster: its state and log files.
func (sb *switchBench) files(cluster string) (state, log string) {
	if cluster == bed.ClusterDC2 {
		return sb.b.StateFileStandby, sb.b.LogFileStandby
	}
	return sb.b.StateFilePrimary, sb.b.LogFilePrimary
}

func runSwitchoverBench(ctx context.Context, o options) (rep *switchoverReport, err error) {
	rep = &switchoverReport{Version: 1, Date: time.Now().UTC().Format(time.RFC3339), Machine: machineInfo(), Scale: o.scale, Runs: o.runs,
		RetryMS: float64(o.retry) / float64(time.Millisecond)}
	rep.Load.Start[0], rep.Load.Start[1], rep.Load.Start[2] = loadavg()
	logf("switchover: building the DR pair at scale %d", o.scale)
	b, setup, err := newPair(ctx, o, o.dir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w\n%s\n(bed kept in %s)", err, b.NodeLogs(), b.Dir)
		}
		if o.keep && err == nil {
			logf("bed kept in %s (take it down with: go run ./e2e/cmd/sdr-bed down --dir %s)", b.Dir, b.Dir)
			return
		}
		if cerr := b.Close(err != nil); cerr != nil {
			logf("closing the bed: %v", cerr)
		}
	}()
	rep.Setup, rep.Machine.PostgreSQL = setup, setup.PostgreSQL
	sb := &switchBench{o: o, b: b, configs: map[string]string{bed.ClusterDC1: b.ConfigPath}, nextID: 1}
	if sb.configs[bed.ClusterDC2], err = b.WriteConfig(func(m *map[string]any) { (*m)["primary"] = bed.ClusterDC2 }); err != nil {
		return nil, err
	}
	if sb.passFile, err = writeFloorPassFile(filepath.Join(b.Dir, "floor"), b.ReplicationUser, b.Password); err != nil {
		return nil, err
	}
	kinds := []string{kindBare, kindSDR}
	bins := map[string]string{kindSDR: o.sdr}
	if o.baseline != "" {
		kinds = append(kinds, kindBaseline)
		bins[kindBaseline] = o.baseline
	}
	byKind := map[string][]switchRun{}
	for i := 0; i < o.runs; i++ {
		for _, k := range roundOrder(kinds, i) {
			for _, from := range []string{bed.ClusterDC1, bed.ClusterDC2} {
				r, err := sb.once(ctx, k, bins[k], from)
				if err != nil {
					return nil, fmt.Errorf("switchover run %d (%s, %s): %w", i+1, k, r.Direction, err)
				}
				logf("switchover run %d/%d: %s %s: window %.3f s (last write on the old primary %.3f s after the start; %d acknowledged, %d lost)",
					i+1, o.runs, k, r.Direction, r.Window, r.LastOld, r.Acks, r.Lost)
				byKind[k] = append(byKind[k], r)
				rep.Details = append(rep.Details, r)
			}
		}
	}
	for _, k := range kinds {
		rep.Kinds = append(rep.Kinds, summariseSwitch(k, bins[k], byKind[k]))
	}
	if bare := rep.kind(kindBare); bare != nil {
		for i := range rep.Kinds {
			if rep.Kinds[i].Kind != kindBare {
				rep.Kinds[i].Diff = rep.Kinds[i].Window.Median - bare.Window.Median
			}
		}
	}
	rep.Load.End[0], rep.Load.End[1], rep.Load.End[2] = loadavg()
	return rep, nil
}

func summariseSwitch(kind, bin string, runs []switchRun) switchKind {
	sk := switchKind{Kind: kind, Binary: bin}
	var window, lastOld, stop, replay, call, ret, done, dexit, pexit []time.Duration
	add := func(l *[]time.Duration, v float64) {
		if v >= 0 {
			*l = append(*l, secs(v))
		}
	}
	var dsteps, psteps [][]stepOffset
	for _, r := range runs {
		add(&window, r.Window)
		add(&lastOld, r.LastOld)
		add(&stop, r.StopReturned)
		add(&replay, r.ReplaySeen)
		add(&call, r.PromoteCalled)
		add(&ret, r.PromoteReturned)
		add(&done, r.Done)
		if kind != kindBare {
			add(&dexit, r.DemoteExit)
			add(&pexit, r.PromoteExit)
		}
		sk.Acks += r.Acks
		sk.Lost += r.Lost
		sk.PeakRSSKiB = max(sk.PeakRSSKiB, r.MaxRSSKiB)
		dsteps, psteps = append(dsteps, r.DemoteSteps), append(psteps, r.PromoteSteps)
	}
	sk.Window, sk.LastOld, sk.StopReturned, sk.ReplaySeen = summarise(window), summarise(lastOld), summarise(stop), summarise(replay)
	sk.PromoteCalled, sk.PromoteReturned, sk.Done = summarise(call), summarise(ret), summarise(done)
	sk.DemoteExit, sk.PromoteExit = summarise(dexit), summarise(pexit)
	sk.DemoteSteps, sk.PromoteSteps = summariseSteps(dsteps), summariseSteps(psteps)
	return sk
}

// once switches from cluster from to the other one, with kind.
func (sb *switchBench) once(ctx context.Context, kind, bin, from string) (r switchRun, err error) {
	b := sb.b
	to := otherCluster(from)
	oldN, _ := clusterNodes(from)
	newN, _ := clusterNodes(to)
	r = switchRun{Kind: kind, Direction: from + " to " + to, StopReturned: -1, ReplaySeen: -1, PromoteCalled: -1, PromoteReturned: -1}
	if err := waitPairTopology(ctx, b, from, 2*time.Minute); err != nil {
		return r, fmt.Errorf("starting state: %w", err)
	}
	if _, err := b.SQL(ctx, oldN, "CHECKPOINT"); err != nil {
		return r, err
	}
	if r.Env, err = waitQuiet(ctx, sb.o.quietCores, sb.o.quietWait); err != nil {
		return r, err
	}
	first := sb.nextID
	w, err := startWriter(ctx, b, sb.o.retry, first, oldN, newN)
	if err != nil {
		return r, err
	}
	defer w.Stop()
	warm := time.Now()
	for w.count() < 20 || time.Since(warm) < 200*time.Millisecond {
		if time.Since(warm) > 30*time.Second {
			return r, fmt.Errorf("the writer got only %d writes accepted on %s in 30 s", w.count(), oldN)
		}
		if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
			return r, err
		}
	}
	cpu := startCPU()
	var t0 time.Time
	var ev switchEvents
	if kind == kindBare {
		t0, ev, err = sb.bare(ctx, oldN, newN)
	} else {
		t0, ev, err = sb.sdr(ctx, bin, from, &r)
	}
	if err != nil {
		return r, err
	}
	if err := w.waitNewWrite(ctx, time.Minute); err != nil {
		return r, err
	}
	r.Env.BusyDuring = cpu.cores()
	res := w.Stop()
	sb.nextID = first + int64(len(res.Acks)) + 1000
	last, ok1 := res.lastOn(0)
	firstNew, ok2 := res.firstOn(1)
	if !ok1 || !ok2 {
		return r, fmt.Errorf("the writer saw no write on %s (%v) or none on %s (%v)", oldN, ok1, newN, ok2)
	}
	r.Window = firstNew.At.Sub(last.At).Seconds()
	r.LastOld, r.Refused = since(last.At, t0), since(res.RefusedAt, t0)
	r.StopReturned, r.ReplaySeen = since(ev.stopped, last.At), since(ev.replaySeen, last.At)
	r.PromoteCalled, r.PromoteReturned = since(ev.promoteCalled, last.At), since(ev.promoteReturned, last.At)
	r.Done = since(ev.done, t0)
	r.Acks = len(res.Acks)
	if r.Lost, err = lostAcks(ctx, b, newN, res.Acks); err != nil {
		return r, err
	}
	if kind == kindBare {
		t := time.Now()
		if err := sb.reattach(ctx, oldN, newN); err != nil {
			return r, err
		}
		r.Reattach = time.Since(t).Seconds()
	}
	if err := waitPairTopology(ctx, b, to, 2*time.Minute); err != nil {
		return r, fmt.Errorf("after the switch: %w", err)
	}
	return r, nil
}

// switchEvents are the moments of one switch that the writer does not see.
type switchEvents struct {
	stopped, replaySeen, promoteCalled, promoteReturned, done time.Time
}

// bare stops oldN with a fast shutdown and promotes newN.
func (sb *switchBench) bare(ctx context.Context, oldN, newN string) (time.Time, switchEvents, error) {
	var ev switchEvents
	c, err := connectWriter(ctx, sb.b, newN)
	if err != nil {
		return time.Time{}, ev, err
	}
	defer c.Close(context.Background())
	t0 := time.Now()
	if err := runAsPostgres(ctx, sb.b.Dir, filepath.Join(bed.BinDir, "pg_ctl"), "stop", "-D", sb.b.Node(oldN).DataDir, "-m", "fast", "-w", "-t", "60"); err != nil {
		return t0, ev, err
	}
	ev.stopped = time.Now()
	ev.promoteCalled = ev.stopped
	var ok bool
	if err := c.QueryRow(ctx, "SELECT pg_promote(true, 60)").Scan(&ok); err != nil || !ok {
		return t0, ev, fmt.Errorf("pg_promote on %s: %v %v", newN, ok, err)
	}
	ev.promoteReturned = time.Now()
	ev.done = ev.promoteReturned
	return t0, ev, nil
}

// reattach makes the stopped old primary a standby of the new primary
// and starts it: its slot on the new primary (the one sdr uses), and
// standby.signal; primary_conninfo and primary_slot_name are given on the
// command line, which overrides sdr's settings in postgresql.auto.conf
// without touching them.
func (sb *switchBench) reattach(ctx context.Context, oldN, newN string) error {
	b := sb.b
	slot := cluster.SlotName(b.Name, oldN)
	if _, err := b.SQL(ctx, newN, fmt.Sprintf("SELECT pg_create_physical_replication_slot('%s', true) "+
		"WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = '%s')", slot, slot)); err != nil {
		return err
	}
	n := b.Node(oldN)
	sig := filepath.Join(n.DataDir, "standby.signal")
	if err := os.WriteFile(sig, nil, 0o600); err != nil {
		return err
	}
	uid, gid, err := postgresIDs()
	if err != nil {
		return err
	}
	if err := os.Chown(sig, uid, gid); err != nil {
		return err
	}
	conninfo := fmt.Sprintf("host=127.0.0.1 port=%d user=%s passfile=%s application_name=%s",
		b.Node(newN).Port, b.ReplicationUser, sb.passFile, cluster.AppName(b.Name, oldN))
	opts := fmt.Sprintf("-c primary_conninfo='%s' -c primary_slot_name=%s", conninfo, slot)
	return runAsPostgres(ctx, b.Dir, filepath.Join(bed.BinDir, "pg_ctl"), "start", "-D", n.DataDir, "-l", n.LogFile, "-w", "-t", "120", "-o", opts)
}

// sdr runs both halves of `sdr switchover` at once, from cluster from.
func (sb *switchBench) sdr(ctx context.Context, bin, from string, r *switchRun) (time.Time, switchEvents, error) {
	var ev switchEvents
	to := otherCluster(from)
	cfg := sb.configs[from]
	dState, dLog := sb.files(from)
	pState, pLog := sb.files(to)
	dOff, pOff := fileSize(dLog), fileSize(pLog)
	args := func(state, log, role string) []string {
		return []string{"--config", cfg, "--state", state, "--log-file", log, "switchover", "--role", role, "--timeout", "2m"}
	}
	dc, dout, t0, err := startProc(ctx, sb.b.Dir, bin, args(dState, dLog, "primary")...)
	if err != nil {
		return t0, ev, err
	}
	pc, pout, pstart, err := startProc(ctx, sb.b.Dir, bin, args(pState, pLog, "standby")...)
	if err != nil {
		_ = dc.Process.Kill()
		_ = dc.Wait()
		return t0, ev, err
	}
	done := make(chan proc)
	go func() { done <- wait(dc, dout, t0) }()
	p := wait(pc, pout, pstart)
	d := <-done
	if d.code != 0 || p.code != 0 {
		return t0, ev, fmt.Errorf("sdr switchover failed:\ndemote half: %s\npromote half: %s", d, p)
	}
	r.DemoteExit, r.PromoteExit = d.end.Sub(t0).Seconds(), p.end.Sub(t0).Seconds()
	r.MaxRSSKiB = max(d.maxRSSKiB, p.maxRSSKiB)
	ev.done = d.end
	if p.end.After(ev.done) {
		ev.done = p.end
	}
	devs, err := readLogEvents(dLog, dOff)
	if err != nil {
		return t0, ev, err
	}
	pevs, err := readLogEvents(pLog, pOff)
	if err != nil {
		return t0, ev, err
	}
	ev.stopped, _ = firstEvent(devs, "stopped")
	ev.replaySeen, _ = firstEvent(pevs, "the main standby replayed the old primary's shutdown checkpoint")
	ev.promoteCalled, ev.promoteReturned, _ = promotedEvent(pevs)
	dsteps, err := readStepTimes(ctx, sb.b.Dir, sb.o.sdr, dState, "switchover/primary")
	if err != nil {
		return t0, ev, err
	}
	psteps, err := readStepTimes(ctx, sb.b.Dir, sb.o.sdr, pState, "switchover/standby")
	if err != nil {
		return t0, ev, err
	}
	r.DemoteSteps, r.PromoteSteps = stepOffsets(dsteps, t0), stepOffsets(psteps, t0)
	return t0, ev, nil
}
