package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgsdr/sdr/e2e/bed"
)

// lagDoc is the part of `sdr status --json` that says how far each node
// is behind the primary.
type lagDoc struct {
	Nodes []lagNode `json:"nodes"`
}

type lagNode struct {
	Name        string `json:"name"`
	Reachable   bool   `json:"reachable"`
	Role        string `json:"role"`
	Upstream    string `json:"upstream"`
	WalReceiver *struct {
		Status string `json:"status"`
	} `json:"wal_receiver"`
	Lag *lagInfo `json:"lag"`
}

type lagInfo struct {
	State       string   `json:"state"`
	Primary     string   `json:"primary"`
	PrimaryLSN  string   `json:"primary_lsn"`
	Bytes       *int64   `json:"bytes"`
	Seconds     *float64 `json:"seconds"`
	SecondsFrom string   `json:"seconds_from"`
	Since       *string  `json:"since"`
}

func lagStatus(t *testing.T, b *bed.Bed, s side) (lagDoc, string) {
	t.Helper()
	r := sdr(t, sdrBin, nil, "--state", s.state, "--config", b.ConfigPath, "status", "--json")
	if r.Code != 0 {
		t.Fatalf("status --json: %s", r)
	}
	var d lagDoc
	if err := json.Unmarshal([]byte(r.Stdout), &d); err != nil {
		t.Fatalf("status --json: %v\n%s", err, r.Stdout)
	}
	return d, r.Stdout
}

func (d lagDoc) node(t *testing.T, name string) lagNode {
	t.Helper()
	for _, x := range d.Nodes {
		if x.Name == name {
			return x
		}
	}
	t.Fatalf("status has no node %s", name)
	return lagNode{}
}

