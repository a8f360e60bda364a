package cluster

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestStatPathsConformance(t *testing.T) {
	runConformance(t, []conformanceCase{
		{"paths of every kind", func(t *testing.T, a Access, dir string) {
			full := filepath.Join(dir, "data")
			empty := filepath.Join(dir, "new")
			file := filepath.Join(dir, "it's a\nfile")
			link := filepath.Join(dir, "link")
			dangling := filepath.Join(dir, "dangling")
			missing := filepath.Join(dir, "missing", "x")
			os.Mkdir(full, 0o700)
			os.WriteFile(filepath.Join(full, ".hidden"), nil, 0o600)
			os.Mkdir(empty, 0o700)
			os.WriteFile(file, []byte("x"), 0o600)
			os.Symlink("data", link)
			os.Symlink(missing, dangling)
			asked := []string{full, empty, file, link + "/", dangling, missing, "/", "/dev/shm"}
			m, got, err := StatPaths(context.Background(), a, asked...)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(asked) {
				t.Fatalf("got %d infos for %d paths", len(got), len(asked))
			}
			id, _ := os.ReadFile("/etc/machine-id")
			host, _ := os.Hostname()
			if m.MachineID != strings.TrimSpace(string(id)) || m.Hostname != host {
				t.Errorf("machine %+v, want %q %q", m, id, host)
			}
			want := func(p, real string, isDir, isLink, empty, mountPoint bool, mount string) {
				t.Helper()
				pi := got[p]
				var st syscall.Stat_t
				if err := syscall.Stat(real, &st); err != nil {
					t.Fatal(err)
				}
				if pi.Path != p || !pi.Exists || pi.RealPath != real || pi.IsDir != isDir || pi.IsSymlink != isLink ||
					pi.Empty != empty || pi.MountPoint != mountPoint || pi.Mount != mount || pi.Dev != st.Dev || pi.Ino != st.Ino {
					t.Errorf("%q: got %+v\nwant real %s dir %v link %v empty %v mountpoint %v mount %s dev %d ino %d",
						p, pi, real, isDir, isLink, empty, mountPoint, mount, st.Dev, st.Ino)
				}
			}
			tmpMount := strings.TrimSpace(mustOutput(t, "stat", "-c", "%m", dir))
			want(full, full, true, false, false, false, tmpMount)
			want(empty, empty, true, false, true, false, tmpMount)
			want(file, file, false, false, false, false, tmpMount)
			want(link+"/", full, true, true, false, false, tmpMount) // a trailing slash does not hide the link
			want("/", "/", true, false, false, true, "/")
			want("/dev/shm", "/dev/shm", true, false, got["/dev/shm"].Empty, true, "/dev/shm")
			if pi := got[dangling]; pi.Exists || !pi.IsSymlink || pi.RealPath != "" {
				t.Errorf("dangling: %+v", pi)
			}
			if pi := got[missing]; pi != (PathInfo{Path: missing}) {
				t.Errorf("missing: %+v", pi)
			}
		}},
		{"a file through a linked directory, and names only globs starting with two dots find", func(t *testing.T, a Access, dir string) {
			d := filepath.Join(dir, "data")
			os.Mkdir(d, 0o700)
			os.WriteFile(filepath.Join(d, "f"), []byte("x"), 0o600)
			os.Symlink(d, filepath.Join(dir, "link"))
			dots := filepath.Join(dir, "dots")
			os.Mkdir(dots, 0o700)
			os.WriteFile(filepath.Join(dots, "..x"), nil, 0o600)
			dangling := filepath.Join(dir, "dangles")
			os.Mkdir(dangling, 0o700)
			os.Symlink(filepath.Join(dir, "nowhere"), filepath.Join(dangling, "l"))
			viaLink := filepath.Join(dir, "link", "f")
			_, got, err := StatPaths(context.Background(), a, viaLink, dots, dangling)
			if err != nil {
				t.Fatal(err)
			}
			if pi := got[viaLink]; !pi.Exists || pi.IsDir || pi.IsSymlink || pi.RealPath != filepath.Join(d, "f") {
				t.Errorf("file through a link: %+v", pi)
			}
			if pi := got[dots]; !pi.IsDir || pi.Empty {
				t.Errorf("directory holding ..x: %+v", pi)
			}
			if pi := got[dangling]; !pi.IsDir || pi.Empty {
				t.Errorf("directory holding a dangling symlink: %+v", pi)
			}
		}},
		{"a bind mount of the same filesystem is a mount point", func(t *testing.T, a Access, dir string) {
			src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
			os.Mkdir(src, 0o700)
			os.Mkdir(dst, 0o700)
			if err := exec.Command("mount", "--bind", src, dst).Run(); err != nil {
				t.Skipf("cannot bind-mount here: %v", err)
			}
			t.Cleanup(func() { exec.Command("umount", dst).Run() })
			_, got, err := StatPaths(context.Background(), a, dst, src)
			if err != nil {
				t.Fatal(err)
			}
			if pi := got[dst]; !pi.MountPoint || pi.Mount != dst {
				t.Errorf("bind mount: %+v", pi)
			}
			if pi := got[src]; pi.MountPoint {
				t.Errorf("its source: %+v", pi)
			}
		}},
		{"a symlink itself", func(t *testing.T, a Access, dir string) {
			os.Mkdir(filepath.Join(dir, "data"), 0o700)
			link := filepath.Join(dir, "link")
			os.Symlink(filepath.Join(dir, "data"), link)
			_, got, err := StatPaths(context.Background(), a, link)
			if err != nil {
				t.Fatal(err)
			}
			if pi := got[link]; !pi.IsSymlink || !pi.IsDir || pi.RealPath != filepath.Join(dir, "data") || !pi.Empty {
				t.Fatalf("got %+v", pi)
			}
		}},
		{"no paths: the machine only", func(t *testing.T, a Access, dir string) {
			m, got, err := StatPaths(context.Background(), a)
			if err != nil || m.MachineID == "" || m.Hostname == "" || len(got) != 0 {
				t.Fatalf("got %+v %v %v", m, got, err)
			}
		}},
		{"relative path refused", func(t *testing.T, a Access, dir string) {
			_, _, err := StatPaths(context.Background(), a, "data")
			if err == nil || !strings.Contains(err.Error(), `"data" is not absolute`) || !strings.Contains(err.Error(), "dc1-a") {
				t.Fatalf("got %v", err)
			}
		}},
	})
}

