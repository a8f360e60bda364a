package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/steps"
	"github.com/pgsdr/sdr/store"
	"github.com/pgsdr/sdr/workflow"
)

// promSample is one parsed sample line.
type promSample struct {
	name   string
	labels map[string]string
	value  float64
}

var (
	metricNameRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelNameRE  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// parseProm parses the text exposition format strictly, with the rules
// sdr follows on top of it: every family has one HELP and one TYPE line
// before its samples, its samples are together, counters end in _total,
// no sample has a timestamp, and no series appears twice.
func parseProm(text string) ([]promSample, error) {
	var out []promSample
	help, typ := map[string]bool{}, map[string]string{}
	done := map[string]bool{} // families whose samples ended
	seen := map[string]bool{}
	cur := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		bad := func(format string, args ...any) error {
			return fmt.Errorf("line %d %q: %s", n, line, fmt.Sprintf(format, args...))
		}
		switch {
		case line == "":
			return nil, bad("empty line")
		case strings.HasPrefix(line, "# HELP "), strings.HasPrefix(line, "# TYPE "):
			f := strings.SplitN(line, " ", 4)
			if len(f) != 4 || !metricNameRE.MatchString(f[2]) {
				return nil, bad("malformed")
			}
			name := f[2]
			if done[name] || (cur == name && len(out) > 0 && out[len(out)-1].name == name) {
				return nil, bad("HELP/TYPE after samples of %s", name)
			}
			if f[1] == "HELP" {
				if help[name] {
					return nil, bad("second HELP")
				}
				help[name] = true
			} else {
				if typ[name] != "" {
					return nil, bad("second TYPE")
				}
				switch f[3] {
				case "gauge", "counter", "untyped", "summary", "histogram":
				default:
					return nil, bad("unknown type %q", f[3])
				}
				typ[name] = f[3]
				if f[3] == "counter" && !strings.HasSuffix(name, "_total") {
					return nil, bad("counter %s does not end in _total", name)
				}
			}
			if cur != name && cur != "" {
				done[cur] = true
			}
			cur = name
		case strings.HasPrefix(line, "#"):
			return nil, bad("unexpected comment")
		default:
			s, rest, err := parseSample(line)
			if err != nil {
				return nil, bad("%v", err)
			}
			if s.name != cur || done[s.name] {
				return nil, bad("sample of %s outside its family", s.name)
			}
			if !help[s.name] || typ[s.name] == "" {
				return nil, bad("sample before HELP and TYPE")
			}
			if rest != "" {
				return nil, bad("trailing %q (a timestamp?)", rest)
			}
			key := seriesKey(s.name, s.labels)
			if seen[key] {
				return nil, bad("duplicate series")
			}
			seen[key] = true
			out = append(out, s)
		}
	}
	return out, sc.Err()
}

// parseSample reads `name{a="b",...} value` and returns what follows.
func parseSample(line string) (promSample, string, error) {
	s := promSample{labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		return s, "", errors.New("no value")
	}
	s.name = line[:i]
	if !metricNameRE.MatchString(s.name) {
		return s, "", fmt.Errorf("bad name %q", s.name)
	}
	rest := line[i:]
	if rest[0] == '{' {
		rest = rest[1:]
		for {
			if strings.HasPrefix(rest, "}") {
				rest = rest[1:]
				break
			}
			eq := strings.Index(rest, `="`)
			if eq < 0 || !labelNameRE.MatchString(rest[:eq]) {
				return s, "", fmt.Errorf("bad label at %q", rest)
			}
			name := rest[:eq]
			rest = rest[eq+2:]
			var v strings.Builder
			for {
				if rest == "" {
					return s, "", errors.New("unterminated label value")
				}
				c := rest[0]
				rest = rest[1:]
				if c == '"' {
					break
				}
				if c == '\\' {
					if rest == "" {
						return s, "", errors.New("dangling escape")
					}
					switch rest[0] {
					case '\\':
						v.WriteByte('\\')
					case '"':
						v.WriteByte('"')
					case 'n':
						v.WriteByte('\n')
					default:
						return s, "", fmt.Errorf("bad escape \\%c", rest[0])
					}
					rest = rest[1:]
					continue
				}
				if c == '\n' {
					return s, "", errors.New("newline in a label value")
				}
				v.WriteByte(c)
			}
			if _, dup := s.labels[name]; dup {
				return s, "", fmt.Errorf("label %s twice", name)
			}
			s.labels[name] = v.String()
			if strings.HasPrefix(rest, ",") {
				rest = rest[1:]
			}
		}
	}
	if !strings.HasPrefix(rest, " ") {
		return s, "", errors.New("no space before the value")
	}
	f := strings.SplitN(rest[1:], " ", 2)
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return s, "", fmt.Errorf("bad value %q", f[0])
	}
	s.value = v
	if len(f) == 2 {
		return s, f[1], nil
	}
	return s, "", nil
}

