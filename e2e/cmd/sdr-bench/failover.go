package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/pgsdr/sdr/e2e/bed"
)

// The failover section (issue 10): how much later than a bare pg_promote
// does `sdr failover` give the application its first accepted write?
//
// Every run gets a fresh DR pair (newPair: the bed, pgbench data, both sdr
// starts). Then data centre 1 is killed (its PostgreSQL servers by
// SIGKILL, its sshd stopped), failoverSettle later a client starts
// retrying an INSERT on dc2-a every -retry, and the clock starts with the
// action: `sdr failover --accept-data-loss` on the DR side's state file,
// or, for the bare procedure, a new connection to dc2-a and
// SELECT pg_promote(true, 60). The figure is the time from that start to
// the first INSERT the new primary acknowledged.

// Scenarios: how data centre 1 is lost (-dc-loss).
const (
	// lossKill: its servers die and its sshd goes away; every connection
	// to it is refused at once.
	lossKill = "kill"
	// lossFreeze: its servers and sshd hang (SIGSTOP); connections are
	// accepted by the kernel and never answered, as with a network that
	// drops packets, so every probe waits for its timeout.
	lossFreeze = "freeze"
)

// parseLosses reads -dc-loss.
func parseLosses(list string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		switch f {
		case "":
			continue
		case lossKill, lossFreeze:
			if !seen[f] {
				out = append(out, f)
				seen[f] = true
			}
		default:
			return nil, fmt.Errorf("-dc-loss %q: unknown %q (want %s, %s, or both comma-separated)", list, f, lossKill, lossFreeze)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-dc-loss %q: name %s or %s", list, lossKill, lossFreeze)
	}
	return out, nil
}

// failoverSettle is the pause between the kill and the action: both start
// from a primary that has been gone for a moment, and the main standby's
// walreceiver has noticed.
const failoverSettle = time.Second

// Kinds of failover runs.
const (
	kindPromote  = "pg_promote"
	kindSDR      = "sdr"
	kindBaseline = "baseline"
)

// failoverRun is one timed failover.
type failoverRun struct {
	Scenario    string       `json:"dc_loss"`
	Kind        string       `json:"kind"`
	FirstWrite  float64      `json:"first_write_s"`    // the start of the action to the first write accepted on dc2-a
	Done        float64      `json:"done_s"`           // sdr exited, or pg_promote returned
	PromoteCall float64      `json:"promote_called_s"` // pg_promote called (sdr: from its log); -1 unknown
	PromoteTook float64      `json:"promote_took_s"`   // pg_promote(wait) until it returned; -1 unknown
	Attempts    int          `json:"write_attempts"`
	MaxRSSKiB   int64        `json:"maxrss_kib,omitempty"`
	Steps       []stepOffset `json:"steps,omitempty"`
	Env         runEnv       `json:"env"`
	Setup       pairSetup    `json:"setup"`
}

// failoverKind sums up the runs of one kind.
type failoverKind struct {
	Scenario    string            `json:"dc_loss"`
	Kind        string            `json:"kind"`
	Binary      string            `json:"binary,omitempty"`
	FirstWrite  Stats             `json:"first_write"`
	Diff        float64           `json:"difference_s,omitempty"` // median first write less pg_promote's
	PromoteCall Stats             `json:"promote_called"`
	PromoteTook Stats             `json:"promote_took"`
	Done        Stats             `json:"done"`
	Steps       []stepOffsetStats `json:"steps,omitempty"`
	PeakRSSKiB  int64             `json:"peak_rss_kib,omitempty"`
}

// failoverReport is the failover section's result.
type failoverReport struct {
	Version int     `json:"version"`
	Date    string  `json:"date"`
	Machine machine `json:"machine"`
	Scale   int     `json:"scale"`
	DBBytes int64   `json:"db_bytes"`
	Runs    int     `json:"runs"`
	RetryMS float64 `json:"retry_ms"`
	Settle  float64 `json:"settle_s"`
	Connect string  `json:"connect_timeout"` // timeouts.connect of the sdr failover runs
	Load    struct {
		Start [3]float64 `json:"start"`
		End   [3]float64 `json:"end"`
	} `json:"loadavg"`
	Setup   Stats          `json:"sdr_start"` // setting up each pair: both sdr starts
	Kinds   []failoverKind `json:"kinds"`
	Details []failoverRun  `json:"runs_detail"`
}

func (r *failoverReport) kind(scenario, k string) *failoverKind {
	for i := range r.Kinds {
		if r.Kinds[i].Kind == k && r.Kinds[i].Scenario == scenario {
			return &r.Kinds[i]
		}
	}
	return nil
}

