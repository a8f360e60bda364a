package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgsdr/sdr/e2e/bed"
)

var (
	sdrBin   string // normal build
	sdrBinFP string // built with -tags failpoints
)

func TestMain(m *testing.M) {
	if os.Getenv("SDR_E2E") != "1" {
		fmt.Println("e2e: skipped (set SDR_E2E=1, or run make e2e)")
		os.Exit(m.Run())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	if err := bed.EnsurePackages(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: installing packages:", err)
		os.Exit(1)
	}
	cancel()
	tmp, err := os.MkdirTemp("", "sdr-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sdrBin, sdrBinFP = os.Getenv("SDR_BIN"), os.Getenv("SDR_BIN_FP")
	if sdrBin == "" {
		sdrBin = filepath.Join(tmp, "sdr")
		if out, err := exec.Command("go", "build", "-o", sdrBin, "../cmd/sdr").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: building sdr: %v\n%s", err, out)
			os.Exit(1)
		}
	}
	if sdrBinFP == "" {
		sdrBinFP = filepath.Join(tmp, "sdr-failpoints")
		if out, err := exec.Command("go", "build", "-tags", "failpoints", "-o", sdrBinFP, "../cmd/sdr").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: building sdr with failpoints: %v\n%s", err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

func needE2E(t *testing.T) {
	t.Helper()
	if os.Getenv("SDR_E2E") != "1" {
		t.Skip("end-to-end test: set SDR_E2E=1 (make e2e)")
	}
}

// newBed builds a test bed that is torn down after the test; when the
// test fails its directory and node logs are kept and printed.
func newBed(t *testing.T) *bed.Bed {
	t.Helper()
	return newBedWith(t, bed.Options{})
}

// startedBed is newBedWith with seedData at scale and both starts run
// together to completion: a streaming DR pair.
func startedBed(t *testing.T, opts bed.Options, scale int) *bed.Bed {
	t.Helper()
	b := newBedWith(t, opts)
	seedData(t, b, scale)
	if p, s := startBoth(t, b, "--timeout", "3m"); p.Code != 0 || s.Code != 0 {
		t.Fatalf("starts failed:\nprimary: %s\nstandby: %s", p, s)
	}
	return b
}

// promoteByHand promotes node with pg_ctl promote, as an operator would
// outside sdr, and waits until it runs out of recovery.
func promoteByHand(t *testing.T, b *bed.Bed, node string) {
	t.Helper()
	ctx := context.Background()
	if err := b.PGCtl(ctx, node, "promote", "-w"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, node+" promoted", func() (bool, string) {
		got, err := b.SQL(ctx, node, "SELECT pg_is_in_recovery()")
		return err == nil && got == "f", fmt.Sprint(got, err)
	})
}

// newBedWith is newBed with the bed's flavour and addressing in opts.
func newBedWith(t *testing.T, opts bed.Options) *bed.Bed {
	t.Helper()
	needE2E(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	opts.Log, opts.KeepOnFailure = t.Logf, true
	b, err := bed.New(ctx, opts)
	if err != nil {
		t.Fatalf("building the test bed: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("node logs:\n%s", b.NodeLogs())
			for _, f := range []string{b.LogFilePrimary, b.LogFileStandby} {
				if raw, err := os.ReadFile(f); err == nil {
					t.Logf("%s (tail):\n%s", f, tailLines(string(raw), 40))
				}
			}
		}
		if err := b.Close(t.Failed()); err != nil {
			t.Errorf("tearing down the bed: %v", err)
		}
	})
	return b
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// result is one run of the sdr binary.
type result struct {
	Code           int
	Stdout, Stderr string
	Took           time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("exit %d after %s\nstdout:\n%s\nstderr:\n%s", r.Code, r.Took.Round(time.Millisecond), r.Stdout, tailLines(r.Stderr, 60))
}

// side names the state and log files of one side of the bed.
type side struct {
	role, state, log string
}

func primarySide(b *bed.Bed) side { return side{"primary", b.StateFilePrimary, b.LogFilePrimary} }
func standbySide(b *bed.Bed) side { return side{"standby", b.StateFileStandby, b.LogFileStandby} }

// sdr runs the binary with env added to the environment.
func sdr(t *testing.T, bin string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := result{Stdout: stdout.String(), Stderr: stderr.String(), Took: time.Since(start)}
	if ee, ok := err.(*exec.ExitError); ok {
		r.Code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running sdr %v: %v", args, err)
	}
	return r
}

// start runs `sdr start` for one side with the bed's config.
func start(t *testing.T, b *bed.Bed, s side, extra ...string) result {
	t.Helper()
	return startWith(t, sdrBin, nil, b.ConfigPath, s, extra...)
}

func startWith(t *testing.T, bin string, env []string, config string, s side, extra ...string) result {
	t.Helper()
	args := append([]string{"--config", config, "--state", s.state, "--log-file", s.log, "start", "--role", s.role}, extra...)
	return sdr(t, bin, env, args...)
}

// startBoth runs both starts at the same time, as operators do.
func startBoth(t *testing.T, b *bed.Bed, extra ...string) (p, s result) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p = start(t, b, primarySide(b), extra...) }()
	go func() { defer wg.Done(); s = start(t, b, standbySide(b), extra...) }()
	wg.Wait()
	return p, s
}

// stepRec is one step record in `sdr status --json`.
type stepRec struct {
	Name        string `json:"name"`
	Status      string `json:"status"`
	Attempts    int    `json:"attempts"`
	Interrupted bool   `json:"interrupted"`
	Error       *struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

// statusDoc is the part of `sdr status --json` the tests read.
type statusDoc struct {
	Version int    `json:"version"`
	Pair    string `json:"pair"`
	Sides   []struct {
		Role  string `json:"role"`
		State string `json:"state"`
	} `json:"sides"`
	Workflows []struct {
		Workflow string    `json:"workflow"`
		Complete bool      `json:"complete"`
		Runs     int       `json:"runs"`
		Steps    []stepRec `json:"steps"`
	} `json:"workflows"`
	History []struct {
		From, To, Step string
	} `json:"history"`
	Nodes []struct {
		Name        string `json:"name"`
		Cluster     string `json:"cluster"`
		Reachable   bool   `json:"reachable"`
		Error       string `json:"error"`
		Role        string `json:"role"`
		Upstream    string `json:"upstream"`
		RunLock     string `json:"run_lock"`
		WalReceiver *struct {
			Status     string `json:"status"`
			SenderPort int    `json:"sender_port"`
		} `json:"wal_receiver"`
		Replication []struct {
			ApplicationName string `json:"application_name"`
			State           string `json:"state"`
		} `json:"replication"`
	} `json:"nodes"`
}

func (d statusDoc) state(role string) string {
	for _, s := range d.Sides {
		if s.Role == role {
			return s.State
		}
	}
	return ""
}

// status reads `sdr status --json` for one side (with live facts when config != "").
func status(t *testing.T, config string, s side) statusDoc {
	t.Helper()
	args := []string{"--state", s.state}
	if config != "" {
		args = append(args, "--config", config)
	}
	r := sdr(t, sdrBin, nil, append(args, "status", "--json", "--history", "0")...)
	if r.Code != 0 {
		t.Fatalf("sdr status: %s", r)
	}
	var d statusDoc
	if err := json.Unmarshal([]byte(r.Stdout), &d); err != nil {
		t.Fatalf("sdr status --json is not JSON: %v\n%s", err, r.Stdout)
	}
	return d
}

// sql runs a query on a bed node or fails the test.
func sql(t *testing.T, b *bed.Bed, node, query string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := b.SQL(ctx, node, query)
	if err != nil {
		t.Fatalf("on %s: %v", node, err)
	}
	return out
}

// eventually polls cond until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		ok, msg := cond()
		if ok {
			return
		}
		last = msg
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: not true after %s (last: %s)", what, timeout, last)
}