func seriesKey(name string, labels map[string]string) string {
	var ks []string
	for k, v := range labels {
		ks = append(ks, k+"="+strconv.Quote(v))
	}
	sort.Strings(ks)
	return name + "{" + strings.Join(ks, ",") + "}"
}

// find returns the values of name's samples whose labels include want.
func find(samples []promSample, name string, want map[string]string) []float64 {
	var out []float64
	for _, s := range samples {
		if s.name != name {
			continue
		}
		ok := true
		for k, v := range want {
			ok = ok && s.labels[k] == v
		}
		if ok {
			out = append(out, s.value)
		}
	}
	return out
}

func TestParsePromRejects(t *testing.T) {
	// The checker must be able to fail: each case breaks one rule.
	tests := []struct{ name, text string }{
		{"no HELP", "# TYPE a gauge\na 1\n"},
		{"no TYPE", "# HELP a x\na 1\n"},
		{"timestamp", "# HELP a x\n# TYPE a gauge\na 1 1700000000000\n"},
		{"duplicate series", "# HELP a x\n# TYPE a gauge\na{b=\"1\"} 1\na{b=\"1\"} 2\n"},
		{"counter without _total", "# HELP a x\n# TYPE a counter\na 1\n"},
		{"bad escape", "# HELP a x\n# TYPE a gauge\na{b=\"\\t\"} 1\n"},
		{"split family", "# HELP a x\n# TYPE a gauge\na 1\n# HELP b x\n# TYPE b gauge\nb 1\na{c=\"d\"} 1\n"},
		{"bad value", "# HELP a x\n# TYPE a gauge\na one\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseProm(tc.text); err == nil {
				t.Errorf("accepted:\n%s", tc.text)
			}
		})
	}
}

func TestWriteFamilies(t *testing.T) {
	fams := []*family{
		{name: "x_info", typ: "gauge", help: "a \\ help\nwith a newline", samples: []sample{{labels: []label{{"v", `q"uo\te` + "\n"}}, value: 1}}},
		{name: "x_empty", typ: "gauge", help: "no samples: not written"},
		{name: "x_bytes", typ: "gauge", help: "h", samples: []sample{{value: 12345678901234}, {labels: []label{{"a", "b"}}, value: 0.25}}},
		{name: "x_runs_total", typ: "counter", help: "h", samples: []sample{{value: 3}}},
	}
	var buf bytes.Buffer
	if err := writeFamilies(&buf, fams); err != nil {
		t.Fatal(err)
	}
	want := `# HELP x_info a \\ help\nwith a newline
# TYPE x_info gauge
x_info{v="q\"uo\\te\n"} 1
# HELP x_bytes h
# TYPE x_bytes gauge
x_bytes 12345678901234
x_bytes{a="b"} 0.25
# HELP x_runs_total h
# TYPE x_runs_total counter
x_runs_total 3
`
	if buf.String() != want {
		t.Errorf("got\n%s\nwant\n%s", buf.String(), want)
	}
	samples, err := parseProm(buf.String())
	if err != nil {
		t.Fatal(err)
	}
	if v := find(samples, "x_info", map[string]string{"v": `q"uo\te` + "\n"}); len(v) != 1 {
		t.Errorf("the escaped label value does not read back: %v", samples)
	}
}