// TestStatusLagCutLink: after a completed start, status measures every
// standby against the primary and names each upstream. Then the primary's
// walsender for the main standby is frozen (SIGSTOP) while the primary
// writes: status shows the main standby falling behind, then its receiver
// not streaming with the lag unknown (null), never 0. After the walsender
// is thawed, the main standby streams and catches up again.
func TestStatusLagCutLink(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := newBed(t)
	seedData(t, b, 1)
	if p, s := startBoth(t, b, "--timeout", "3m"); p.Code != 0 || s.Code != 0 {
		t.Fatalf("start:\nprimary: %s\nstandby: %s", p, s)
	}
	sd := standbySide(b)

	// Healthy pair: every standby streams and is measured against dc1-a;
	// each upstream is a node name (dc1-b streams over a Unix socket).
	eventually(t, time.Minute, "every standby streaming and caught up with dc1-a", func() (bool, string) {
		d, raw := lagStatus(t, b, sd)
		for _, n := range []string{bed.DC1B, bed.DC2A, bed.DC2B} {
			l := d.node(t, n).Lag
			if l == nil || l.State != "streaming" || l.Primary != bed.DC1A || l.Bytes == nil || *l.Bytes != 0 || l.Seconds == nil || l.Since == nil {
				return false, raw
			}
		}
		return true, ""
	})
	d, _ := lagStatus(t, b, sd)
	for n, want := range map[string]string{bed.DC1B: bed.DC1A, bed.DC2A: bed.DC1A, bed.DC2B: bed.DC2A} {
		if got := d.node(t, n).Upstream; got != want {
			t.Errorf("%s upstream %q, want %q", n, got, want)
		}
	}
	if l := d.node(t, bed.DC1A).Lag; l != nil {
		t.Errorf("the primary has a lag: %+v", l)
	}

	// Cut the link: freeze the walsender that feeds dc2-a. dc2-a notices
	// after wal_receiver_timeout, lowered to 3 s for the test.
	sql(t, b, bed.DC2A, "ALTER SYSTEM SET wal_receiver_timeout = '3s'")
	sql(t, b, bed.DC2A, "SELECT pg_reload_conf()")
	defer func() {
		sql(t, b, bed.DC2A, "ALTER SYSTEM RESET wal_receiver_timeout")
		sql(t, b, bed.DC2A, "SELECT pg_reload_conf()")
	}()
	slot := sql(t, b, bed.DC2A, "SELECT slot_name FROM pg_stat_wal_receiver")
	pidText := sql(t, b, bed.DC1A, fmt.Sprintf("SELECT active_pid FROM pg_replication_slots WHERE slot_name = '%s'", slot))
	pid, err := strconv.Atoi(pidText)
	if err != nil || pid <= 0 {
		t.Fatalf("walsender of slot %q on dc1-a: %q", slot, pidText)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozen := true
	defer func() {
		if frozen {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}()
	sql(t, b, bed.DC1A, "INSERT INTO dr_check SELECT g, md5(g::text) FROM generate_series(100001, 150000) g")

	// Never "0 behind" while dc1-a has WAL that dc2-a lacks: behind and
	// growing while the receiver still says streaming, then not streaming
	// with the lag unknown.
	var lastBytes int64 = -1
	eventually(t, 90*time.Second, "dc2-a not streaming with the lag unknown", func() (bool, string) {
		d, raw := lagStatus(t, b, sd)
		l := d.node(t, bed.DC2A).Lag
		if l == nil {
			t.Fatalf("dc2-a has no lag:\n%s", raw)
		}
		switch l.State {
		case "streaming":
			if l.Bytes == nil || *l.Bytes == 0 || *l.Bytes < lastBytes {
				t.Fatalf("dc2-a streams from a frozen walsender but shows %v bytes behind (before: %d):\n%s", show(l.Bytes), lastBytes, raw)
			}
			lastBytes = *l.Bytes
			return false, raw
		case "not_streaming":
			if l.Bytes != nil || l.Seconds != nil {
				t.Fatalf("dc2-a not streaming, lag %v bytes %v s, want unknown (null):\n%s", show(l.Bytes), l.Seconds, raw)
			}
			return true, ""
		}
		return false, raw
	})
	// The text says the same.
	txt := sdr(t, sdrBin, nil, "--state", sd.state, "--config", b.ConfigPath, "status")
	row := regexp.MustCompile(`\n\s+dc2-a\s+standby\s+standby\s+\S+\s+\S+\s+unknown\s+NOT STREAMING`)
	if txt.Code != 0 || !row.MatchString(txt.Stdout) {
		t.Errorf("status text does not show dc2-a not streaming with the lag unknown:\n%s", txt)
	}
	t.Logf("status with the link cut:\n%s", txt.Stdout)

	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	frozen = false
	eventually(t, 90*time.Second, "dc2-a streaming and caught up again", func() (bool, string) {
		d, raw := lagStatus(t, b, sd)
		l := d.node(t, bed.DC2A).Lag
		return l != nil && l.State == "streaming" && l.Bytes != nil && *l.Bytes == 0, raw
	})
	txt = sdr(t, sdrBin, nil, "--state", sd.state, "--config", b.ConfigPath, "status")
	t.Logf("status after the link is back:\n%s", txt.Stdout)
	if !strings.Contains(txt.Stdout, "streaming since") {
		t.Errorf("status text does not say since when dc2-a streams:\n%s", txt.Stdout)
	}

	// dc2's sshd frozen: status waits for its nodes up to the connect
	// timeout. The primary writes meanwhile; dc1-b, which replays at once,
	// must not look behind by what was written while status waited for the
	// unreachable nodes (the primary's position is read with the others).
	sshd, err := os.ReadFile(b.SSHPidFileDC2)
	if err != nil {
		t.Fatal(err)
	}
	spid, err := strconv.Atoi(strings.TrimSpace(string(sshd)))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(spid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = syscall.Kill(spid, syscall.SIGCONT) }()
	go func() {
		time.Sleep(2 * time.Second)
		_, _ = b.SQL(context.Background(), bed.DC1A, "CREATE TABLE written_while_status_waits AS SELECT g FROM generate_series(1, 1000) g")
	}()
	d, raw := lagStatus(t, b, sd)
	if err := syscall.Kill(spid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if n := d.node(t, bed.DC2A); n.Lag == nil || n.Lag.State != "unknown" {
		t.Errorf("dc2-a with its data centre's sshd frozen: lag %+v, want unknown\n%s", n.Lag, raw)
	}
	if l := d.node(t, bed.DC1B).Lag; l == nil || l.Bytes == nil || *l.Bytes != 0 {
		t.Errorf("dc1-b, caught up when probed, looks behind by what dc1-a wrote while status waited for dc2: %+v\n%s", l, raw)
	}
}

func show(p *int64) string {
	if p == nil {
		return "null"
	}
	return strconv.FormatInt(*p, 10)
}
