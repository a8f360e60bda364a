package steps

import (
	"strings"
	"testing"

	"github.com/pgsdr/sdr/cluster"
)

func TestLayoutProblems(t *testing.T) {
	lay := nodeLayout{DataDir: "/pg/data", Work: "/pg/data.sdr"}
	parent := cluster.PathInfo{Path: "/pg", Exists: true, IsDir: true, RealPath: "/pg", Dev: 1, Mount: "/"}
	data := cluster.PathInfo{Path: "/pg/data", Exists: true, IsDir: true, RealPath: "/pg/data", Dev: 1, Mount: "/"}
	work := cluster.PathInfo{Path: "/pg/data.sdr", Exists: true, IsDir: true, RealPath: "/pg/data.sdr", Dev: 1, Mount: "/"}
	ts := []tsMap{{OID: "16384", Name: "one", Primary: "/ts/one", Live: "/ts/one.dc2-a"}}
	tsPaths := map[string]cluster.PathInfo{"/ts": {Exists: true, IsDir: true}, "/ts/one.dc2-a": {}}
	cases := []struct {
		name  string
		data  cluster.PathInfo
		work  cluster.PathInfo
		tss   []tsMap
		paths map[string]cluster.PathInfo
		says  string // "" for no problem
	}{
		{"plain layout", data, work, ts, tsPaths, ""},
		{"no work directory yet", data, cluster.PathInfo{}, nil, nil, ""},
		{"data_dir is a mount point", func() cluster.PathInfo { d := data; d.MountPoint, d.Mount = true, "/pg/data"; return d }(), work, nil, nil, "is a mount point"},
		{"work directory on another filesystem", data, func() cluster.PathInfo { w := work; w.Dev = 2; return w }(), nil, nil, "would copy"},
		{"work directory is a symlink", data, func() cluster.PathInfo { w := work; w.IsSymlink = true; return w }(), nil, nil, "not a plain directory"},
		{"tablespace parent missing", data, work, ts, map[string]cluster.PathInfo{}, "does not exist there"},
		{"tablespace location is a mount point", data, work, ts, map[string]cluster.PathInfo{"/ts": {Exists: true, IsDir: true}, "/ts/one.dc2-a": {MountPoint: true}}, "mount point"},
		{"tablespace inside the data directory", data, work, []tsMap{{Name: "in", Primary: "/pg/data/x", Live: "/pg/data/x.dc2-a"}},
			map[string]cluster.PathInfo{"/pg/data": {Exists: true, IsDir: true}}, "overlap"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := layoutProblems("dc2-a", lay, c.data, parent, c.work, c.tss, c.paths)
			if c.says == "" {
				if len(got) != 0 {
					t.Fatalf("want no problem, got %v", got)
				}
				return
			}
			if len(got) != 1 || !strings.Contains(got[0], c.says) || !strings.Contains(got[0], "dc2-a") {
				t.Fatalf("want one problem naming the node and %q, got %v", c.says, got)
			}
		})
	}
}