// statusFixture is a standby side with a live run in 7_build_standby that
// reports the copy of dc2-b, and live facts of five nodes: a primary, a
// caught-up in-cluster standby, a main standby that does not stream, an
// unreachable cascade and a streaming cascade that is behind.
func statusFixture(now time.Time) StatusDoc {
	at := func(ago time.Duration) *time.Time { t := now.Add(-ago); return &t }
	i64 := func(v int64) *int64 { return &v }
	f64 := func(v float64) *float64 { return &v }
	tl := func(v int) *int { return &v }
	return StatusDoc{
		Pair: "dc1_dc2", StateFile: "/var/lib/sdr/standby.db", Role: workflow.RoleStandby, Live: "ok",
		Sides: []workflow.Side{{Role: workflow.RoleStandby, State: workflow.StateRestore, Since: *at(time.Minute), Step: "7_build_standby"}},
		Lock:  &store.Holder{PID: 42, Host: "h", RunID: "run-2", Command: "start --role standby"},
		Workflows: []workflow.Record{
			{Workflow: "start/standby", Action: "start", Role: workflow.RoleStandby, RunID: "run-2", Runs: 2, Updated: *at(time.Minute), Steps: []workflow.StepRecord{
				{Name: "6_set_guc", Status: workflow.StatusDone, Started: at(2 * time.Minute), Ended: at(time.Minute)},
				{Name: "7_build_standby", Status: workflow.StatusStarted, Started: at(time.Minute)},
			}},
		},
		Progress: &workflow.ProgressReport{RunID: "run-2", Step: "7_build_standby", Updated: now, Parts: []workflow.PartProgress{
			{Part: "dc2-b", Done: 100 << 20, Total: 400 << 20, Rate: 10 << 20, Remaining: f64(30), Updated: now},
		}},
		Nodes: []steps.NodeStatus{
			{Name: "dc1-a", Cluster: "primary", Reachable: true, Role: "primary", Timeline: tl(3)},
			{Name: "dc1-b", Cluster: "primary", Reachable: true, Role: "standby", Upstream: "dc1-a", Timeline: tl(3),
				WalReceiver: &steps.WalReceiverStatus{Status: "streaming", ReceivedLSN: "0/B0405C8", ReplayLSN: "0/B0405C8"},
				Lag:         &steps.Lag{State: steps.LagStreaming, Primary: "dc1-a", PrimaryLSN: "0/B0405C8", Bytes: i64(0), ReceiveBytes: i64(0), Seconds: f64(0)}},
			{Name: "dc2-a", Cluster: "standby", Reachable: true, Role: "standby", Timeline: tl(3),
				WalReceiver: &steps.WalReceiverStatus{Status: "waiting", ReceivedLSN: "0/A000000", ReplayLSN: "0/9000000"},
				Lag:         &steps.Lag{State: steps.LagNotStreaming, Primary: "dc1-a", PrimaryLSN: "0/B0405C8", LastMessage: at(45 * time.Second)}},
			{Name: "dc2-b", Cluster: "standby", Reachable: false, Error: "connection refused",
				Lag: &steps.Lag{State: steps.LagUnknown, Primary: "dc1-a"}},
			{Name: "dc2-c", Cluster: "standby", Reachable: true, Role: "standby", Upstream: "dc2-a", Timeline: tl(2),
				WalReceiver: &steps.WalReceiverStatus{Status: "streaming", ReceivedLSN: "1/0", ReplayLSN: "0/FFFFFF00"},
				Lag:         &steps.Lag{State: steps.LagStreaming, Primary: "dc1-a", Bytes: i64(3 << 20), ReceiveBytes: i64(1 << 20), Seconds: f64(12.5)}},
		},
	}
}

