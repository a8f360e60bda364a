package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pgsdr/sdr/e2e/bed"
)

// Helpers of the failover and switchover sections: a DR pair set up by
// sdr start on a fresh bed, its topology, killing a data centre, and
// sdr's own records of a run.

// pairSetup is what setting up a pair took.
type pairSetup struct {
	LoadSeconds  float64 `json:"pgbench_init_s"`
	DBBytes      int64   `json:"db_bytes"`
	StartSeconds float64 `json:"sdr_start_s"` // both roles at once, on the fresh bed
	PostgreSQL   string  `json:"postgresql"`
}

// newPair builds a bed in dir ("" for a new /tmp/sdr-bench-*: a name of
// its own, apart from the test beds' /tmp/sdr-bed-*, which other people's
// clean-ups on a shared machine may remove), loads
// pgbench data at scale on dc1-a, creates the writing client's table and
// role, runs both sdr starts and waits until the DR pair streams and the
// DR side has the client's role. On error the bed is closed with its logs
// kept, and the error says where.
func newPair(ctx context.Context, o options, dir string) (*bed.Bed, pairSetup, error) {
	var ps pairSetup
	if dir == "" {
		d, err := os.MkdirTemp("/tmp", "sdr-bench-")
		if err != nil {
			return nil, ps, err
		}
		dir = d
	}
	b, err := bed.New(ctx, bed.Options{Dir: dir, Log: logf})
	if err != nil {
		return nil, ps, err
	}
	fail := func(err error) (*bed.Bed, pairSetup, error) {
		logs := b.NodeLogs()
		_ = b.Close(true)
		return nil, ps, fmt.Errorf("%w\n%s\n(bed kept in %s)", err, logs, b.Dir)
	}
	t := time.Now()
	if err := b.Pgbench(ctx, bed.DC1A, "-i", "-s", strconv.Itoa(o.scale), "-q"); err != nil {
		return fail(err)
	}
	ps.LoadSeconds = time.Since(t).Seconds()
	size, err := b.SQL(ctx, bed.DC1A, "SELECT sum(pg_database_size(oid)) FROM pg_database")
	if err != nil {
		return fail(err)
	}
	if ps.DBBytes, err = strconv.ParseInt(size, 10, 64); err != nil {
		return fail(fmt.Errorf("database size %q: %w", size, err))
	}
	if ps.PostgreSQL, err = b.SQL(ctx, bed.DC1A, "SHOW server_version"); err != nil {
		return fail(err)
	}
	for _, q := range writerSetupSQL {
		if _, err := b.SQL(ctx, bed.DC1A, q); err != nil {
			return fail(err)
		}
	}
	t = time.Now()
	type res struct {
		p   proc
		err error
	}
	ch := make(chan res, 2)
	for _, s := range []struct{ role, state, log string }{
		{"primary", b.StateFilePrimary, b.LogFilePrimary}, {"standby", b.StateFileStandby, b.LogFileStandby},
	} {
		go func() {
			p, err := runProc(ctx, b.Dir, o.sdr, "--config", b.ConfigPath, "--state", s.state, "--log-file", s.log,
				"start", "--role", s.role, "--timeout", o.timeout.String())
			ch <- res{p, err}
		}()
	}
	for i := 0; i < 2; i++ {
		r := <-ch
		if r.err == nil && r.p.code != 0 {
			r.err = fmt.Errorf("sdr start failed:\n%s", r.p)
		}
		if r.err != nil {
			<-ch
			return fail(r.err)
		}
	}
	ps.StartSeconds = time.Since(t).Seconds()
	if err := waitPairTopology(ctx, b, bed.ClusterDC1, 2*time.Minute); err != nil {
		return fail(err)
	}
	for _, n := range []string{bed.DC2A, bed.DC2B} {
		if err := waitSQL(ctx, b, n, "SELECT count(*) FROM pg_roles WHERE rolname = '"+writerRole+"'", "1", time.Minute); err != nil {
			return fail(err)
		}
	}
	return b, ps, nil
}

// clusterNodes returns a cluster's first node (its primary, or its main
// standby on the DR side) and its second (always a standby of the first).
func clusterNodes(cluster string) (a, second string) {
	if cluster == bed.ClusterDC2 {
		return bed.DC2A, bed.DC2B
	}
	return bed.DC1A, bed.DC1B
}

func otherCluster(cluster string) string {
	if cluster == bed.ClusterDC2 {
		return bed.ClusterDC1
	}
	return bed.ClusterDC2
}

