package e2e

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/e2e/bed"
)

// switchHalf runs one half of `sdr switchover` for a side.
func switchHalf(t *testing.T, bin string, env []string, config string, s side, extra ...string) result {
	t.Helper()
	args := append([]string{"--config", config, "--state", s.state, "--log-file", s.log, "switchover", "--role", s.role, "--timeout", "2m"}, extra...)
	return sdr(t, bin, env, args...)
}

// roles of the bed's two clusters for a config whose primary: is primary.
type pairSides struct {
	config           string
	primary, standby side   // the sides as the config says now
	primaryNode      string // the primary's node
	mainNode         string // the DR side's main standby
}

func sidesFor(t *testing.T, b *bed.Bed, primary string) pairSides {
	t.Helper()
	if primary == bed.ClusterDC1 {
		return pairSides{config: b.ConfigPath, primary: primarySide(b), standby: standbySide(b), primaryNode: bed.DC1A, mainNode: bed.DC2A}
	}
	cfg, err := b.WriteConfig(func(m *map[string]any) { (*m)["primary"] = bed.ClusterDC2 })
	if err != nil {
		t.Fatal(err)
	}
	return pairSides{config: cfg,
		primary: side{"primary", b.StateFileStandby, b.LogFileStandby}, standby: side{"standby", b.StateFilePrimary, b.LogFilePrimary},
		primaryNode: bed.DC2A, mainNode: bed.DC1A}
}

// writableProbe polls every node every few tens of milliseconds and
// records any moment at which two of them accept writes.
type writableProbe struct {
	stop  chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	both  []string
	polls int
}

func startWritableProbe(t *testing.T, b *bed.Bed) *writableProbe {
	t.Helper()
	p := &writableProbe{stop: make(chan struct{}), done: make(chan struct{})}
	conns := map[string]*pgx.Conn{}
	go func() {
		defer close(p.done)
		defer func() {
			for _, c := range conns {
				c.Close(context.Background())
			}
		}()
		for {
			select {
			case <-p.stop:
				return
			default:
			}
			var writable []string
			for _, n := range bed.NodeNames {
				c := conns[n]
				if c == nil {
					ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
					var err error
					c, err = writerConnect(ctx, b, n)
					cancel()
					if err != nil {
						continue
					}
					conns[n] = c
				}
				ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
				var inRecovery bool
				err := c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery)
				cancel()
				if err != nil {
					c.Close(context.Background())
					delete(conns, n)
					continue
				}
				if !inRecovery {
					writable = append(writable, n)
				}
			}
			p.mu.Lock()
			p.polls++
			if len(writable) > 1 {
				p.both = append(p.both, strings.Join(writable, "+"))
			}
			p.mu.Unlock()
			time.Sleep(30 * time.Millisecond)
		}
	}()
	return p
}

func (p *writableProbe) Stop() (both []string, polls int) {
	close(p.stop)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.both, p.polls
}

