package steps

import (
	"context"
	"os"
	"path"
	"path/filepath"
	"testing"

	"github.com/pgsdr/sdr/cluster"
)

// The look at a data directory in 2_check_cluster learns the node's
// layout from its own probe: one probe where data_dir is its real path,
// a second at the real path where a symlink leads to it; either way the
// look is of the real path and the layout is kept for the run.
func TestLookAtDirLearnsTheLayout(t *testing.T) {
	base, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	mkdir := func(p string) {
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, name string) {
		if err := os.Symlink(target, name); err != nil {
			t.Fatal(err)
		}
	}
	mkdir(path.Join(base, "plain", "data"))
	mkdir(path.Join(base, "real", "data"))
	mkdir(path.Join(base, "elsewhere"))
	link(path.Join(base, "real", "data"), path.Join(base, "linked"))
	link(path.Join(base, "elsewhere"), path.Join(base, "parentlink"))

	for _, c := range []struct {
		name, dataDir, want string
		exists              bool
	}{
		{"data_dir is its real path", path.Join(base, "plain", "data"), path.Join(base, "plain", "data"), true},
		{"data_dir is a symlink", path.Join(base, "linked"), path.Join(base, "real", "data"), true},
		{"missing, under a symlinked parent", path.Join(base, "parentlink", "data"), path.Join(base, "elsewhere", "data"), false},
		{"missing, under a real parent", path.Join(base, "plain", "none"), path.Join(base, "plain", "none"), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, n := readOnlyLocalEnv(t, cluster.Node{Name: "dc2-a", DataDir: c.dataDir, BinDir: "/nonexistent/bin"})
			learn, ok := e.layouts.lead(n.Name)
			if !ok {
				t.Fatal("a fresh Env: not the layout's leader")
			}
			l := e.lookAtDir(context.Background(), n, remoteFacts{}, learn)
			if l.err != nil {
				t.Fatal(l.err)
			}
			if l.lay.DataDir != c.want || l.lay.Work != c.want+".sdr" {
				t.Errorf("layout %+v, want the data directory at %s", l.lay, c.want)
			}
			if l.o.Exists != c.exists || (c.exists && l.pr.Dir.RealPath != c.want) {
				t.Errorf("look: exists %v, real path %q; want %v, %q", l.o.Exists, l.pr.Dir.RealPath, c.exists, c.want)
			}
			for _, x := range []string{path.Dir(c.want), c.want + ".sdr"} {
				if _, ok := l.pr.Extra[x]; !ok {
					t.Errorf("the look did not examine %s (examined %v)", x, keys(l.pr.Extra))
				}
			}
			lay, err := e.layouts.do(n.Name, func() (nodeLayout, error) {
				t.Error("the layout was asked again")
				return nodeLayout{}, nil
			})
			if err != nil || lay != l.lay {
				t.Errorf("kept layout %+v, %v; want %+v", lay, err, l.lay)
			}
		})
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
