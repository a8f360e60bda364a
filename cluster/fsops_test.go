package cluster

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// crossDeviceDir is a fresh directory on another filesystem than dir, or
// skips the test.
func crossDeviceDir(t *testing.T, dir string) string {
	t.Helper()
	var a, b syscall.Stat_t
	if syscall.Stat(dir, &a) != nil || syscall.Stat("/dev/shm", &b) != nil || a.Dev == b.Dev {
		t.Skipf("/dev/shm is missing or on the same filesystem as %s", dir)
	}
	other, err := os.MkdirTemp("/dev/shm", "sdr-xdev")
	if err != nil {
		t.Skipf("cannot write to /dev/shm: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(other) })
	return other
}

func TestRenameConformance(t *testing.T) {
	runConformance(t, []conformanceCase{
		{"renames in order, keeping inodes, links as links", func(t *testing.T, a Access, dir string) {
			d := filepath.Join(dir, "data")
			os.Mkdir(d, 0o700)
			os.WriteFile(filepath.Join(d, "PG_VERSION"), []byte("15\n"), 0o600)
			link := filepath.Join(dir, "link")
			os.Symlink("data", link)
			ino := inode(t, d)
			n, err := RenameAll(context.Background(), a, []string{d}, []Rename{
				{d, filepath.Join(dir, "old")},
				{link, filepath.Join(dir, "old-link")},
			})
			if err != nil || n != 2 {
				t.Fatalf("done %d, %v", n, err)
			}
			if exists(d) || exists(link) || inode(t, filepath.Join(dir, "old")) != ino {
				t.Fatal("not renamed in place")
			}
			if target, err := os.Readlink(filepath.Join(dir, "old-link")); err != nil || target != "data" {
				t.Fatalf("link: %q %v", target, err)
			}
		}},
		{"Renames makes directories first and removes files after", func(t *testing.T, a Access, dir string) {
			d := filepath.Join(dir, "data")
			os.Mkdir(d, 0o700)
			mark := filepath.Join(dir, "new.complete")
			os.WriteFile(mark, nil, 0o600)
			to := filepath.Join(dir, "trash", "sub", "data-1")
			n, err := Renames(context.Background(), a, RenamePlan{Idle: []string{d}, MakeDirs: []string{filepath.Dir(to)},
				Renames: []Rename{{d, to}}, RemoveAfter: []string{mark, filepath.Join(dir, "absent")}})
			if err != nil || n != 1 {
				t.Fatalf("done %d, %v", n, err)
			}
			if exists(d) || !exists(to) || exists(mark) {
				t.Fatalf("data %v, moved %v, mark %v; want moved and the mark removed", exists(d), exists(to), exists(mark))
			}
			// A failed rename removes nothing.
			os.WriteFile(mark, nil, 0o600)
			if _, err := Renames(context.Background(), a, RenamePlan{Renames: []Rename{{d, filepath.Join(dir, "elsewhere")}},
				RemoveAfter: []string{mark}}); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("missing source: %v, want ErrNotExist", err)
			}
			if !exists(mark) {
				t.Fatal("a failed rename removed the file meant for after it")
			}
			// A directory that cannot be made: nothing renamed.
			os.Mkdir(d, 0o700)
			os.WriteFile(filepath.Join(dir, "plain"), nil, 0o600)
			if n, err := Renames(context.Background(), a, RenamePlan{MakeDirs: []string{filepath.Join(dir, "plain", "x")},
				Renames: []Rename{{d, filepath.Join(dir, "plain", "x", "data")}}}); err == nil || n != 0 || !exists(d) {
				t.Fatalf("unmakeable directory: done %d, %v; data there %v", n, err, exists(d))
			}
		}},
		{"Renames points links before renaming, and only links", func(t *testing.T, a Access, dir string) {
			d := filepath.Join(dir, "data")
			os.MkdirAll(filepath.Join(d, "pg_tblspc"), 0o700)
			ts, kept := filepath.Join(dir, "ts"), filepath.Join(dir, "ts.sdr", "diverged-1")
			os.Mkdir(ts, 0o700)
			link, plain := filepath.Join(d, "pg_tblspc", "16384"), filepath.Join(d, "pg_tblspc", "16385")
			os.Symlink(ts, link)
			os.WriteFile(plain, nil, 0o600)
			// A link that points elsewhere is not this tablespace's: left alone.
			other := filepath.Join(d, "pg_tblspc", "16386")
			os.Symlink("/elsewhere", other)
			keptData := filepath.Join(dir, "data.sdr", "diverged-1")
			n, err := Renames(context.Background(), a, RenamePlan{Idle: []string{d}, MakeDirs: []string{filepath.Dir(kept), filepath.Dir(keptData)},
				Links:   []Link{{link, kept, ts}, {plain, kept, ts}, {filepath.Join(d, "pg_tblspc", "absent"), kept, ts}, {other, kept, ts}},
				Renames: []Rename{{ts, kept}, {d, keptData}}})
			if err != nil || n != 2 {
				t.Fatalf("done %d, %v", n, err)
			}
			if target, err := os.Readlink(filepath.Join(keptData, "pg_tblspc", "16384")); err != nil || target != kept {
				t.Fatalf("the kept directory's link: %q, %v; want %s", target, err, kept)
			}
			if fi, err := os.Lstat(filepath.Join(keptData, "pg_tblspc", "16385")); err != nil || !fi.Mode().IsRegular() {
				t.Fatalf("a file that is no link was changed: %v, %v", fi, err)
			}
			if exists(filepath.Join(keptData, "pg_tblspc", "absent")) {
				t.Fatal("a link was made where there was none")
			}
			if target, _ := os.Readlink(filepath.Join(keptData, "pg_tblspc", "16386")); target != "/elsewhere" {
				t.Fatalf("a link to somewhere else was changed: %q", target)
			}
			if left, _ := filepath.Glob(filepath.Join(keptData, "pg_tblspc", "*.sdr-tmp")); len(left) > 0 {
				t.Fatalf("temporary links left: %v", left)
			}
			// A link that cannot be set renames nothing.
			d2 := filepath.Join(dir, "data2")
			os.MkdirAll(filepath.Join(d2, "ro"), 0o700)
			os.Symlink(ts, filepath.Join(d2, "ro", "l"))
			os.Chmod(filepath.Join(d2, "ro"), 0o500)
			defer os.Chmod(filepath.Join(d2, "ro"), 0o700)
			if os.Geteuid() != 0 {
				if n, err := Renames(context.Background(), a, RenamePlan{Links: []Link{{filepath.Join(d2, "ro", "l"), kept, ts}},
					Renames: []Rename{{d2, filepath.Join(dir, "moved")}}}); err == nil || n != 0 || !exists(d2) {
					t.Fatalf("unsettable link: done %d, %v; data2 there %v", n, err, exists(d2))
				}
			}
		}},
		{"target exists: nothing moved", func(t *testing.T, a Access, dir string) {
			from := filepath.Join(dir, "new")
			os.Mkdir(from, 0o700)
			targets := map[string]func(p string){
				"file":          func(p string) { os.WriteFile(p, nil, 0o600) },
				"empty dir":     func(p string) { os.Mkdir(p, 0o700) },
				"non-empty dir": func(p string) { os.Mkdir(p, 0o700); os.WriteFile(filepath.Join(p, "x"), nil, 0o600) },
				"symlink":       func(p string) { os.Symlink("/nonexistent", p) },
			}
			for name, mk := range targets {
				to := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
				mk(to)
				n, err := RenameAll(context.Background(), a, nil, []Rename{{from, to}})
				if !errors.Is(err, ErrExist) || n != 0 || !strings.Contains(err.Error(), to) || !strings.Contains(err.Error(), "dc1-a") {
					t.Fatalf("%s: done %d, %v", name, n, err)
				}
				if !exists(from) || exists(filepath.Join(to, "new")) {
					t.Fatalf("%s: moved", name)
				}
			}
		}},
		{"stops at the first failure", func(t *testing.T, a Access, dir string) {
			for _, n := range []string{"a", "b", "c", "y"} {
				os.Mkdir(filepath.Join(dir, n), 0o700)
			}
			n, err := RenameAll(context.Background(), a, nil, []Rename{
				{filepath.Join(dir, "a"), filepath.Join(dir, "x")},
				{filepath.Join(dir, "b"), filepath.Join(dir, "y")},
				{filepath.Join(dir, "c"), filepath.Join(dir, "z")},
			})
			if !errors.Is(err, ErrExist) || n != 1 {
				t.Fatalf("done %d, %v", n, err)
			}
			if !exists(filepath.Join(dir, "x")) || !exists(filepath.Join(dir, "b")) || !exists(filepath.Join(dir, "c")) || exists(filepath.Join(dir, "z")) {
				t.Fatal("wrong renames done")
			}
		}},
		{"source missing", func(t *testing.T, a Access, dir string) {
			err := RenameNoReplace(context.Background(), a, filepath.Join(dir, "nope"), filepath.Join(dir, "x"))
			if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), filepath.Join(dir, "nope")) {
				t.Fatalf("got %v", err)
			}
		}},
		{"target directory missing", func(t *testing.T, a Access, dir string) {
			from := filepath.Join(dir, "data")
			os.Mkdir(from, 0o700)
			err := RenameNoReplace(context.Background(), a, from, filepath.Join(dir, "no", "data"))
			if !errors.Is(err, fs.ErrNotExist) || !exists(from) {
				t.Fatalf("got %v", err)
			}
		}},
		{"cross-device is refused, never copied", func(t *testing.T, a Access, dir string) {
			other := crossDeviceDir(t, dir)
			from := filepath.Join(dir, "data")
			os.Mkdir(from, 0o700)
			os.WriteFile(filepath.Join(from, "f"), []byte("x"), 0o600)
			for _, r := range []Rename{{from, filepath.Join(other, "data")}, {other, filepath.Join(dir, "shm")}} {
				err := RenameNoReplace(context.Background(), a, r.From, r.To)
				if !errors.Is(err, ErrCrossDevice) {
					t.Fatalf("%s -> %s: got %v", r.From, r.To, err)
				}
				if !exists(r.From) || exists(r.To) {
					t.Fatalf("%s -> %s: moved or copied", r.From, r.To)
				}
			}
		}},
		{"live postmaster in an idle dir: nothing moved", func(t *testing.T, a Access, dir string) {
			d := filepath.Join(dir, "data")
			os.Mkdir(d, 0o700)
			pid := fakePostmaster(t, d, true)
			n, err := RenameAll(context.Background(), a, []string{filepath.Join(dir, "other"), d}, []Rename{{d, filepath.Join(dir, "old")}})
			if !errors.Is(err, ErrInUse) || n != 0 || !strings.Contains(err.Error(), d) || !strings.Contains(err.Error(), strconv.Itoa(pid)) {
				t.Fatalf("done %d, %v", n, err)
			}
			if !exists(d) || exists(filepath.Join(dir, "old")) {
				t.Fatal("moved")
			}
		}},
		{"stale postmaster.pid does not block", func(t *testing.T, a Access, dir string) {
			d := filepath.Join(dir, "data")
			os.Mkdir(d, 0o700)
			writePidFile(t, d, deadPid(t))
			if n, err := RenameAll(context.Background(), a, []string{d}, []Rename{{d, filepath.Join(dir, "old")}}); err != nil || n != 1 {
				t.Fatalf("done %d, %v", n, err)
			}
		}},
		{"bad paths refused", func(t *testing.T, a Access, dir string) {
			for _, r := range []Rename{{"data", filepath.Join(dir, "x")}, {dir, "x"}, {"/", filepath.Join(dir, "root")}} {
				if err := RenameNoReplace(context.Background(), a, r.From, r.To); err == nil {
					t.Fatalf("%+v: want error", r)
				}
			}
		}},
	})
}