func runFailoverBench(ctx context.Context, o options) (*failoverReport, error) {
	rep := &failoverReport{Version: 1, Date: time.Now().UTC().Format(time.RFC3339), Machine: machineInfo(), Scale: o.scale, Runs: o.runs,
		RetryMS: float64(o.retry) / float64(time.Millisecond), Settle: failoverSettle.Seconds(), Connect: "10s (the bed's)"}
	if o.connectTimeout > 0 {
		rep.Connect = o.connectTimeout.String()
	}
	rep.Load.Start[0], rep.Load.Start[1], rep.Load.Start[2] = loadavg()
	kinds := []string{kindPromote, kindSDR}
	bins := map[string]string{kindSDR: o.sdr}
	if o.baseline != "" {
		kinds = append(kinds, kindBaseline)
		bins[kindBaseline] = o.baseline
	}
	byKind := map[string][]failoverRun{}
	var setups []time.Duration
	for _, sc := range o.losses {
		for i := 0; i < o.runs; i++ {
			for _, k := range roundOrder(kinds, i) {
				logf("failover run %d/%d (%s): %s (a fresh DR pair at scale %d)", i+1, o.runs, sc, k, o.scale)
				r, err := failoverOnce(ctx, o, sc, k, bins[k])
				if err != nil {
					return nil, fmt.Errorf("failover run %d (%s, %s): %w", i+1, sc, k, err)
				}
				rep.DBBytes = r.Setup.DBBytes
				rep.Machine.PostgreSQL = r.Setup.PostgreSQL
				setups = append(setups, secs(r.Setup.StartSeconds))
				byKind[sc+" "+k] = append(byKind[sc+" "+k], r)
				rep.Details = append(rep.Details, r)
				logf("  %s: first write after %.3f s (pg_promote called at %.3f s, took %.3f s; done at %.3f s)", k, r.FirstWrite, r.PromoteCall, r.PromoteTook, r.Done)
			}
		}
	}
	rep.Setup = summarise(setups)
	for _, sc := range o.losses {
		for _, k := range kinds {
			fk := summariseFailover(k, bins[k], byKind[sc+" "+k])
			fk.Scenario = sc
			rep.Kinds = append(rep.Kinds, fk)
		}
		if bare := rep.kind(sc, kindPromote); bare != nil {
			for i := range rep.Kinds {
				if rep.Kinds[i].Scenario == sc && rep.Kinds[i].Kind != kindPromote {
					rep.Kinds[i].Diff = rep.Kinds[i].FirstWrite.Median - bare.FirstWrite.Median
				}
			}
		}
	}
	rep.Load.End[0], rep.Load.End[1], rep.Load.End[2] = loadavg()
	return rep, nil
}

// roundOrder is the order of the kinds in round i: every second round
// reversed, so that what one run leaves behind weighs on each kind alike.
func roundOrder(kinds []string, i int) []string {
	if i%2 == 0 {
		return kinds
	}
	out := make([]string, 0, len(kinds))
	for j := len(kinds) - 1; j >= 0; j-- {
		out = append(out, kinds[j])
	}
	return out
}

func summariseFailover(kind, bin string, runs []failoverRun) failoverKind {
	var first, call, took, done []time.Duration
	var steps [][]stepOffset
	fk := failoverKind{Kind: kind, Binary: bin}
	for _, r := range runs {
		first = append(first, secs(r.FirstWrite))
		done = append(done, secs(r.Done))
		if r.PromoteCall >= 0 {
			call = append(call, secs(r.PromoteCall))
		}
		if r.PromoteTook >= 0 {
			took = append(took, secs(r.PromoteTook))
		}
		steps = append(steps, r.Steps)
		fk.PeakRSSKiB = max(fk.PeakRSSKiB, r.MaxRSSKiB)
	}
	fk.FirstWrite, fk.PromoteCall, fk.PromoteTook, fk.Done = summarise(first), summarise(call), summarise(took), summarise(done)
	fk.Steps = summariseSteps(steps)
	return fk
}