func mustOutput(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return string(out)
}

func TestPathRecords(t *testing.T) {
	cases := []struct {
		name    string
		out     string
		want    PathInfo
		wantErr string
	}{
		{"missing", "path=0\x00end=\x00", PathInfo{Path: "/p"}, ""},
		{"directory", "path=0\x00real=/d\x00dir=1\x00stat=5 7 /\x00pdev=5\x00empty=1\x00end=\x00",
			PathInfo{Path: "/p", Exists: true, IsDir: true, RealPath: "/d", Dev: 5, Ino: 7, Mount: "/", Empty: true}, ""},
		{"mount point by device", "path=0\x00real=/m\x00dir=1\x00stat=9 2 /m\x00pdev=5\x00end=\x00",
			PathInfo{Path: "/p", Exists: true, IsDir: true, RealPath: "/m", Dev: 9, Ino: 2, Mount: "/m", MountPoint: true}, ""},
		{"bind mount by mountinfo", "path=0\x00real=/b\x00dir=1\x00stat=5 3 /\x00pdev=5\x00end=\x00mounts=/\n/b\n/c\x00",
			PathInfo{Path: "/p", Exists: true, IsDir: true, RealPath: "/b", Dev: 5, Ino: 3, Mount: "/b", MountPoint: true}, ""},
		{"escaped mount point", "path=0\x00real=/a b\\c\x00dir=1\x00stat=5 3 /\x00pdev=5\x00end=\x00mounts=/\n/a\\040b\\134c\x00",
			PathInfo{Path: "/p", Exists: true, IsDir: true, RealPath: "/a b\\c", Dev: 5, Ino: 3, Mount: "/a b\\c", MountPoint: true}, ""},
		{"not among the mount points", "path=0\x00real=/b\x00dir=1\x00stat=5 3 /\x00pdev=5\x00end=\x00mounts=/\n/b/c\n/a b\x00",
			PathInfo{Path: "/p", Exists: true, IsDir: true, RealPath: "/b", Dev: 5, Ino: 3, Mount: "/"}, ""},
		{"stat of two lines cut short", "path=0\x00real=/d\x00stat=5 7 /x\ny\x00end=\x00", PathInfo{}, "stat of /d failed"},
		{"mount path with spaces", "path=0\x00real=/a b/c\x00stat=5 3 /a b\x00pdev=5\x00end=\x00",
			PathInfo{Path: "/p", Exists: true, RealPath: "/a b/c", Dev: 5, Ino: 3, Mount: "/a b"}, ""},
		{"stat failed", "path=0\x00real=/d\x00stat=stat: cannot stat '/d': Permission denied\x00pdev=5\x00end=\x00", PathInfo{}, "stat of /d failed"},
		{"unresolvable", "path=0\x00err=cannot resolve it\x00end=\x00", PathInfo{}, "it exists but cannot resolve it"},
		{"cut short", "path=0\x00real=/d\x00dir=1\x00stat=5 7 /\x00pdev=5\x00", PathInfo{}, "incomplete"},
		{"another path's report", "path=1\x00end=\x00", PathInfo{}, "lacks the path"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			recs, err := parseRecords([]byte(tc.out))
			if err != nil {
				t.Fatal(err)
			}
			r := newRecordReader(recs)
			got, err := r.pathInfo("0", "/p")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("want error containing %q, got %v", tc.wantErr, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v\nwant %+v", got, err, tc.want)
			}
		})
	}
}

func TestParseRecordsErrors(t *testing.T) {
	for name, out := range map[string]string{"unterminated": "a=1\x00b=2", "no equals sign": "a=1\x00b\x00"} {
		t.Run(name, func(t *testing.T) {
			if _, err := parseRecords([]byte(out)); err == nil {
				t.Fatal("want error")
			}
		})
	}
}