func TestRemoveTreeConformance(t *testing.T) {
	tree := func(t *testing.T, d string) {
		t.Helper()
		for _, p := range []string{"base/1", "base/5", "pg_wal/archive_status"} {
			if err := os.MkdirAll(filepath.Join(d, p), 0o700); err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(d, p, "f"), []byte("data"), 0o600)
		}
		os.WriteFile(filepath.Join(d, ".hidden"), nil, 0o600)
		os.WriteFile(filepath.Join(d, "..two dots"), nil, 0o600)
	}
	runConformance(t, []conformanceCase{
		{"removes through a new 0700 trash", func(t *testing.T, a Access, dir string) {
			d := filepath.Join(dir, "old")
			tree(t, d)
			trash := filepath.Join(dir, ".sdr-trash")
			if err := RemoveTree(context.Background(), a, d, trash); err != nil {
				t.Fatal(err)
			}
			if exists(d) {
				t.Fatal("dir still there")
			}
			fi, err := os.Stat(trash)
			if err != nil || fi.Mode().Perm() != 0o700 {
				t.Fatalf("trash %v %v", fi, err)
			}
			if ents, _ := os.ReadDir(trash); len(ents) != 0 {
				t.Fatalf("trash not emptied: %v", ents)
			}
		}},
		{"missing dir is fine, and finishes an earlier delete", func(t *testing.T, a Access, dir string) {
			trash := filepath.Join(dir, "trash")
			tree(t, filepath.Join(trash, "old.abc123", "old"))
			tree(t, filepath.Join(trash, ".x"))
			if err := RemoveTree(context.Background(), a, filepath.Join(dir, "missing"), trash); err != nil {
				t.Fatal(err)
			}
			if ents, _ := os.ReadDir(trash); len(ents) != 0 {
				t.Fatalf("trash not emptied: %v", ents)
			}
		}},
		{"EmptyTrash finishes what a killed removal left", func(t *testing.T, a Access, dir string) {
			trash := filepath.Join(dir, "trash")
			tree(t, filepath.Join(trash, "data.X1", "data"))
			if err := EmptyTrash(context.Background(), a, trash); err != nil {
				t.Fatal(err)
			}
			if ents, err := os.ReadDir(trash); err != nil || len(ents) != 0 {
				t.Fatalf("trash: %v %v", ents, err)
			}
			if err := EmptyTrash(context.Background(), a, filepath.Join(dir, "missing")); err != nil {
				t.Fatalf("missing trash: %v", err)
			}
		}},
		{"live postmaster: refused, nothing moved", func(t *testing.T, a Access, dir string) {
			d := filepath.Join(dir, "data")
			tree(t, d)
			pid := fakePostmaster(t, d, true)
			err := RemoveTree(context.Background(), a, d, filepath.Join(dir, "trash"))
			if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), strconv.Itoa(pid)) || !strings.Contains(err.Error(), d) {
				t.Fatalf("got %v", err)
			}
			if !exists(filepath.Join(d, "base", "1", "f")) {
				t.Fatal("touched")
			}
		}},
		{"trash on another filesystem: refused, nothing moved", func(t *testing.T, a Access, dir string) {
			other := crossDeviceDir(t, dir)
			d := filepath.Join(dir, "data")
			tree(t, d)
			err := RemoveTree(context.Background(), a, d, filepath.Join(other, "trash"))
			if !errors.Is(err, ErrCrossDevice) || !exists(filepath.Join(d, "base", "1", "f")) {
				t.Fatalf("got %v", err)
			}
			if ents, _ := os.ReadDir(filepath.Join(other, "trash")); len(ents) != 0 {
				t.Fatalf("left in trash: %v", ents)
			}
		}},
		{"a symlink is removed as a link", func(t *testing.T, a Access, dir string) {
			d := filepath.Join(dir, "real")
			tree(t, d)
			link := filepath.Join(dir, "data")
			os.Symlink(d, link)
			if err := RemoveTree(context.Background(), a, link, filepath.Join(dir, "trash")); err != nil {
				t.Fatal(err)
			}
			if exists(link) || !exists(filepath.Join(d, "base", "1", "f")) {
				t.Fatal("wrong thing removed")
			}
		}},
		{"refusals", func(t *testing.T, a Access, dir string) {
			d := filepath.Join(dir, "data")
			tree(t, d)
			os.WriteFile(filepath.Join(dir, "file"), nil, 0o600)
			pgdata := filepath.Join(dir, "pgdata")
			os.Mkdir(pgdata, 0o700)
			os.WriteFile(filepath.Join(pgdata, "PG_VERSION"), []byte("15\n"), 0o600)
			for name, trash := range map[string]string{
				"trash inside dir":           filepath.Join(d, "trash"),
				"trash is dir":               d,
				"trash is a file":            filepath.Join(dir, "file"),
				"trash is a data directory":  pgdata,
				"trash is a relative path":   "trash",
				"dir is the root filesystem": "",
			} {
				target := d
				if trash == "" {
					target, trash = "/", filepath.Join(dir, "trash")
				}
				if err := RemoveTree(context.Background(), a, target, trash); err == nil {
					t.Errorf("%s: want error", name)
				}
				if !exists(filepath.Join(d, "base", "1", "f")) || !exists(filepath.Join(pgdata, "PG_VERSION")) {
					t.Fatalf("%s: removed", name)
				}
			}
			if err := EmptyTrash(context.Background(), a, pgdata); err == nil || !exists(filepath.Join(pgdata, "PG_VERSION")) {
				t.Fatalf("EmptyTrash of a data directory: %v", err)
			}
		}},
	})
}