func TestBuildMetrics(t *testing.T) {
	now := time.Date(2026, 11, 21, 6, 0, 0, 0, time.UTC)
	d := statusFixture(now)
	samples, _ := renderedSamples(t, d, "1.2.3")
	node := func(n string) map[string]string {
		return map[string]string{"pair": "dc1_dc2", "side": "standby", "node": n}
	}
	type want struct {
		name   string
		labels map[string]string
		values []float64 // nil: absent
	}
	lbl := func(kv ...string) map[string]string {
		m := map[string]string{"pair": "dc1_dc2", "side": "standby"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	with := func(m map[string]string, kv ...string) map[string]string {
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []want{
		{"sdr_info", lbl("version", "1.2.3", "state_file", "/var/lib/sdr/standby.db", "live", "true"), []float64{1}},
		{"sdr_dr_state", lbl("state", "restore"), []float64{1}},
		{"sdr_dr_state", lbl("state", "recovery"), []float64{0}},
		{"sdr_dr_state", lbl("state", "restore_fail"), []float64{0}},
		{"sdr_dr_state_since_timestamp_seconds", lbl(), []float64{float64(now.Add(-time.Minute).Unix())}},
		{"sdr_operation_in_progress", lbl("op", "start", "step", "7_build_standby"), []float64{1}},
		{"sdr_operation_step_started_timestamp_seconds", lbl("op", "start", "step", "7_build_standby"), []float64{float64(now.Add(-time.Minute).Unix())}},
		{"sdr_operation_progress_done_bytes", lbl("part", "dc2-b"), []float64{100 << 20}},
		{"sdr_operation_progress_total_bytes", lbl("part", "dc2-b"), []float64{400 << 20}},
		{"sdr_operation_progress_remaining_seconds", lbl("part", "dc2-b"), []float64{30}},
		{"sdr_operation_runs_total", lbl("op", "start"), []float64{2}},
		{"sdr_last_operation_timestamp_seconds", lbl(), nil}, // start is running
		{"sdr_node_reachable", node("dc2-b"), []float64{0}},
		{"sdr_node_reachable", node("dc2-a"), []float64{1}},
		{"sdr_node_in_recovery", node("dc1-a"), []float64{0}},
		{"sdr_node_in_recovery", node("dc2-c"), []float64{1}},
		{"sdr_node_in_recovery", node("dc2-b"), nil},
		{"sdr_dr_streaming", node("dc1-a"), nil},
		{"sdr_dr_streaming", node("dc1-b"), []float64{1}},
		{"sdr_dr_streaming", node("dc2-a"), []float64{0}},
		{"sdr_dr_streaming", node("dc2-b"), nil},
		{"sdr_dr_lag_bytes", node("dc1-b"), []float64{0}},
		{"sdr_dr_lag_bytes", node("dc2-a"), nil},
		{"sdr_dr_lag_bytes", node("dc2-b"), nil},
		{"sdr_dr_lag_bytes", with(node("dc2-c"), "cluster", "standby"), []float64{3 << 20}},
		{"sdr_dr_lag_seconds", node("dc2-c"), []float64{12.5}},
		{"sdr_dr_lag_seconds", node("dc2-a"), nil},
		{"sdr_dr_receive_lag_bytes", node("dc2-c"), []float64{1 << 20}},
		{"sdr_dr_timeline", node("dc1-a"), []float64{3}},
		{"sdr_dr_timeline", node("dc2-c"), []float64{2}},
		{"sdr_dr_timeline", node("dc2-b"), nil},
		{"sdr_dr_receive_lsn_bytes", node("dc2-c"), []float64{1 << 32}},
		{"sdr_dr_replay_lsn_bytes", node("dc2-c"), []float64{0xFFFFFF00}},
		{"sdr_dr_current_lsn_bytes", with(node("dc1-a"), "cluster", "primary"), []float64{0xB0405C8}},
		{"sdr_dr_current_lsn_bytes", node("dc2-a"), nil},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s%v", tc.name, tc.labels), func(t *testing.T) {
			got := find(samples, tc.name, tc.labels)
			if fmt.Sprint(got) != fmt.Sprint(tc.values) {
				t.Errorf("values %v, want %v", got, tc.values)
			}
		})
	}
	if n := len(find(samples, "sdr_dr_state", lbl())); n != len(workflow.SideStates(workflow.RoleStandby)) {
		t.Errorf("%d sdr_dr_state series, want one per standby state", n)
	}
}

func TestBuildMetricsIdleAndLastResult(t *testing.T) {
	now := time.Date(2026, 11, 21, 6, 0, 0, 0, time.UTC)
	at := func(ago time.Duration) *time.Time { t := now.Add(-ago); return &t }
	rec := func(complete bool, steps ...workflow.StepRecord) workflow.Record {
		r := workflow.Record{Workflow: "start/primary", Action: "start", Role: workflow.RolePrimary, RunID: "run-1", Runs: 1, Updated: *at(time.Hour), Complete: complete, Steps: steps}
		if complete {
			r.Finished = at(2 * time.Hour)
		}
		return r
	}
	tests := []struct {
		name   string
		rec    workflow.Record
		result string
		when   time.Time
	}{
		{"complete", rec(true, workflow.StepRecord{Name: "9_finish", Status: workflow.StatusDone}), "success", *at(2 * time.Hour)},
		{"failed", rec(false, workflow.StepRecord{Name: "8_wait_standby", Status: workflow.StatusFailed, Ended: at(3 * time.Hour), Error: &workflow.ErrorRecord{Type: "timeout"}}), "failed", *at(3 * time.Hour)},
		{"stopped by a signal", rec(false, workflow.StepRecord{Name: "8_wait_standby", Status: workflow.StatusFailed, Ended: at(4 * time.Hour), Error: &workflow.ErrorRecord{Type: "interrupted"}}), "interrupted", *at(4 * time.Hour)},
		{"killed: the time of the last record", rec(false, workflow.StepRecord{Name: "8_wait_standby", Status: workflow.StatusStarted, Interrupted: true}), "interrupted", *at(time.Hour)},
		{"no step ran", rec(false, workflow.StepRecord{Name: "1_prepare", Status: workflow.StatusPending}), "", time.Time{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := StatusDoc{Pair: "p", Role: workflow.RolePrimary, Live: "no config", Workflows: []workflow.Record{tc.rec}}
			samples, text := renderedSamples(t, d, "v")
			got := find(samples, "sdr_last_operation_timestamp_seconds", map[string]string{"op": "start"})
			switch {
			case tc.result == "" && len(got) != 0:
				t.Errorf("a last operation %v for a workflow that ran no step", got)
			case tc.result != "":
				v := find(samples, "sdr_last_operation_timestamp_seconds", map[string]string{"op": "start", "result": tc.result})
				if len(got) != 1 || len(v) != 1 || v[0] != float64(tc.when.Unix()) {
					t.Errorf("last operation %v (result %s: %v), want one at %d\n%s", got, tc.result, v, tc.when.Unix(), text)
				}
			}
			// Idle: in progress 0 with empty labels; a never-written side is normal; no node metrics without --config.
			if v := find(samples, "sdr_operation_in_progress", map[string]string{"op": "", "step": ""}); len(v) != 1 || v[0] != 0 {
				t.Errorf("in progress %v, want one 0", v)
			}
			if v := find(samples, "sdr_dr_state", map[string]string{"side": "primary", "state": "normal"}); len(v) != 1 || v[0] != 1 {
				t.Errorf("state normal %v, want 1 for a side with no state recorded", v)
			}
			if v := find(samples, "sdr_info", map[string]string{"live": "false"}); len(v) != 1 {
				t.Errorf("sdr_info without live=false")
			}
			for _, s := range samples {
				if strings.HasPrefix(s.name, "sdr_node_") || s.name == "sdr_dr_streaming" {
					t.Errorf("node metric %s without --config", s.name)
				}
			}
		})
	}
}

// TestMetricsPromtool checks the output with Prometheus's own parser and
// linter, `promtool check metrics`, when it is installed.
func TestMetricsPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian: apt-get install --no-install-recommends prometheus); the Go parser above still checks the format")
	}
	now := time.Now()
	for _, d := range []StatusDoc{statusFixture(now), {Pair: "p", Role: workflow.RolePrimary, Live: "no config"}} {
		var buf bytes.Buffer
		if err := writeFamilies(&buf, buildMetrics(d, "v")); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(buf.Bytes())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s\ninput:\n%s", err, out, buf.String())
		}
	}
}

