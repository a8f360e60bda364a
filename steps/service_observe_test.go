package steps

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgsdr/sdr/cluster"
)

// observeService asks pg_ctl's, pg_ctlcluster's and systemd's status in
// its own probe; the answer must read as serviceRunning reads it alone.
func TestObserveServiceReadsTheStatusInItsProbe(t *testing.T) {
	cases := []struct {
		name    string
		exit    string // the status program's body
		want    bool
		wantErr string
	}{
		{"runs", "exit 0", true, ""},
		{"not running", "exit 3", false, ""},
		{"no data directory", "exit 4", false, ""},
		{"cannot run", "echo 'cannot execute: bad interpreter' >&2; exit 126", false, "bad interpreter"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			bin := filepath.Join(dir, "bin")
			if err := os.Mkdir(bin, 0o755); err != nil {
				t.Fatal(err)
			}
			// A stand-in pg_ctl that prints on stdout (which must not reach
			// the probe's output) and exits as asked.
			script := "#!/bin/sh\necho 'pg_ctl: server is running (PID: 1)'\n" + tc.exit + "\n"
			if err := os.WriteFile(filepath.Join(bin, "pg_ctl"), []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			e, n := readOnlyLocalEnv(t, cluster.Node{Name: "dc2-a", Host: "127.0.0.1", DataDir: filepath.Join(dir, "data"), BinDir: bin,
				Service: cluster.Service{Manager: cluster.ManagerPgCtl}})
			o, err := e.observeService(context.Background(), n, n.DataDir)
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "dc2-a") {
					t.Fatalf("err %v, want one naming dc2-a and %q", err, tc.wantErr)
				}
			case err != nil:
				t.Fatalf("observeService: %v", err)
			case o.ManagerRunning != tc.want:
				t.Fatalf("ManagerRunning %v, want %v", o.ManagerRunning, tc.want)
			}
		})
	}
}

func TestFoldedStatusWithoutACode(t *testing.T) {
	if _, err := foldedStatus(-1, ""); err == nil {
		t.Fatal("a probe that printed no exit code read as an answer")
	}
}

func TestParseBinAndDisk(t *testing.T) {
	df := "Filesystem     1024-blocks    Used Available Capacity Mounted on\n/dev/sda1        100000   40000     60000      40% /var/lib\n"
	rec := func(vrc, v, drc, d string) string {
		return "vrc=" + vrc + "\x00v=" + v + "\x00drc=" + drc + "\x00d=" + d + "\x00"
	}
	major, disk, err := parseBinAndDisk(rec("0", "postgres (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)", "0", df))
	if err != nil || major != 15 || disk.Free != 60000*1024 || disk.Mount != "/var/lib" || disk.Filesystem != "/dev/sda1" {
		t.Fatalf("got %d %+v %v", major, disk, err)
	}
	for name, tc := range map[string]struct{ out, want string }{
		"no postgres":   {rec("127", "sh: 1: /usr/lib/postgresql/15/bin/postgres: not found", "0", df), "not found"},
		"odd version":   {rec("0", "postgres 15", "0", df), "cannot read a version"},
		"df failed":     {rec("0", "postgres (PostgreSQL) 15.8", "1", "df: /nowhere: No such file or directory"), "No such file"},
		"cut short":     {"vrc=0\x00v=postgres (PostgreSQL) 15.8\x00", "printed"},
		"df unreadable": {rec("0", "postgres (PostgreSQL) 15.8", "0", "nothing"), "cannot read df output"},
	} {
		if _, _, err := parseBinAndDisk(tc.out); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want one saying %q", name, err, tc.want)
		}
	}
}

// binAndDisk's script runs through a read-only access (a plan runs it).
func TestBinAndDiskRunsReadOnly(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "postgres"), []byte("#!/bin/sh\necho 'postgres (PostgreSQL) 16.4'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	e, n := readOnlyLocalEnv(t, cluster.Node{Name: "dc2-a", Host: "127.0.0.1", DataDir: filepath.Join(dir, "data"), BinDir: bin})
	major, disk, err := e.binAndDisk(context.Background(), n)
	if err != nil || major != 16 || disk.Free <= 0 || disk.Node != "dc2-a" {
		t.Fatalf("got %d %+v %v", major, disk, err)
	}
}

// readOnlyLocalEnv is an Env whose one DR node, node, is reached through
// a read-only local access (the way a plan reaches nodes).
func readOnlyLocalEnv(t *testing.T, node cluster.Node) (*Env, *cluster.Node) {
	t.Helper()
	cfg := &cluster.Config{Name: "pair1", Standby: cluster.ClusterSpec{Main: node.Name, Nodes: []cluster.Node{node}}}
	cfg.Timeouts.Command.Duration = 10 * time.Second
	n := &cfg.Standby.Nodes[0]
	pool := cluster.OpenWith(cfg, nil, func(context.Context, *cluster.Config, *cluster.Node) (cluster.Access, error) {
		return cluster.ReadOnly(cluster.NewLocal(n)), nil
	})
	t.Cleanup(func() { pool.Close() })
	return &Env{Config: cfg, Pool: pool, Timeout: time.Second}, n
}

// observeService reads the postmaster's pid from postmaster.pid itself,
// so that it can run beside the probe of the data directory.
func TestObserveServiceReadsThePostmasterPid(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "pg_ctl"), []byte("#!/bin/sh\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	e, n := readOnlyLocalEnv(t, cluster.Node{Name: "dc2-a", Host: "127.0.0.1", DataDir: data, BinDir: bin,
		Service: cluster.Service{Manager: cluster.ManagerPgCtl}})
	for _, tc := range []struct {
		name, file string
		want       int
	}{
		{"no postmaster.pid", "", 0},
		{"a postmaster.pid", strconv.Itoa(os.Getpid()) + "\n" + data + "\n", os.Getpid()},
		{"a single-user backend's negative pid", "-4242\n" + data + "\n", 4242},
		{"garbage", "x1\n", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(filepath.Join(data, "postmaster.pid"))
			if tc.file != "" {
				if err := os.WriteFile(filepath.Join(data, "postmaster.pid"), []byte(tc.file), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			o, err := e.observeService(context.Background(), n, data)
			if err != nil || o.PID != tc.want || o.DataDir != data {
				t.Fatalf("PID %d, data dir %q, %v; want %d", o.PID, o.DataDir, err, tc.want)
			}
		})
	}
}
