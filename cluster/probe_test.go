package cluster

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// fakePostmaster starts a sleeping process whose working directory is dir
// and, if pidFile is set, writes its pid there as PostgreSQL would.
func fakePostmaster(t *testing.T, dir string, pidFile bool) int {
	t.Helper()
	c := exec.Command("sleep", "60")
	c.Dir = dir
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	if pidFile {
		writePidFile(t, dir, c.Process.Pid)
	}
	return c.Process.Pid
}

func writePidFile(t *testing.T, dir string, pid int) {
	t.Helper()
	content := strconv.Itoa(pid) + "\n" + dir + "\n1700000000\n5432\n/tmp\n*\n  5432001         0\nready   \n"
	if err := os.WriteFile(filepath.Join(dir, "postmaster.pid"), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// deadPid is the pid of a process that has ended.
func deadPid(t *testing.T) int {
	t.Helper()
	c := exec.Command("true")
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	return c.Process.Pid
}

func TestProbeDataDirConformance(t *testing.T) {
	_, pgErr := os.Stat(filepath.Join(pgBinDir, "pg_controldata"))
	runConformance(t, []conformanceCase{
		{"missing directory", func(t *testing.T, a Access, dir string) {
			d := filepath.Join(dir, "data")
			p, err := ProbeDataDir(context.Background(), a, pgBinDir, d, []string{"postgresql.conf"}, []string{dir})
			if err != nil {
				t.Fatal(err)
			}
			if p.Machine.MachineID == "" || p.Dir.Exists || p.Dir.Path != d || p.Control != nil || p.ControlErr != "" ||
				p.PostmasterPIDFile || p.StandbySignal || len(p.Files) != 0 || len(p.Tablespaces) != 0 || !p.Extra[dir].IsDir {
				t.Fatalf("got %+v", p)
			}
		}},
		{"stopped standby with a stale postmaster.pid, tablespaces and files", func(t *testing.T, a Access, dir string) {
			d := filepath.Join(dir, "data")
			os.Mkdir(d, 0o700)
			controlDataDir(t, d)
			os.WriteFile(filepath.Join(d, "standby.signal"), nil, 0o600)
			pid := deadPid(t)
			writePidFile(t, d, pid)
			os.MkdirAll(filepath.Join(d, "pg_tblspc"), 0o700)
			os.Symlink("/srv/ts1=odd\nname", filepath.Join(d, "pg_tblspc", "16384"))
			os.Mkdir(filepath.Join(d, "pg_tblspc", "16390"), 0o700) // in place
			auto := []byte("primary_conninfo = 'x'\n\x00\xff\n'; echo $(no)\n")
			os.WriteFile(filepath.Join(d, "postgresql.auto.conf"), auto, 0o600)
			abs := filepath.Join(dir, "conf", "pg_hba.conf")
			os.Mkdir(filepath.Dir(abs), 0o700)
			os.WriteFile(abs, []byte("local all all peer\n"), 0o600)
			empty := filepath.Join(d, "empty")
			os.WriteFile(empty, nil, 0o600)
			p, err := ProbeDataDir(context.Background(), a, pgBinDir, d,
				[]string{"postgresql.auto.conf", abs, "missing.conf", "empty", "pg_tblspc"}, []string{filepath.Join(dir, "conf"), "/dev/shm"})
			if err != nil {
				t.Fatal(err)
			}
			if !p.Dir.Exists || !p.Dir.IsDir || p.Dir.RealPath != d {
				t.Errorf("Dir %+v", p.Dir)
			}
			if pgErr == nil {
				if p.Control == nil || p.Control.SystemID != "7710582882480885847" || p.Control.State != StateShutDown || p.ControlErr != "" {
					t.Errorf("Control %+v, ControlErr %q", p.Control, p.ControlErr)
				}
			} else if p.Control != nil || p.ControlErr == "" {
				t.Errorf("without pg_controldata: Control %+v, ControlErr %q", p.Control, p.ControlErr)
			}
			if !p.PostmasterPIDFile || p.PostmasterPID != pid || p.PostmasterAlive || !p.StandbySignal || p.RecoverySignal {
				t.Errorf("postmaster %v %d %v, signals %v %v", p.PostmasterPIDFile, p.PostmasterPID, p.PostmasterAlive, p.StandbySignal, p.RecoverySignal)
			}
			if len(p.Tablespaces) != 2 || p.Tablespaces["16384"] != "/srv/ts1=odd\nname" || p.Tablespaces["16390"] != "" {
				t.Errorf("Tablespaces %q", p.Tablespaces)
			}
			if len(p.Files) != 3 || string(p.Files["postgresql.auto.conf"]) != string(auto) ||
				string(p.Files[abs]) != "local all all peer\n" || p.Files["empty"] == nil || len(p.Files["empty"]) != 0 {
				t.Errorf("Files %q", p.Files)
			}
			if len(p.Extra) != 2 || !p.Extra[filepath.Join(dir, "conf")].IsDir || !p.Extra["/dev/shm"].MountPoint {
				t.Errorf("Extra %+v", p.Extra)
			}
		}},
		{"live postmaster, also through a symlink", func(t *testing.T, a Access, dir string) {
			d := filepath.Join(dir, "data")
			os.Mkdir(d, 0o700)
			pid := fakePostmaster(t, d, true)
			link := filepath.Join(dir, "link")
			os.Symlink(d, link)
			for _, p := range []string{d, link} {
				got, err := ProbeDataDir(context.Background(), a, pgBinDir, p, nil, nil)
				if err != nil {
					t.Fatal(err)
				}
				if got.PostmasterPID != pid || !got.PostmasterAlive || got.Control != nil || got.ControlErr != "" {
					t.Errorf("%s: %+v", p, got)
				}
			}
		}},
		{"live postmaster whose command name holds a newline and a parenthesis", func(t *testing.T, a Access, dir string) {
			d := filepath.Join(dir, "data")
			os.Mkdir(d, 0o700)
			// The kernel names the process after the program's file: "x) Z\n1 2",
			// whose first line alone would read as a zombie.
			sleep, err := exec.LookPath("sleep")
			if err != nil {
				t.Skip(err)
			}
			odd := filepath.Join(dir, "x) Z\n1 2")
			if err := os.Symlink(sleep, odd); err != nil {
				t.Fatal(err)
			}
			c := exec.Command(odd, "60")
			c.Dir = d
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Process.Kill(); c.Wait() })
			writePidFile(t, d, c.Process.Pid)
			got, err := ProbeDataDir(context.Background(), a, pgBinDir, d, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got.PostmasterPID != c.Process.Pid || !got.PostmasterAlive {
				t.Fatalf("got %+v", got)
			}
		}},
		{"reused pid: alive elsewhere", func(t *testing.T, a Access, dir string) {
			d := filepath.Join(dir, "data")
			os.Mkdir(d, 0o700)
			other := filepath.Join(dir, "other")
			os.Mkdir(other, 0o700)
			pid := fakePostmaster(t, other, false)
			writePidFile(t, d, pid)
			got, err := ProbeDataDir(context.Background(), a, pgBinDir, d, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got.PostmasterPID != pid || got.PostmasterAlive {
				t.Fatalf("got %+v", got)
			}
		}},
		{"garbled postmaster.pid", func(t *testing.T, a Access, dir string) {
			os.WriteFile(filepath.Join(dir, "postmaster.pid"), []byte("\n"), 0o600)
			got, err := ProbeDataDir(context.Background(), a, pgBinDir, dir, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !got.PostmasterPIDFile || got.PostmasterPID != 0 || got.PostmasterAlive {
				t.Fatalf("got %+v", got)
			}
		}},
		{"corrupt pg_control", func(t *testing.T, a Access, dir string) {
			if pgErr != nil {
				t.Skipf("PostgreSQL 15 is not installed here (%v)", pgErr)
			}
			os.MkdirAll(filepath.Join(dir, "global"), 0o700)
			os.WriteFile(filepath.Join(dir, "global", "pg_control"), []byte(strings.Repeat("garbage!", 1024)), 0o600)
			got, err := ProbeDataDir(context.Background(), a, pgBinDir, dir, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got.Control != nil || !strings.Contains(got.ControlErr, "CRC") {
				t.Fatalf("Control %+v, ControlErr %q", got.Control, got.ControlErr)
			}
		}},
		{"relative data directory refused", func(t *testing.T, a Access, dir string) {
			if _, err := ProbeDataDir(context.Background(), a, pgBinDir, "data", nil, nil); err == nil {
				t.Fatal("want error")
			}
		}},
	})
}