// TestMetricsCommand drives `sdr metrics` with and without --textfile.
func TestMetricsCommand(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	cfg := localConfig(t, dir)
	state := filepath.Join(dir, "state.db")
	writeState(t, state, workflow.RoleStandby, true)
	now := time.Date(2026, 11, 21, 6, 0, 0, 0, time.UTC)
	probed := 0
	d := deps{now: func() time.Time { return now }, probe: func(context.Context, *cluster.Config) []steps.NodeStatus {
		probed++
		return statusFixture(now).Nodes
	}}

	code, stdout, stderr := runWith(t, d, "--state", state, "--config", cfg, "metrics")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	samples, err := parseProm(stdout)
	if err != nil || probed != 1 {
		t.Fatalf("%v (probed %d)\n%s", err, probed, stdout)
	}
	if v := find(samples, "sdr_dr_state", map[string]string{"side": "standby", "state": "backup_fail"}); len(v) != 1 || v[0] != 1 {
		t.Errorf("state from the file: %v\n%s", v, stdout)
	}
	if v := find(samples, "sdr_dr_lag_bytes", map[string]string{"node": "dc2-c"}); len(v) != 1 {
		t.Errorf("no live lag of dc2-c:\n%s", stdout)
	}

	tf := filepath.Join(dir, "textfile")
	if err := os.Mkdir(tf, 0o755); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = runWith(t, d, "--state", state, "metrics", "--textfile", tf)
	if code != ExitOK || stdout != "" {
		t.Fatalf("exit %d stdout %q: %s", code, stdout, stderr)
	}
	entries, _ := os.ReadDir(tf)
	if len(entries) != 1 || entries[0].Name() != "sdr_dc1_dc2_standby.prom" {
		t.Fatalf("textfile directory holds %v, want only sdr_dc1_dc2_standby.prom", entries)
	}
	p := filepath.Join(tf, entries[0].Name())
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseProm(string(raw)); err != nil {
		t.Errorf("textfile: %v", err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o644 {
		t.Errorf("textfile mode %v, want 0644 (node_exporter reads it as another user)", fi.Mode().Perm())
	}

	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"no state file", []string{"--state", filepath.Join(dir, "none.db"), "metrics"}, ExitNoState},
		{"textfile not a directory", []string{"--state", state, "metrics", "--textfile", p}, ExitUsage},
		{"textfile missing", []string{"--state", state, "metrics", "--textfile", filepath.Join(dir, "nope")}, ExitUsage},
		{"an argument", []string{"--state", state, "metrics", "x"}, ExitUsage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, _, stderr := runWith(t, d, tc.args...); code != tc.code {
				t.Errorf("exit %d, want %d: %s", code, tc.code, stderr)
			}
		})
	}
}

