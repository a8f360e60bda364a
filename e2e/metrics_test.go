package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgsdr/sdr/e2e/bed"
	"github.com/pgsdr/sdr/steps"
)

// metric is one sample of `sdr metrics`.
type metric struct {
	name   string
	labels map[string]string
	value  float64
}

var (
	sampleRE = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$`)
	labelRE  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)
)

// parseMetrics reads the samples of the text format; the format itself is
// checked by promtool (promCheck).
func parseMetrics(t *testing.T, text string) []metric {
	t.Helper()
	var out []metric
	for _, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		m := sampleRE.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("not a sample line: %q", line)
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Fatalf("bad value in %q", line)
		}
		s := metric{name: m[1], labels: map[string]string{}, value: v}
		for _, l := range labelRE.FindAllStringSubmatch(m[2], -1) {
			s.labels[l[1]] = strings.NewReplacer(`\\`, `\`, `\"`, `"`, `\n`, "\n").Replace(l[2])
		}
		out = append(out, s)
	}
	return out
}

// values returns the values of name's samples whose labels include kv.
func values(ms []metric, name string, kv ...string) []float64 {
	var out []float64
	for _, m := range ms {
		ok := m.name == name
		for i := 0; ok && i+1 < len(kv); i += 2 {
			ok = m.labels[kv[i]] == kv[i+1]
		}
		if ok {
			out = append(out, m.value)
		}
	}
	return out
}

// one returns the single value of name with labels kv, or fails.
func one(t *testing.T, ms []metric, name string, kv ...string) float64 {
	t.Helper()
	v := values(ms, name, kv...)
	if len(v) != 1 {
		t.Fatalf("%s%v: %d samples, want 1", name, kv, len(v))
	}
	return v[0]
}

// promCheck runs `promtool check metrics` (Prometheus's own parser and
// linter) on text, in a subtest that is skipped when promtool is missing.
func promCheck(t *testing.T, what, text string) {
	t.Helper()
	t.Run("promtool "+what, func(t *testing.T) {
		promtool, err := exec.LookPath("promtool")
		if err != nil {
			t.Skip("promtool not installed (Debian: apt-get install --no-install-recommends prometheus; .ci/run does)")
		}
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(text)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s\ninput:\n%s", err, out, text)
		}
	})
}

// metricsOf runs `sdr metrics` for one side, with the bed's config.
func metricsOf(t *testing.T, b *bed.Bed, s side, extra ...string) string {
	t.Helper()
	r := sdr(t, sdrBin, nil, append([]string{"--state", s.state, "--config", b.ConfigPath, "metrics"}, extra...)...)
	if r.Code != 0 {
		t.Fatalf("sdr metrics: %s", r)
	}
	return r.Stdout
}

func lsnOf(t *testing.T, b *bed.Bed, node, query string) uint64 {
	t.Helper()
	v, err := steps.ParseLSN(sql(t, b, node, query))
	if err != nil {
		t.Fatalf("on %s: %v", node, err)
	}
	return v
}

func floatOf(t *testing.T, b *bed.Bed, node, query string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(sql(t, b, node, query), 64)
	if err != nil {
		t.Fatalf("on %s: %q: %v", node, query, err)
	}
	return v
}

// TestMetricsMatchPostgres: after a completed start, `sdr metrics` on
// both sides passes promtool and says what PostgreSQL says: the states,
// per node whether it streams, its timeline and recovery; with replay
// paused on the main standby while the primary writes, its lag in bytes
// lies between the primary's WAL positions read before and after, minus
// the frozen replay position, and its seconds between PostgreSQL's own
// ages of the last message and the last replayed transaction. A node that
// cannot be asked has no lag samples at all (never 0). --textfile writes
// the same atomically.
func TestMetricsMatchPostgres(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := newBed(t)
	seedData(t, b, 1)
	if p, s := startBoth(t, b, "--timeout", "3m"); p.Code != 0 || s.Code != 0 {
		t.Fatalf("start:\nprimary: %s\nstandby: %s", p, s)
	}
	pd, sd := primarySide(b), standbySide(b)
	eventually(t, time.Minute, "every standby streaming and caught up", func() (bool, string) {
		d, raw := lagStatus(t, b, sd)
		for _, n := range []string{bed.DC1B, bed.DC2A, bed.DC2B} {
			if l := d.node(t, n).Lag; l == nil || l.State != "streaming" || l.Bytes == nil || *l.Bytes != 0 {
				return false, raw
			}
		}
		return true, ""
	})

	// States, operations and per-node facts on both sides.
	for _, c := range []struct {
		s     side
		state string
	}{{pd, "archive"}, {sd, "recovery"}} {
		text := metricsOf(t, b, c.s)
		promCheck(t, c.s.role, text)
		ms := parseMetrics(t, text)
		if v := values(ms, "sdr_dr_state", "pair", b.Name, "side", c.s.role, "state", c.state); len(v) != 1 || v[0] != 1 {
			t.Errorf("%s: sdr_dr_state{state=%q} %v, want 1", c.s.role, c.state, v)
		}
		sum := 0.0
		for _, v := range values(ms, "sdr_dr_state", "side", c.s.role) {
			sum += v
		}
		if sum != 1 {
			t.Errorf("%s: the state series add up to %v, want exactly one at 1", c.s.role, sum)
		}
		if v := one(t, ms, "sdr_operation_in_progress", "side", c.s.role); v != 0 {
			t.Errorf("%s: an operation in progress after the start", c.s.role)
		}
		one(t, ms, "sdr_info", "side", c.s.role, "live", "true")
		// The last operation's end is the finish recorded in the state file.
		r := sdr(t, sdrBin, nil, "--state", c.s.state, "status", "--json")
		fin := regexp.MustCompile(`"finished": "([^"]+)"`).FindStringSubmatch(r.Stdout)
		if fin == nil {
			t.Fatalf("%s: no finished time in status --json:\n%s", c.s.role, r.Stdout)
		}
		at, err := time.Parse(time.RFC3339Nano, fin[1])
		if err != nil {
			t.Fatal(err)
		}
		if v := one(t, ms, "sdr_last_operation_timestamp_seconds", "side", c.s.role, "op", "start", "result", "success"); math.Abs(v-float64(at.UnixMicro())/1e6) > 1e-6 {
			t.Errorf("%s: last operation at %v, want %v", c.s.role, v, float64(at.UnixMicro())/1e6)
		}
		for _, n := range bed.NodeNames {
			inRec := sql(t, b, n, "SELECT pg_is_in_recovery()") == "t"
			if v := one(t, ms, "sdr_node_in_recovery", "node", n); v != map[bool]float64{false: 0, true: 1}[inRec] {
				t.Errorf("%s: sdr_node_in_recovery{node=%s} %v, PostgreSQL says %v", c.s.role, n, v, inRec)
			}
			wantTL := sql(t, b, n, "SELECT CASE WHEN pg_is_in_recovery() THEN (SELECT received_tli FROM pg_stat_wal_receiver)::text ELSE (SELECT timeline_id FROM pg_control_checkpoint())::text END")
			if v := one(t, ms, "sdr_dr_timeline", "node", n); strconv.FormatFloat(v, 'f', -1, 64) != wantTL {
				t.Errorf("%s: sdr_dr_timeline{node=%s} %v, PostgreSQL says %s", c.s.role, n, v, wantTL)
			}
			st := values(ms, "sdr_dr_streaming", "node", n)
			if !inRec {
				if len(st) != 0 {
					t.Errorf("%s: the primary %s has sdr_dr_streaming %v", c.s.role, n, st)
				}
				continue
			}
			streams := sql(t, b, n, "SELECT coalesce((SELECT status FROM pg_stat_wal_receiver), 'none')") == "streaming"
			if len(st) != 1 || st[0] != map[bool]float64{false: 0, true: 1}[streams] {
				t.Errorf("%s: sdr_dr_streaming{node=%s} %v, PostgreSQL says streaming=%v", c.s.role, n, st, streams)
			}
		}
	}

	// Lag in bytes and seconds against PostgreSQL's own positions and
	// times: pause replay on dc2-a, write on dc1-a, wait until dc2-a has
	// received it (so its replay position is frozen behind).
	sql(t, b, bed.DC1A, "INSERT INTO dr_check SELECT g, md5(g::text) FROM generate_series(100001, 100100) g")
	target := lsnOf(t, b, bed.DC1A, "SELECT pg_current_wal_lsn()")
	eventually(t, 30*time.Second, "dc2-a replayed the first insert", func() (bool, string) {
		v := lsnOf(t, b, bed.DC2A, "SELECT pg_last_wal_replay_lsn()")
		return v >= target, fmt.Sprintf("%X < %X", v, target)
	})
	sql(t, b, bed.DC2A, "SELECT pg_wal_replay_pause()")
	defer sql(t, b, bed.DC2A, "SELECT pg_wal_replay_resume()")
	eventually(t, 30*time.Second, "replay paused on dc2-a", func() (bool, string) {
		s := sql(t, b, bed.DC2A, "SELECT pg_get_wal_replay_pause_state()")
		return s == "paused", s
	})
	sql(t, b, bed.DC1A, "INSERT INTO dr_check SELECT g, md5(g::text) FROM generate_series(100101, 130000) g")
	target = lsnOf(t, b, bed.DC1A, "SELECT pg_current_wal_lsn()")
	eventually(t, 30*time.Second, "dc2-a received the second insert", func() (bool, string) {
		v := lsnOf(t, b, bed.DC2A, "SELECT pg_last_wal_receive_lsn()")
		return v >= target, fmt.Sprintf("%X < %X", v, target)
	})
	// PostgreSQL's own ages: of the last message from the upstream, and
	// of the last replayed transaction (which grows steadily while replay
	// is paused).
	const msgAgeSQL = `SELECT extract(epoch FROM now() - last_msg_receipt_time) FROM pg_stat_wal_receiver`
	const replayAgeSQL = `SELECT extract(epoch FROM now() - pg_last_xact_replay_timestamp())`
	replay := lsnOf(t, b, bed.DC2A, "SELECT pg_last_wal_replay_lsn()")
	recvBefore := lsnOf(t, b, bed.DC2A, "SELECT pg_last_wal_receive_lsn()")
	cascadeBefore := lsnOf(t, b, bed.DC2B, "SELECT pg_last_wal_replay_lsn()")
	primaryBefore := lsnOf(t, b, bed.DC1A, "SELECT pg_current_wal_lsn()")
	msgAgeBefore := floatOf(t, b, bed.DC2A, msgAgeSQL)
	replayAgeBefore := floatOf(t, b, bed.DC2A, replayAgeSQL)
	t0 := time.Now()
	text := metricsOf(t, b, sd)
	elapsed := time.Since(t0).Seconds()
	replayAgeAfter := floatOf(t, b, bed.DC2A, replayAgeSQL)
	primaryAfter := lsnOf(t, b, bed.DC1A, "SELECT pg_current_wal_lsn()")
	recvAfter := lsnOf(t, b, bed.DC2A, "SELECT pg_last_wal_receive_lsn()")
	if got := lsnOf(t, b, bed.DC2A, "SELECT pg_last_wal_replay_lsn()"); got != replay {
		t.Fatalf("dc2-a replayed while paused: %X, then %X", replay, got)
	}
	promCheck(t, "replay paused", text)
	ms := parseMetrics(t, text)
	t.Logf("metrics with replay paused on dc2-a:\n%s", text)
	between := func(what string, v float64, lo, hi float64) {
		if v < lo || v > hi {
			t.Errorf("%s = %v, want within [%v, %v] (from PostgreSQL)", what, v, lo, hi)
		}
	}
	lag := one(t, ms, "sdr_dr_lag_bytes", "node", bed.DC2A)
	between("dc2-a lag bytes", lag, float64(primaryBefore-replay), float64(primaryAfter-replay))
	if lag <= 0 {
		t.Errorf("dc2-a is behind by %d bytes of WAL but shows %v", target-replay, lag)
	}
	if v := one(t, ms, "sdr_dr_replay_lsn_bytes", "node", bed.DC2A); v != float64(replay) {
		t.Errorf("dc2-a replay position %v, PostgreSQL says %d", v, replay)
	}
	between("dc2-a receive lag bytes", one(t, ms, "sdr_dr_receive_lag_bytes", "node", bed.DC2A),
		math.Max(0, float64(primaryBefore)-float64(recvAfter)), float64(primaryAfter-recvBefore))
	// Received WAL waits for replay, so the seconds are the larger of the
	// two ages when sdr asked: at least the replay age then, at most the
	// message age before plus the time sdr took, or the replay age after.
	between("dc2-a lag seconds", one(t, ms, "sdr_dr_lag_seconds", "node", bed.DC2A),
		replayAgeBefore-0.05, math.Max(msgAgeBefore+elapsed+0.5, replayAgeAfter)+0.05)
	between("dc1-a current WAL position", one(t, ms, "sdr_dr_current_lsn_bytes", "node", bed.DC1A), float64(primaryBefore), float64(primaryAfter))
	if v := one(t, ms, "sdr_dr_streaming", "node", bed.DC2A); v != 1 {
		t.Errorf("dc2-a streams (replay paused) but sdr_dr_streaming is %v", v)
	}
	// The cascade streams what dc2-a received; its bytes behind are
	// measured against the primary too.
	between("dc2-b lag bytes", one(t, ms, "sdr_dr_lag_bytes", "node", bed.DC2B), 0, float64(primaryAfter-cascadeBefore))
	sql(t, b, bed.DC2A, "SELECT pg_wal_replay_resume()")

	// A node that cannot be asked: reachable 0, and no streaming or lag
	// sample at all.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := b.PGCtl(ctx, bed.DC2B, "stop", "-m", "fast", "-w"); err != nil {
		t.Fatal(err)
	}
	ms = parseMetrics(t, metricsOf(t, b, sd))
	if v := one(t, ms, "sdr_node_reachable", "node", bed.DC2B); v != 0 {
		t.Errorf("dc2-b is stopped but sdr_node_reachable is %v", v)
	}
	for _, name := range []string{"sdr_dr_streaming", "sdr_dr_lag_bytes", "sdr_dr_lag_seconds", "sdr_dr_receive_lag_bytes", "sdr_dr_timeline"} {
		if v := values(ms, name, "node", bed.DC2B); len(v) != 0 {
			t.Errorf("dc2-b is stopped but %s is %v (unknown must be absent)", name, v)
		}
	}
	if err := b.PGCtl(ctx, bed.DC2B, "start"); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "dc2-b streaming again", func() (bool, string) {
		s, err := b.SQL(ctx, bed.DC2B, "SELECT coalesce((SELECT status FROM pg_stat_wal_receiver), 'none')")
		return err == nil && s == "streaming", fmt.Sprint(s, err)
	})

	// --textfile: the same metrics in DIR/sdr_<pair>_<side>.prom, for
	// node_exporter, and nothing else in DIR.
	dir := t.TempDir()
	r := sdr(t, sdrBin, nil, "--state", sd.state, "--config", b.ConfigPath, "metrics", "--textfile", dir)
	if r.Code != 0 || r.Stdout != "" {
		t.Fatalf("metrics --textfile: %s", r)
	}
	entries, _ := os.ReadDir(dir)
	want := fmt.Sprintf("sdr_%s_standby.prom", b.Name)
	if len(entries) != 1 || entries[0].Name() != want {
		t.Fatalf("textfile directory holds %v, want only %s", entries, want)
	}
	raw, err := os.ReadFile(filepath.Join(dir, want))
	if err != nil {
		t.Fatal(err)
	}
	promCheck(t, "textfile", string(raw))
	names := func(text string) string {
		var out []string
		for _, l := range strings.Split(text, "\n") {
			if strings.HasPrefix(l, "# TYPE ") {
				out = append(out, strings.Fields(l)[2])
			}
		}
		return strings.Join(out, " ")
	}
	if got, want := names(string(raw)), names(metricsOf(t, b, sd)); got != want {
		t.Errorf("textfile families %s, stdout families %s", got, want)
	}
	if !bytes.Contains(raw, []byte(`sdr_dr_streaming{pair="`+b.Name+`",side="standby",file_cluster="`+bed.ClusterDC2+`",node="dc2-b",cluster="standby"} 1`)) {
		t.Errorf("textfile does not show dc2-b streaming again:\n%s", raw)
	}
}