// waitPairTopology waits until primary's first node is a primary, the
// other cluster's first node streams from it, and each cluster's second
// node streams from its first, all on the primary's timeline.
func waitPairTopology(ctx context.Context, b *bed.Bed, primary string, timeout time.Duration) error {
	pa, pb := clusterNodes(primary)
	sa, sb := clusterNodes(otherCluster(primary))
	deadline := time.Now().Add(timeout)
	var tli string
	for {
		got, err := b.SQL(ctx, pa, "SELECT CASE WHEN pg_is_in_recovery() THEN 'recovery' "+
			"ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int::text END")
		if err == nil && got != "recovery" {
			tli = got
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s is not a primary after %s: %q %v", pa, timeout, got, err)
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	for _, c := range []struct{ node, up string }{{sa, pa}, {pb, pa}, {sb, sa}} {
		want := fmt.Sprintf("streaming %d %s", b.Node(c.up).Port, tli)
		q := "SELECT coalesce((SELECT status || ' ' || sender_port || ' ' || received_tli FROM pg_stat_wal_receiver), 'none')"
		if err := waitSQL(ctx, b, c.node, q, want, time.Until(deadline)); err != nil {
			return fmt.Errorf("%s does not stream from %s on timeline %s: %w", c.node, c.up, tli, err)
		}
	}
	return nil
}

// waitSQL waits until query on node returns want.
func waitSQL(ctx context.Context, b *bed.Bed, node, query, want string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		got, err := b.SQL(ctx, node, query)
		if err == nil && got == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("on %s: %q (error %v), want %q after %s", node, got, err, want, timeout)
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// killDC takes a data centre down as a disaster would: its PostgreSQL
// servers die at once (SIGKILL to each postmaster and its children) and
// its sshd, with every session, goes away. The killed servers' pid files
// are removed once they are gone, so that closing the bed later does not
// signal whatever process has taken their pids since.
func killDC(b *bed.Bed, cluster string) error {
	a, second := clusterNodes(cluster)
	var killed []int
	for _, n := range []string{a, second} {
		pids, err := postmasterAndChildren(b.Node(n).DataDir)
		if err != nil {
			return fmt.Errorf("while killing %s: %w", n, err)
		}
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		killed = append(killed, pids...)
	}
	if err := b.StopSSHD(cluster); err != nil {
		return err
	}
	if !waitGone(killed, 10*time.Second) {
		return fmt.Errorf("the PostgreSQL servers of %s do not die", cluster)
	}
	for _, n := range []string{a, second} {
		if err := os.Remove(filepath.Join(b.Node(n).DataDir, "postmaster.pid")); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	return nil
}

// freezeDC makes a data centre hang, as one whose network silently drops
// packets looks to a client that has no answer yet: SIGSTOP to its
// PostgreSQL servers (postmaster and children) and to its sshd and its
// sessions. The kernel still completes TCP handshakes on their listening
// sockets, but no server ever answers, so every client waits for its own
// timeout. thaw (SIGKILL, then as killDC) ends them.
func freezeDC(b *bed.Bed, cluster string) (thaw func() error, err error) {
	a, second := clusterNodes(cluster)
	var frozen []int
	for _, n := range []string{a, second} {
		pids, err := postmasterAndChildren(b.Node(n).DataDir)
		if err != nil {
			return nil, fmt.Errorf("while freezing %s: %w", n, err)
		}
		frozen = append(frozen, pids...)
	}
	pidFile := b.SSHPidFile
	if cluster == bed.ClusterDC2 {
		pidFile = b.SSHPidFileDC2
	}
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		return nil, err
	}
	sshd, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", pidFile, err)
	}
	frozen = append(frozen, sshd)
	frozen = append(frozen, descendantsOf(sshd)...)
	for _, p := range frozen {
		_ = syscall.Kill(p, syscall.SIGSTOP)
	}
	return func() error {
		for _, p := range frozen {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		if !waitGone(frozen, 10*time.Second) {
			return fmt.Errorf("the frozen processes of %s do not die", cluster)
		}
		_ = os.Remove(pidFile)
		for _, n := range []string{a, second} {
			if err := os.Remove(filepath.Join(b.Node(n).DataDir, "postmaster.pid")); err != nil && !os.IsNotExist(err) {
				return err
			}
		}
		return nil
	}, nil
}

// waitGone waits until none of pids exists any more.
func waitGone(pids []int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		alive := false
		for _, p := range pids {
			if _, err := os.Stat("/proc/" + strconv.Itoa(p) + "/stat"); err == nil {
				if st, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/stat"); err == nil && !isZombie(st) {
					alive = true
					break
				}
			}
		}
		if !alive {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func isZombie(stat []byte) bool {
	s := string(stat)
	i := strings.LastIndex(s, ")")
	f := strings.Fields(s[i+1:])
	return i >= 0 && len(f) > 0 && f[0] == "Z"
}

// descendantsOf lists the descendants of pid, from /proc.
func descendantsOf(pid int) []int {
	children := map[int][]int{}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, s := range stats {
		data, err := os.ReadFile(s)
		if err != nil {
			continue
		}
		rest := string(data)
		i := strings.LastIndex(rest, ")")
		if i < 0 {
			continue
		}
		f := strings.Fields(rest[i+1:])
		if len(f) < 2 {
			continue
		}
		pp, err1 := strconv.Atoi(f[1])
		p, err2 := strconv.Atoi(filepath.Base(filepath.Dir(s)))
		if err1 == nil && err2 == nil {
			children[pp] = append(children[pp], p)
		}
	}
	var out []int
	todo := []int{pid}
	for len(todo) > 0 {
		p := todo[0]
		todo = todo[1:]
		for _, c := range children[p] {
			out = append(out, c)
			todo = append(todo, c)
		}
	}
	return out
}

// postmasterAndChildren reads a running data directory's postmaster pid
// and finds its children in /proc.
func postmasterAndChildren(dataDir string) ([]int, error) {
	raw, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return nil, err
	}
	pm, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(raw), "\n", 2)[0]))
	if err != nil {
		return nil, fmt.Errorf("postmaster.pid of %s: %w", dataDir, err)
	}
	pids := []int{pm}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, s := range stats {
		data, err := os.ReadFile(s)
		if err != nil {
			continue
		}
		rest := string(data)
		i := strings.LastIndex(rest, ")")
		if i < 0 {
			continue
		}
		f := strings.Fields(rest[i+1:]) // state ppid ...
		if len(f) > 1 && f[1] == strconv.Itoa(pm) {
			if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(s))); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids, nil
}