// TestMetricsDocumented: every family sdr writes is described in
// docs/metrics.md, and the example alert rules there are valid Prometheus
// rules (checked by promtool when it is installed).
func TestMetricsDocumented(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	for _, f := range buildMetrics(statusFixture(time.Now()), "v") {
		if !strings.Contains(doc, "| `"+f.name+"` |") {
			t.Errorf("%s is not in the tables of docs/metrics.md", f.name)
		}
	}
	m := regexp.MustCompile("(?s)## Example alert rules.*?```yaml\n(.*?)```").FindStringSubmatch(doc)
	if m == nil {
		t.Fatal("docs/metrics.md has no yaml block under \"Example alert rules\"")
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed: the example alert rules are not checked")
	}
	rules := filepath.Join(t.TempDir(), "rules.yml")
	if err := os.WriteFile(rules, []byte(m[1]), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", rules).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules on the example of docs/metrics.md: %v\n%s", err, out)
	}
}

// TestMetricsOfTwoFilesAfterRoleMoves: once a switchover has moved the
// roles and back, each cluster's state file holds a state for both sides
// and the records of both switchover halves. Exported side by side (one
// node_exporter, or one Prometheus), the two files' series never repeat
// one another, and no file repeats a series of its own.
func TestMetricsOfTwoFilesAfterRoleMoves(t *testing.T) {
	now := time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC)
	sides := []workflow.Side{{Role: workflow.RolePrimary, State: workflow.StateArchive, Since: now}, {Role: workflow.RoleStandby, State: workflow.StateRecovery, Since: now}}
	recs := func() []workflow.Record {
		var out []workflow.Record
		for _, k := range []string{"start/primary", "switchover/primary", "switchover/standby", "start/standby"} {
			action, role, _ := strings.Cut(k, "/")
			out = append(out, workflow.Record{Workflow: k, Action: action, Role: workflow.Role(role), Runs: 1, Complete: true, Finished: &now,
				Steps: []workflow.StepRecord{{Name: "1_prepare", Status: workflow.StatusDone}}})
		}
		return out
	}
	seen := map[string]string{}
	for _, d := range []StatusDoc{
		{Pair: "p", Role: workflow.RolePrimary, Cluster: "dc1", StateFile: "/var/lib/sdr/dc1.db", Live: "no config", Sides: sides, Workflows: recs()},
		{Pair: "p", Role: workflow.RoleStandby, Cluster: "dc2", StateFile: "/var/lib/sdr/dc2.db", Live: "no config", Sides: sides, Workflows: recs()},
	} {
		samples, _ := renderedSamples(t, d, "v")
		for _, s := range samples {
			var ls []string
			for k, v := range s.labels {
				ls = append(ls, k+"="+v)
			}
			sort.Strings(ls)
			key := s.name + "{" + strings.Join(ls, ",") + "}"
			if other, ok := seen[key]; ok {
				t.Errorf("%s exported by %s and by %s", key, other, d.Cluster)
			}
			seen[key] = d.Cluster
		}
	}
}