func TestRetireTreesConformance(t *testing.T) {
	tree := func(t *testing.T, d string) {
		t.Helper()
		for _, p := range []string{"base/1", "pg_wal"} {
			if err := os.MkdirAll(filepath.Join(d, p), 0o700); err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(d, p, "f"), []byte("data"), 0o600)
		}
		os.WriteFile(filepath.Join(d, ".hidden"), nil, 0o600)
	}
	// emptied waits, bounded, for the background deletion to finish.
	emptied := func(t *testing.T, trash string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			ents, err := os.ReadDir(trash)
			if err == nil && len(ents) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("trash %s not emptied in the background: %v %v", trash, ents, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	runConformance(t, []conformanceCase{
		{"moves every tree at once, then empties the trashes in the background", func(t *testing.T, a Access, dir string) {
			old, saved, missing := filepath.Join(dir, "old"), filepath.Join(dir, "saved"), filepath.Join(dir, "missing")
			ts := filepath.Join(dir, "ts.sdr", "old")
			tree(t, old)
			tree(t, saved)
			tree(t, ts)
			trash, tsTrash := filepath.Join(dir, "trash"), filepath.Join(dir, "ts.sdr", "trash")
			tree(t, filepath.Join(trash, "old.left", "old")) // what an earlier delete left
			file := filepath.Join(dir, "new.complete")
			os.WriteFile(file, nil, 0o600)
			err := RetireTrees(context.Background(), a, []Retire{{old, trash}, {saved, trash}, {missing, trash}, {ts, tsTrash}, {file, trash}})
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range []string{old, saved, ts, file} {
				if exists(d) {
					t.Fatalf("%s still there", d)
				}
			}
			emptied(t, trash)
			emptied(t, tsTrash)
		}},
		{"live postmaster: refused naming the directory, later trees untouched", func(t *testing.T, a Access, dir string) {
			d, after := filepath.Join(dir, "data"), filepath.Join(dir, "after")
			tree(t, d)
			tree(t, after)
			pid := fakePostmaster(t, d, true)
			err := RetireTrees(context.Background(), a, []Retire{{d, filepath.Join(dir, "trash")}, {after, filepath.Join(dir, "trash")}})
			if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), strconv.Itoa(pid)) || !strings.Contains(err.Error(), d) {
				t.Fatalf("got %v", err)
			}
			if !exists(filepath.Join(d, "base", "1", "f")) || !exists(filepath.Join(after, "base", "1", "f")) {
				t.Fatal("touched")
			}
		}},
		{"refusals", func(t *testing.T, a Access, dir string) {
			d := filepath.Join(dir, "data")
			tree(t, d)
			pgdata := filepath.Join(dir, "pgdata")
			os.Mkdir(pgdata, 0o700)
			os.WriteFile(filepath.Join(pgdata, "PG_VERSION"), []byte("15\n"), 0o600)
			for name, r := range map[string]Retire{
				"trash inside dir":          {d, filepath.Join(d, "trash")},
				"trash is dir":              {d, d},
				"trash is a data directory": {d, pgdata},
				"relative path":             {"data", filepath.Join(dir, "trash")},
				"the root filesystem":       {"/", filepath.Join(dir, "trash")},
			} {
				if err := RetireTrees(context.Background(), a, []Retire{r}); err == nil {
					t.Errorf("%s: want error", name)
				}
				if !exists(filepath.Join(d, "base", "1", "f")) || !exists(filepath.Join(pgdata, "PG_VERSION")) {
					t.Fatalf("%s: removed", name)
				}
			}
		}},
	})
}