// logEvent is one line of sdr's JSON log file.
type logEvent struct {
	At     time.Time
	Msg    string
	Fields map[string]any
}

// fileSize is the size of path, 0 when it does not exist: where the lines
// of the next run begin.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// readLogEvents reads sdr's JSON log lines from offset on.
func readLogEvents(path string, offset int64) ([]logEvent, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil, err
	}
	return parseLogEvents(f)
}

func parseLogEvents(r io.Reader) ([]logEvent, error) {
	var out []logEvent
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			continue // not a JSON line
		}
		ts, _ := m["time"].(string)
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			continue
		}
		msg, _ := m["msg"].(string)
		out = append(out, logEvent{At: at, Msg: msg, Fields: m})
	}
	return out, sc.Err()
}

// promotedEvent finds sdr's "main standby promoted" line: when pg_promote
// returned, and how long it took (so when it was called).
func promotedEvent(evs []logEvent) (called, returned time.Time, ok bool) {
	for _, e := range evs {
		if e.Msg != "main standby promoted" {
			continue
		}
		took, _ := e.Fields["took"].(string)
		d, err := time.ParseDuration(took)
		if err != nil {
			return time.Time{}, time.Time{}, false
		}
		return e.At.Add(-d), e.At, true
	}
	return time.Time{}, time.Time{}, false
}

// firstEvent is the time of the first line whose message is msg.
func firstEvent(evs []logEvent, msg string) (time.Time, bool) {
	for _, e := range evs {
		if e.Msg == msg {
			return e.At, true
		}
	}
	return time.Time{}, false
}

// stepOffset is one step of an sdr run, relative to the start of the
// measurement.
type stepOffset struct {
	Name  string  `json:"name"`
	Start float64 `json:"start_s"` // seconds after the measurement began
	Took  float64 `json:"took_s"`
}

func stepOffsets(steps []stepTime, t0 time.Time) []stepOffset {
	out := make([]stepOffset, 0, len(steps))
	for _, s := range steps {
		if s.start.IsZero() {
			continue
		}
		out = append(out, stepOffset{Name: s.Name, Start: s.start.Sub(t0).Seconds(), Took: s.Seconds})
	}
	return out
}

// stepOffsetStats sums up the step offsets of several runs, by name, in
// the order they first appear.
type stepOffsetStats struct {
	Name  string `json:"name"`
	Start Stats  `json:"start"`
	Took  Stats  `json:"took"`
}

func summariseSteps(runs [][]stepOffset) []stepOffsetStats {
	var order []string
	starts, tooks := map[string][]time.Duration{}, map[string][]time.Duration{}
	for _, r := range runs {
		for _, s := range r {
			if _, ok := starts[s.Name]; !ok {
				order = append(order, s.Name)
			}
			starts[s.Name] = append(starts[s.Name], secs(s.Start))
			tooks[s.Name] = append(tooks[s.Name], secs(s.Took))
		}
	}
	out := make([]stepOffsetStats, 0, len(order))
	for _, n := range order {
		out = append(out, stepOffsetStats{Name: n, Start: summarise(starts[n]), Took: summarise(tooks[n])})
	}
	return out
}

// since is t - t0 in seconds, or -1 when t is unknown.
func since(t, t0 time.Time) float64 {
	if t.IsZero() {
		return -1
	}
	return t.Sub(t0).Seconds()
}

// runAsPostgres runs a PostgreSQL program as the postgres OS user
// directly (no runuser, no shell), so that what it takes is the program's
// own time.
func runAsPostgres(ctx context.Context, dir, name string, args ...string) error {
	uid, gid, err := postgresIDs()
	if err != nil {
		return err
	}
	cmd := newPostgresCmd(ctx, dir, uid, gid, name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", filepath.Base(name), strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func newPostgresCmd(ctx context.Context, dir string, uid, gid int, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + bed.BinDir + ":/usr/bin:/bin", "HOME=/var/lib/postgresql", "LANG=C.UTF-8", "LC_ALL=C.UTF-8"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}