// renderedSamples writes d's metrics as the metrics command does and
// parses them back, failing on any text Prometheus would refuse.
func renderedSamples(t *testing.T, d StatusDoc, version string) ([]promSample, string) {
	t.Helper()
	var buf bytes.Buffer
	if err := writeFamilies(&buf, buildMetrics(d, version)); err != nil {
		t.Fatal(err)
	}
	samples, err := parseProm(buf.String())
	if err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	return samples, buf.String()
}

// Each standby's lag is measured against the primary's position read right
// after its own: the reference each standby's series carry makes
// reference − replay = lag hold per standby, where one primary-wide figure
// could not; the primary's own series is the latest reading. The text
// header names the range.
func TestLagReferencePerStandby(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	d := StatusDoc{Pair: "p", Role: workflow.RoleStandby, Live: "ok", Nodes: []steps.NodeStatus{
		{Name: "dc1-a", Cluster: "primary", Reachable: true, Role: "primary"},
		{Name: "dc2-a", Cluster: "standby", Reachable: true, Role: "standby",
			WalReceiver: &steps.WalReceiverStatus{Status: "streaming", ReceivedLSN: "0/4000000", ReplayLSN: "0/3FF0000"},
			Lag:         &steps.Lag{State: steps.LagStreaming, Primary: "dc1-a", PrimaryLSN: "0/4008000", Bytes: i64(0x18000), ReceiveBytes: i64(0x8000)}},
		{Name: "dc2-b", Cluster: "standby", Reachable: true, Role: "standby",
			WalReceiver: &steps.WalReceiverStatus{Status: "streaming", ReceivedLSN: "0/4010000", ReplayLSN: "0/4010000"},
			Lag:         &steps.Lag{State: steps.LagStreaming, Primary: "dc1-a", PrimaryLSN: "0/4010000", Bytes: i64(0), ReceiveBytes: i64(0)}},
	}}
	samples, text := renderedSamples(t, d, "1")
	val := func(name, node string) (float64, bool) {
		for _, s := range samples {
			if s.name == name && s.labels["node"] == node {
				return s.value, true
			}
		}
		return 0, false
	}
	for _, n := range []string{"dc2-a", "dc2-b"} {
		ref, ok1 := val("sdr_dr_lag_reference_lsn_bytes", n)
		replay, ok2 := val("sdr_dr_replay_lsn_bytes", n)
		lag, ok3 := val("sdr_dr_lag_bytes", n)
		if !ok1 || !ok2 || !ok3 || ref-replay != lag {
			t.Errorf("%s: reference %v (%v) - replay %v (%v) != lag %v (%v)\n%s", n, ref, ok1, replay, ok2, lag, ok3, text)
		}
	}
	if cur, ok := val("sdr_dr_current_lsn_bytes", "dc1-a"); !ok || cur != 0x4010000 {
		t.Errorf("the primary's current position %v (%v), want the latest reading 0/4010000", cur, ok)
	}
	var buf bytes.Buffer
	printNodes(&buf, d, time.Now())
	if !strings.Contains(buf.String(), "read right after each standby's own, 0/4008000 to 0/4010000") {
		t.Errorf("the header does not name the range of references:\n%s", buf.String())
	}
}