// failoverOnce sets up a fresh pair, loses data centre 1 as scenario says
// and times one failover.
func failoverOnce(ctx context.Context, o options, scenario, kind, bin string) (r failoverRun, err error) {
	r = failoverRun{Scenario: scenario, Kind: kind, PromoteCall: -1, PromoteTook: -1}
	b, setup, err := newPair(ctx, o, "")
	if err != nil {
		return r, err
	}
	r.Setup = setup
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w\n%s\n(bed kept in %s)", err, b.NodeLogs(), b.Dir)
		}
		if cerr := b.Close(err != nil); cerr != nil {
			logf("closing the bed: %v", cerr)
		}
	}()
	if r.Env, err = waitQuiet(ctx, o.quietCores, o.quietWait); err != nil {
		return r, err
	}
	if scenario == lossFreeze {
		thaw, err := freezeDC(b, bed.ClusterDC1)
		if err != nil {
			return r, err
		}
		defer func() {
			if terr := thaw(); terr != nil && err == nil {
				err = terr
			}
		}()
	} else if err := killDC(b, bed.ClusterDC1); err != nil {
		return r, err
	}
	if err := sleepCtx(ctx, failoverSettle); err != nil {
		return r, err
	}
	w, err := startWriter(ctx, b, o.retry, 1, bed.DC2A)
	if err != nil {
		return r, err
	}
	defer w.Stop()
	cpu := startCPU()
	var t0 time.Time
	if kind == kindPromote {
		t0 = time.Now()
		err = bareFailover(ctx, b, t0, &r)
	} else {
		t0, err = sdrFailover(ctx, o, b, bin, &r)
	}
	if err != nil {
		return r, err
	}
	if err := w.waitNewWrite(ctx, 3*time.Minute); err != nil {
		return r, err
	}
	r.Env.BusyDuring = cpu.cores()
	res := w.Stop()
	first, ok := res.firstOn(0)
	if !ok {
		return r, fmt.Errorf("no write accepted on %s", bed.DC2A)
	}
	r.FirstWrite = first.At.Sub(t0).Seconds()
	r.Attempts = res.Attempts
	if got, err := b.SQL(ctx, bed.DC2A, "SELECT pg_is_in_recovery()"); err != nil || got != "f" {
		return r, fmt.Errorf("%s is not a primary after the failover: %q %v", bed.DC2A, got, err)
	}
	return r, nil
}

// bareFailover promotes dc2-a with PostgreSQL alone: a new connection, then
// pg_promote with wait.
func bareFailover(ctx context.Context, b *bed.Bed, t0 time.Time, r *failoverRun) error {
	c, err := connectWriter(ctx, b, bed.DC2A)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	called := time.Now()
	var ok bool
	if err := c.QueryRow(ctx, "SELECT pg_promote(true, 60)").Scan(&ok); err != nil {
		return fmt.Errorf("pg_promote on %s: %w", bed.DC2A, err)
	}
	if !ok {
		return fmt.Errorf("pg_promote on %s returned false", bed.DC2A)
	}
	now := time.Now()
	r.PromoteCall, r.PromoteTook, r.Done = called.Sub(t0).Seconds(), now.Sub(called).Seconds(), now.Sub(t0).Seconds()
	return nil
}

// sdrFailover runs `sdr failover --accept-data-loss` on the DR side and
// reads its steps and its pg_promote call from its records.
func sdrFailover(ctx context.Context, o options, b *bed.Bed, bin string, r *failoverRun) (time.Time, error) {
	config := b.ConfigPath
	if o.connectTimeout > 0 {
		c, err := b.WriteConfig(func(m *map[string]any) {
			(*m)["timeouts"].(map[string]any)["connect"] = o.connectTimeout.String()
		})
		if err != nil {
			return time.Time{}, err
		}
		config = c
	}
	off := fileSize(b.LogFileStandby)
	cmd, out, t0, err := startProc(ctx, b.Dir, bin, "--config", config, "--state", b.StateFileStandby, "--log-file", b.LogFileStandby,
		"failover", "--accept-data-loss", "--timeout", "2m")
	if err != nil {
		return t0, err
	}
	p := wait(cmd, out, t0)
	if p.code != 0 {
		return t0, fmt.Errorf("sdr failover failed:\n%s", p)
	}
	r.Done, r.MaxRSSKiB = p.end.Sub(t0).Seconds(), p.maxRSSKiB
	evs, err := readLogEvents(b.LogFileStandby, off)
	if err != nil {
		return t0, err
	}
	if called, returned, ok := promotedEvent(evs); ok {
		r.PromoteCall, r.PromoteTook = called.Sub(t0).Seconds(), returned.Sub(called).Seconds()
	}
	steps, err := readStepTimes(ctx, b.Dir, o.sdr, b.StateFileStandby, "failover/standby")
	if err != nil {
		return t0, err
	}
	r.Steps = stepOffsets(steps, t0)
	return t0, nil
}