// switchoverUnderLoad runs a switchover from the sides of ps under write
// load, with both halves run by run, and checks everything the issue asks:
// zero acknowledged rows lost, never two writable primaries, no copy made,
// the old primary and its standby following, the cascades streaming.
func switchoverUnderLoad(t *testing.T, b *bed.Bed, ps pairSides, firstID int, run func() (demote, promote result)) {
	t.Helper()
	ctx := context.Background()
	copies := baseBackups(t, b, bed.DC1A) + baseBackups(t, b, bed.DC2A)
	probe := startWritableProbe(t, b)
	w := startWriter(t, b, ps.primaryNode, firstID)
	eventually(t, 30*time.Second, "writes acknowledged", func() (bool, string) { return w.Count() > 100, fmt.Sprint(w.Count()) })
	d, p := run()
	acks := w.Stop()
	both, polls := probe.Stop()
	if d.Code != 0 || p.Code != 0 {
		t.Fatalf("switchover failed:\ndemote: %s\npromote: %s", d, p)
	}
	if len(both) > 0 {
		t.Errorf("two writable primaries seen %d times in %d polls: %v", len(both), polls, both[:min(len(both), 5)])
	}
	present := presentIDs(t, b, ps.mainNode)
	lost := 0
	for _, a := range acks {
		if !present[a.ID] {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d acknowledged rows lost", lost, len(acks))
	}
	t.Logf("%d acknowledged rows, none lost; %d polls of every node, never two writable", len(acks), polls)
	if got := sql(t, b, ps.mainNode, "SELECT pg_is_in_recovery()"); got != "f" {
		t.Fatalf("%s is not the primary after the switchover", ps.mainNode)
	}
	if got := baseBackups(t, b, bed.DC1A) + baseBackups(t, b, bed.DC2A) - copies; got != 0 {
		t.Errorf("the switchover made %d copies (pg_basebackup)", got)
	}
	oldStandby, newCascade := bed.DC1B, bed.DC2B
	if ps.primaryNode == bed.DC2A {
		oldStandby, newCascade = bed.DC2B, bed.DC1B
	}
	tli := timelineOf(t, b, ps.mainNode)
	for _, c := range []struct{ node, upstream string }{{ps.primaryNode, ps.mainNode}, {oldStandby, ps.primaryNode}, {newCascade, ps.mainNode}} {
		want := fmt.Sprintf("streaming %d %s", b.Node(c.upstream).Port, tli)
		eventually(t, 30*time.Second, c.node+" streams from "+c.upstream, func() (bool, string) {
			got, err := b.SQL(ctx, c.node, "SELECT status || ' ' || sender_port || ' ' || received_tli FROM pg_stat_wal_receiver")
			return err == nil && got == want, fmt.Sprint(got, err, " want ", want)
		})
	}
	sql(t, b, ps.mainNode, fmt.Sprintf("INSERT INTO acked (id) VALUES (%d)", firstID+900000))
	for _, n := range bed.NodeNames {
		if n == ps.mainNode {
			continue
		}
		eventually(t, 30*time.Second, n+" has the new primary's write", func() (bool, string) {
			got, err := b.SQL(ctx, n, fmt.Sprintf("SELECT count(*) FROM acked WHERE id = %d", firstID+900000))
			return err == nil && got == "1", fmt.Sprint(got, err)
		})
	}
	// The slot the old primary kept for the DR side's main standby is gone:
	// on a standby it would keep WAL forever.
	if got := sql(t, b, ps.primaryNode, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '"+cluster.SlotName(b.Name, ps.mainNode)+"'"); got != "0" {
		t.Errorf("%s still holds the slot it kept for %s before the switchover", ps.primaryNode, ps.mainNode)
	}
	if got := status(t, "", ps.primary).state("primary"); got != "recovery" {
		t.Errorf("demoted side's state %q, want recovery", got)
	}
	if got := status(t, "", ps.standby).state("standby"); got != "archive" {
		t.Errorf("promoted side's state %q, want archive", got)
	}
}

func bothHalves(t *testing.T, ps pairSides) func() (result, result) {
	return func() (d, p result) {
		done := make(chan struct{})
		go func() { defer close(done); p = switchHalf(t, sdrBin, nil, ps.config, ps.standby) }()
		d = switchHalf(t, sdrBin, nil, ps.config, ps.primary)
		<-done
		return d, p
	}
}

func newSwitchBed(t *testing.T) *bed.Bed {
	t.Helper()
	b := startedBed(t, bed.Options{}, 1)
	prepareWriter(t, b, bed.DC1A)
	eventually(t, 30*time.Second, "the writer role on the DR side", func() (bool, string) {
		got, err := b.SQL(context.Background(), bed.DC2B, "SELECT count(*) FROM pg_roles WHERE rolname = 'writer'")
		return err == nil && got == "1", fmt.Sprint(got, err)
	})
	return b
}

// TestSwitchover swaps the data centres with both halves started together,
// under write load, then switches back.
func TestSwitchover(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := newSwitchBed(t)
	t.Run("refused while the main standby's replay is paused", func(t *testing.T) {
		ps := sidesFor(t, b, bed.ClusterDC1)
		sql(t, b, bed.DC2A, "SELECT pg_wal_replay_pause()")
		for _, sd := range []side{ps.primary, ps.standby} {
			r := switchHalf(t, sdrBin, nil, ps.config, sd, "--timeout", "30s")
			if r.Code != 2 || !strings.Contains(r.Stderr, "replay is paused on the main standby dc2-a") || !strings.Contains(r.Stderr, "pg_wal_replay_resume") {
				t.Errorf("switchover --role %s with dc2-a's replay paused: want a refusal (exit 2) naming it: %s", sd.role, r)
			}
		}
		if got := sql(t, b, bed.DC1A, "SELECT pg_is_in_recovery()"); got != "f" {
			t.Fatalf("dc1-a is not the primary after the refused switchover")
		}
		sql(t, b, bed.DC2A, "SELECT pg_wal_replay_resume()")
	})
	t.Run("dc1 to dc2", func(t *testing.T) {
		switchoverUnderLoad(t, b, sidesFor(t, b, bed.ClusterDC1), 1, bothHalves(t, sidesFor(t, b, bed.ClusterDC1)))
	})
	t.Run("and back", func(t *testing.T) {
		ps := sidesFor(t, b, bed.ClusterDC2)
		switchoverUnderLoad(t, b, ps, 100000, bothHalves(t, ps))
	})
	t.Run("a DR-side stop with primary: not changed back is refused", func(t *testing.T) {
		// dc1 is the primary again, but the config still says dc2: dc1's
		// state file (its switchover/primary record of the first switch)
		// would be taken for the DR side's. Step 2 sees dc1-a out of
		// recovery and refuses before changing anything.
		stale := sidesFor(t, b, bed.ClusterDC2)
		hba, err := os.ReadFile(b.HBAFile(bed.DC1A))
		if err != nil {
			t.Fatal(err)
		}
		r := sdr(t, sdrBin, nil, "--config", stale.config, "--state", b.StateFilePrimary, "--log-file", b.LogFilePrimary, "stop", "--role", "standby")
		if r.Code != 2 || !strings.Contains(r.Stderr, "dc1-a runs as a primary") || !strings.Contains(r.Stdout, "before changing anything") {
			t.Fatalf("stop --role standby on the primary cluster: %s", r)
		}
		if after, _ := os.ReadFile(b.HBAFile(bed.DC1A)); string(after) != string(hba) {
			t.Errorf("the refused stop changed dc1-a's pg_hba.conf")
		}
	})
}

// TestSwitchoverHalvesApart runs the halves one after the other, in both
// orders, with more than the walsender timeout between them.
func TestSwitchoverHalvesApart(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := newSwitchBed(t)
	for _, n := range bed.NodeNames {
		sql(t, b, n, "ALTER SYSTEM SET wal_sender_timeout = '2s'")
		sql(t, b, n, "ALTER SYSTEM SET wal_receiver_timeout = '2s'")
		sql(t, b, n, "SELECT pg_reload_conf()")
	}
	apart := func(ps pairSides, demoteFirst bool) func() (result, result) {
		return func() (d, p result) {
			done := make(chan struct{})
			first, second := &d, &p
			firstSide, secondSide := ps.primary, ps.standby
			if !demoteFirst {
				first, second = &p, &d
				firstSide, secondSide = ps.standby, ps.primary
			}
			go func() { defer close(done); *first = switchHalf(t, sdrBin, nil, ps.config, firstSide) }()
			time.Sleep(5 * time.Second)
			*second = switchHalf(t, sdrBin, nil, ps.config, secondSide)
			<-done
			return d, p
		}
	}
	t.Run("demote first", func(t *testing.T) {
		ps := sidesFor(t, b, bed.ClusterDC1)
		switchoverUnderLoad(t, b, ps, 1, apart(ps, true))
	})
	t.Run("promote first", func(t *testing.T) {
		ps := sidesFor(t, b, bed.ClusterDC2)
		switchoverUnderLoad(t, b, ps, 100000, apart(ps, false))
	})
}

// tokenField finds the switchover token in sdr's console output.
var tokenField = regexp.MustCompile(`"token": "([A-Za-z0-9_-]+)"`)

// TestSwitchoverKillAtEveryStep kills each half at every step and point,
// one switchover per point, switching back and forth; each converges with
// zero acknowledged rows lost.
func TestSwitchoverKillAtEveryStep(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := newSwitchBed(t)
	points := []struct{ half, point string }{
		{"primary", "3_demote:before"}, {"primary", "3_demote:before-stop"}, {"primary", "3_demote:after-effects"},
		{"primary", "4_rejoin:before"}, {"primary", "4_rejoin:before-start"}, {"primary", "4_rejoin:after-effects"},
		{"primary", "5_follow:after-effects"}, {"primary", "6_finish:after-effects"},
		{"standby", "3_wait_primary:before"}, {"standby", "3_wait_primary:after-effects"}, {"standby", "4_promote:before-pg_promote"},
		{"standby", "4_promote:after-pg_promote"}, {"standby", "4_promote:after-effects"}, {"standby", "5_follow:after-effects"},
		{"standby", "6_finish:before"},
	}
	primary := bed.ClusterDC1
	for i, pt := range points {
		t.Run(pt.half+"/"+pt.point, func(t *testing.T) {
			ps := sidesFor(t, b, primary)
			killed, other := ps.primary, ps.standby
			if pt.half == "standby" {
				killed, other = ps.standby, ps.primary
			}
			switchoverUnderLoad(t, b, ps, (i+1)*1000000, func() (d, p result) {
				done := make(chan struct{})
				var o result
				go func() { defer close(done); o = switchHalf(t, sdrBin, nil, ps.config, other) }()
				k := switchHalf(t, sdrBinFP, []string{"SDR_FAILPOINT=" + pt.point + ":kill"}, ps.config, killed)
				if k.Code != -1 {
					t.Errorf("%s: want the half killed, got %s", pt.point, k)
				}
				r := switchHalf(t, sdrBin, nil, ps.config, killed)
				<-done
				if pt.point == "3_demote:after-effects" {
					// The token was recorded before the kill; the rerun
					// resumes at 3_demote and must print it again.
					m := tokenField.FindStringSubmatch(k.Stderr)
					if m == nil {
						t.Errorf("the killed demote half printed no token:\n%s", k.Stderr)
					} else if !strings.Contains(r.Stderr, m[1]) {
						t.Errorf("the rerun of the demote half did not print the recorded token %s again:\n%s", m[1], r.Stderr)
					}
				}
				if pt.half == "primary" {
					return r, o
				}
				return o, r
			})
		})
		if t.Failed() {
			return
		}
		if primary == bed.ClusterDC1 {
			primary = bed.ClusterDC2
		} else {
			primary = bed.ClusterDC1
		}
	}
}

// TestSwitchoverAbort: a demote half whose promote half never runs is
// aborted and the old primary comes back with no row lost; once the DR
// side promoted, an abort is refused.
func TestSwitchoverAbort(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := newSwitchBed(t)
	ps := sidesFor(t, b, bed.ClusterDC1)
	w := startWriter(t, b, bed.DC1A, 1)
	eventually(t, 30*time.Second, "writes acknowledged", func() (bool, string) { return w.Count() > 50, fmt.Sprint(w.Count()) })
	d := switchHalf(t, sdrBin, nil, ps.config, ps.primary, "--timeout", "5s")
	acks := w.Stop()
	if d.Code != 1 || status(t, "", ps.primary).state("primary") != "switchover_fail" {
		t.Fatalf("demote half alone: want it to time out in switchover_fail: %s", d)
	}
	if !strings.Contains(d.Stderr, "token") {
		t.Errorf("the demote half should print its token:\n%s", d.Stderr)
	}
	a := sdr(t, sdrBin, nil, "--config", ps.config, "--state", ps.primary.state, "switchover", "--role", "primary", "--abort", "--timeout", "1m")
	if a.Code != 0 {
		t.Fatalf("abort: %s", a)
	}
	if got := sql(t, b, bed.DC1A, "SELECT pg_is_in_recovery()"); got != "f" {
		t.Fatalf("dc1-a is not the primary after the abort")
	}
	present := presentIDs(t, b, bed.DC1A)
	for _, k := range acks {
		if !present[k.ID] {
			t.Fatalf("row %d lost by the abort", k.ID)
		}
	}
	eventually(t, 30*time.Second, "dc2-a streams from dc1-a again", func() (bool, string) {
		got, err := b.SQL(context.Background(), bed.DC2A, "SELECT status || ' ' || sender_port FROM pg_stat_wal_receiver")
		return err == nil && got == fmt.Sprintf("streaming %d", b.Node(bed.DC1A).Port), fmt.Sprint(got, err)
	})
	if got := status(t, "", ps.primary).state("primary"); got != "archive" {
		t.Errorf("state after the abort %q, want archive", got)
	}
	// A full switchover now, then an abort is refused.
	switchoverUnderLoad(t, b, ps, 100000, bothHalves(t, ps))
	a = sdr(t, sdrBin, nil, "--config", ps.config, "--state", ps.primary.state, "switchover", "--role", "primary", "--abort")
	if a.Code != 2 || !strings.Contains(a.Stderr, "promoted") {
		t.Fatalf("abort after the promotion: want a refusal (exit 2) saying the DR side promoted: %s", a)
	}
	if got := sql(t, b, bed.DC1A, "SELECT pg_is_in_recovery()"); got != "t" {
		t.Fatalf("a refused abort brought dc1-a back as a primary")
	}

	// dc2 is the primary cluster now, and dc2-a a former DR node: its
	// postgresql.conf is dc1-a's copy, its own port and socket directory
	// are in sdr's block. Its demote half alone, then: stop is refused
	// while the switchover is unfinished, and the abort (with dc1-a's last
	// restartpoint still on the old timeline) brings dc2-a back as the
	// primary on its own port.
	ps2 := sidesFor(t, b, bed.ClusterDC2)
	d = switchHalf(t, sdrBin, nil, ps2.config, ps2.primary, "--timeout", "5s")
	if d.Code != 1 || status(t, "", ps2.primary).state("primary") != "switchover_fail" {
		t.Fatalf("dc2's demote half alone: want it to time out in switchover_fail: %s", d)
	}
	st := sdr(t, sdrBin, nil, "--config", ps2.config, "--state", ps2.primary.state, "stop", "--role", "primary")
	if st.Code != 2 || !strings.Contains(st.Stderr, "switchover/primary is unfinished") || !strings.Contains(st.Stderr, "--abort") {
		t.Fatalf("stop in the middle of the switchover: want a refusal (exit 2) naming the switchover and --abort: %s", st)
	}
	a = sdr(t, sdrBin, nil, "--config", ps2.config, "--state", ps2.primary.state, "switchover", "--role", "primary", "--abort", "--timeout", "1m")
	if a.Code != 0 {
		t.Fatalf("abort of dc2's demote half: %s", a)
	}
	if got := sql(t, b, bed.DC2A, "SELECT pg_is_in_recovery()::text || ' ' || current_setting('port')"); got != fmt.Sprintf("false %d", b.Node(bed.DC2A).Port) {
		t.Fatalf("dc2-a after the abort: in recovery, port = %q, want the primary on its own port %d", got, b.Node(bed.DC2A).Port)
	}
	eventually(t, 30*time.Second, "dc1-a streams from dc2-a again", func() (bool, string) {
		got, err := b.SQL(context.Background(), bed.DC1A, "SELECT status || ' ' || sender_port FROM pg_stat_wal_receiver")
		return err == nil && got == fmt.Sprintf("streaming %d", b.Node(bed.DC2A).Port), fmt.Sprint(got, err)
	})
}

// TestStopAfterSwitchover: a switchover with the DR side's cascade down
// finishes without waiting for it, and the cascade follows once started.
// After the switchover each state file stays with its cluster, and stop takes the pair apart with the roles swapped (the
// config says primary: dc2): dc1's file for stop --role standby (it holds
// the demote half's record), dc2's for stop --role primary (the promote
// half's). The new primary cluster's own standby, dc2-b, still streams
// through the slot sdr made for it while dc2 was the DR side: stop --role
// primary refuses, changing nothing, until the operator has pointed dc2-b
// at a slot of the cluster's own and dropped sdr's; then it finishes and
// dc2-b keeps streaming.
func TestStopAfterSwitchover(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	ctx := context.Background()
	b := newSwitchBed(t)
	ps := sidesFor(t, b, bed.ClusterDC1)
	// The DR side's cascade is down during the switchover: the promote
	// half does not wait for it (it says so), and once started it follows
	// the new primary onto the new timeline.
	if err := b.StopNode(ctx, bed.DC2B); err != nil {
		t.Fatal(err)
	}
	d, p := bothHalves(t, ps)()
	if d.Code != 0 || p.Code != 0 {
		t.Fatalf("switchover with dc2-b down:\ndemote: %s\npromote: %s", d, p)
	}
	if !strings.Contains(p.Stderr, "cascade dc2-b does not run: not waited for") {
		t.Errorf("the promote half should say dc2-b was not waited for:\n%s", p.Stderr)
	}
	if err := b.StartNode(ctx, bed.DC2B); err != nil {
		t.Fatal(err)
	}
	tli := timelineOf(t, b, bed.DC2A)
	eventually(t, 30*time.Second, "dc2-b follows the new primary onto the new timeline once started", func() (bool, string) {
		got, err := b.SQL(ctx, bed.DC2B, "SELECT status || ' ' || received_tli || ' ' || sender_port FROM pg_stat_wal_receiver")
		return err == nil && got == fmt.Sprintf("streaming %s %d", tli, b.Node(bed.DC2A).Port), fmt.Sprint(got, err)
	})
	now := sidesFor(t, b, bed.ClusterDC2)
	stop := func(s side) result {
		return sdr(t, sdrBin, nil, "--config", now.config, "--state", s.state, "--log-file", s.log, "stop", "--role", s.role)
	}
	// dc1-b, the old primary's own standby, follows dc1-a with the bed's
	// primary_conninfo, not sdr's: the DR side's stop leaves every node
	// without upstream, so it asks for that line to go, and resumes.
	if r := stop(now.standby); r.Code == 0 || !strings.Contains(r.Stderr, "dc1-b still has primary_conninfo in postgresql.auto.conf outside sdr's block") {
		t.Fatalf("stop --role standby on dc1 with the bed's own primary_conninfo on dc1-b: %s", r)
	}
	sql(t, b, bed.DC1B, "ALTER SYSTEM RESET primary_conninfo")
	if r := stop(now.standby); r.Code != 0 || !strings.Contains(r.Stdout, "complete; state normal") {
		t.Fatalf("stop --role standby on dc1 after the switchover: %s", r)
	}
	sdrSlot := "sdr_" + b.Name + "_"
	dc2bSlot := cluster.SlotName(b.Name, bed.DC2B)
	if got := sql(t, b, bed.DC2A, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '"+dc2bSlot+"'"); got != "1" {
		t.Fatalf("no slot of sdr's for dc2-b on dc2-a after the switchover (%s)", got)
	}
	r := stop(now.primary)
	if r.Code != 2 || !strings.Contains(r.Stderr, "dc2-a holds this pair's slot "+dc2bSlot) || !strings.Contains(r.Stderr, "Nothing was changed") {
		t.Fatalf("stop --role primary while dc2-b streams through sdr's slot: %s", r)
	}
	streams := func(what, slot string) {
		t.Helper()
		eventually(t, 30*time.Second, what, func() (bool, string) {
			got, err := b.SQL(ctx, bed.DC2B, "SELECT status || ' ' || coalesce(slot_name, '') FROM pg_stat_wal_receiver")
			return err == nil && got == "streaming "+slot, fmt.Sprint(got, err)
		})
	}
	streams("dc2-b streams through sdr's slot after the refused stop", dc2bSlot)

	// The operator gives dc2-b a slot of the cluster's own and drops sdr's.
	sql(t, b, bed.DC2A, "SELECT pg_create_physical_replication_slot('own_dc2b', true)")
	sql(t, b, bed.DC2B, "ALTER SYSTEM SET primary_slot_name = 'own_dc2b'")
	sql(t, b, bed.DC2B, "SELECT pg_reload_conf()")
	streams("dc2-b streams through its own slot", "own_dc2b")
	eventually(t, 30*time.Second, "sdr's slot for dc2-b dropped", func() (bool, string) {
		got, err := b.SQL(ctx, bed.DC2A, "SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots WHERE slot_name = '"+dc2bSlot+"' AND NOT active")
		return err == nil && got == "1", fmt.Sprint(got, err)
	})
	if r := stop(now.primary); r.Code != 0 || !strings.Contains(r.Stdout, "complete; state normal") {
		t.Fatalf("stop --role primary on dc2 after the switchover: %s", r)
	}
	if got := sql(t, b, bed.DC2A, "SELECT pg_is_in_recovery()"); got != "f" {
		t.Errorf("dc2-a in recovery = %s after stop, want the primary", got)
	}
	for _, n := range bed.NodeNames {
		if got := sql(t, b, n, "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE '"+sdrSlot+"%'"); got != "0" {
			t.Errorf("%s has %s sdr slots after stop", n, got)
		}
		raw, err := os.ReadFile(b.HBAFile(n))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(raw), "# BEGIN sdr") {
			t.Errorf("%s: sdr's pg_hba.conf block is still there after stop:\n%s", n, raw)
		}
	}
	for _, n := range []string{bed.DC1A, bed.DC1B} {
		if got := sql(t, b, n, "SELECT pg_is_in_recovery()::text || ' ' || (SELECT count(*) FROM pg_stat_wal_receiver WHERE pid IS NOT NULL)"); got != "true 0" {
			t.Errorf("%s after stop: in recovery / WAL receivers = %q, want a read-only standby without upstream", n, got)
		}
	}
	// Its stream survives a reconnect: the bed's own pg_hba.conf line lets
	// it in once sdr's block is gone.
	sql(t, b, bed.DC2A, "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 'own_dc2b' AND active")
	streams("dc2-b streams from dc2-a again after the stop and a reconnect", "own_dc2b")
}