// The pair's slots: an inactive one and the WAL it keeps are in the
// metrics and in the text.
func TestSlotsInMetricsAndText(t *testing.T) {
	keeps := int64(7 << 20)
	d := StatusDoc{Pair: "p", Role: workflow.RoleStandby, Live: "ok", Nodes: []steps.NodeStatus{
		{Name: "dc1-a", Cluster: "primary", Reachable: true, Role: "primary",
			Slots: []steps.SlotStatus{{Name: "sdr_p_dc2_a_1", Active: false, WalStatus: "reserved", RetainedBytes: &keeps}}},
		{Name: "dc2-a", Cluster: "standby", Reachable: true, Role: "standby",
			Slots: []steps.SlotStatus{{Name: "sdr_p_dc2_b_2", Active: true}}},
	}}
	samples, text := renderedSamples(t, d, "1")
	want := map[string]float64{"sdr_slot_active/dc1-a": 0, "sdr_slot_retained_bytes/dc1-a": float64(keeps), "sdr_slot_active/dc2-a": 1}
	got := map[string]float64{}
	for _, s := range samples {
		if strings.HasPrefix(s.name, "sdr_slot_") {
			got[s.name+"/"+s.labels["node"]] = s.value
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("slot samples %v, want %v\n%s", got, want, text)
	}
	var buf bytes.Buffer
	printNodes(&buf, d, time.Now())
	if !regexp.MustCompile(`dc1-a\s+sdr_p_dc2_a_1\s+INACTIVE\s+7\.0 MiB\s+reserved`).MatchString(buf.String()) {
		t.Errorf("the text does not show the inactive slot and what it keeps:\n%s", buf.String())
	}
}

// Two nodes out of recovery: the metrics count them and the text warns.
func TestTwoPrimariesAreShown(t *testing.T) {
	d := StatusDoc{Pair: "p", Role: workflow.RoleStandby, Live: "ok", Primaries: []string{"dc1-a", "dc2-a"}, Nodes: []steps.NodeStatus{
		{Name: "dc1-a", Cluster: "primary", Reachable: true, Role: "primary"},
		{Name: "dc2-a", Cluster: "standby", Reachable: true, Role: "primary"},
		{Name: "dc2-b", Cluster: "standby", Reachable: true, Role: "standby"},
	}}
	samples, text := renderedSamples(t, d, "1")
	found := false
	for _, s := range samples {
		if s.name == "sdr_primaries" {
			found = s.value == 2
		}
	}
	if !found {
		t.Errorf("sdr_primaries is not 2:\n%s", text)
	}
	var buf bytes.Buffer
	printStatus(&buf, d, time.Now())
	if !strings.Contains(buf.String(), "WARNING: 2 nodes of the pair answer as primaries (dc1-a, dc2-a)") {
		t.Errorf("no warning:\n%s", buf.String())
	}
}

// A node that runs another cluster (before the first start, or made
// independent) is not a second primary of the pair.
func TestPairPrimariesByTheirSystem(t *testing.T) {
	nodes := []steps.NodeStatus{
		{Name: "dc1-a", Reachable: true, Role: "primary", SystemID: "1"},
		{Name: "dc1-b", Reachable: true, Role: "standby", SystemID: "1"},
		{Name: "dc2-a", Reachable: true, Role: "primary", SystemID: "2"},
		{Name: "dc2-b", Reachable: true, Role: "standby", SystemID: "1"},
	}
	if got := pairPrimaries(nodes); !reflect.DeepEqual(got, []string{"dc1-a"}) {
		t.Errorf("primaries %v, want only dc1-a", got)
	}
	nodes[2].SystemID = "1"
	if got := pairPrimaries(nodes); !reflect.DeepEqual(got, []string{"dc1-a", "dc2-a"}) {
		t.Errorf("primaries %v, want dc1-a and dc2-a", got)
	}
}
