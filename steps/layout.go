package steps

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"strings"

	"github.com/pgsdr/sdr/cluster"
)

// nodeLayout is where a DR node's directories really are. A data_dir
// that is a symlink is worked on at its real path, so that the new copy is
// built, and the old one kept, on the filesystem the data really lives on.
type nodeLayout struct {
	DataDir string // real path of data_dir
	Work    string // sdr's work directory beside it: <DataDir>.sdr
}

func (l nodeLayout) New() string         { return path.Join(l.Work, "new") }
func (l nodeLayout) NewComplete() string { return path.Join(l.Work, "new.complete") }
func (l nodeLayout) Old() string         { return path.Join(l.Work, "old") }
func (l nodeLayout) Saved() string       { return path.Join(l.Work, "saved") }
func (l nodeLayout) Trash() string       { return path.Join(l.Work, "trash") }
func (l nodeLayout) Lock() string        { return path.Join(l.Work, "lock") }
func (l nodeLayout) Pgpass() string      { return path.Join(l.Work, "pgpass") }
func (l nodeLayout) StandbyConf() string { return path.Join(l.Work, "standby.conf") }
func (l nodeLayout) LegacyBuilt() string { return path.Join(l.Work, "built") }
func (l nodeLayout) FanOutFIFO() string  { return path.Join(l.Work, "fanout.fifo") }

// Tag is the tag of the long commands sdr runs on this node's directories
// (cluster.RunLong): the work directory's path, readable ("/" as ":"),
// with a short hash that keeps it unique.
func (l nodeLayout) Tag() string {
	readable := strings.Map(func(r rune) rune {
		switch {
		case r == '/':
			return ':'
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune("_.@+,-", r):
			return r
		}
		return '_'
	}, l.Work)
	sum := sha256.Sum256([]byte(l.Work))
	return readable + "." + hex.EncodeToString(sum[:4])
}

// Kept is where a diverged data directory named by the operator is kept.
// sdr never deletes it.
func (l nodeLayout) Kept(copyID string) string {
	return path.Join(l.Work, "diverged-"+strings.NewReplacer("/", "-", ":", "-").Replace(copyID))
}

// keptTablespace is where the tablespace location live of a data
// directory kept aside (Kept) is kept: beside live, on its filesystem.
func keptTablespace(live, copyID string) string {
	return path.Join(live+".sdr", "diverged-"+strings.NewReplacer("/", "-", ":", "-").Replace(copyID))
}

// TrashName is a fresh name in the trash for something to be deleted.
func (l nodeLayout) TrashName(what, copyID string) string {
	return path.Join(l.Trash(), what+"-"+strings.NewReplacer("/", "-", ":", "-").Replace(copyID))
}

// layoutFromPaths derives the layout from the probe of data_dir and its
// parent: the real path when data_dir exists, else its resolved parent
// and its name.
func layoutFromPaths(dataDir string, self, parent cluster.PathInfo) nodeLayout {
	real := path.Clean(dataDir)
	switch {
	case self.Exists && self.RealPath != "":
		real = self.RealPath
	case parent.Exists && parent.RealPath != "":
		real = path.Join(parent.RealPath, path.Base(dataDir))
	}
	return nodeLayout{DataDir: real, Work: real + ".sdr"}
}

// configuredLayout is the layout of data_dir as configured: n's layout
// when no symlink leads to it.
func configuredLayout(n *cluster.Node) nodeLayout {
	d := path.Clean(n.DataDir)
	return nodeLayout{DataDir: d, Work: d + ".sdr"}
}

// layoutOf returns n's layout, probing the node once per run.
func (e *Env) layoutOf(ctx context.Context, n *cluster.Node) (nodeLayout, error) {
	return e.layouts.do(n.Name, func() (nodeLayout, error) {
		a, err := e.access(ctx, n)
		if err != nil {
			return nodeLayout{}, err
		}
		cctx, cancel := e.cmdCtx(ctx)
		defer cancel()
		_, infos, err := cluster.StatPaths(cctx, a, n.DataDir, path.Dir(n.DataDir))
		if err != nil {
			return nodeLayout{}, fmt.Errorf("while resolving data_dir %s on %s: %w", n.DataDir, n.Name, err)
		}
		return layoutFromPaths(n.DataDir, infos[n.DataDir], infos[path.Dir(n.DataDir)]), nil
	})
}

// tsMap is one tablespace of the primary as a DR node holds it.
type tsMap struct {
	OID      string
	Name     string
	Primary  string // its location on the primary
	Upstream string // its location on the node's upstream (the primary, or the main standby for a cascade)
	Live     string // its location on this node: beside the primary's, with the node's name
}

// tablespaceLocation is where DR node node keeps the tablespace whose
// location on the primary is loc: a per-node directory beside it.
func tablespaceLocation(loc, node string) string { return path.Clean(loc) + "." + node }

// tablespaceMaps maps the primary's tablespaces for node n whose upstream
// is up (the primary itself, or the main standby). Tablespaces inside the
// data directory (in-place, relative locations) need no mapping.
func tablespaceMaps(tss []tablespace, n, up string, upIsPrimary bool) []tsMap {
	var out []tsMap
	for _, t := range tss {
		if !path.IsAbs(t.Location) {
			continue
		}
		m := tsMap{OID: t.OID, Name: t.Name, Primary: t.Location, Upstream: t.Location, Live: tablespaceLocation(t.Location, n)}
		if !upIsPrimary {
			m.Upstream = tablespaceLocation(t.Location, up)
		}
		out = append(out, m)
	}
	return out
}

// tablespace is one row of the primary's pg_tablespace (not the built-in ones).
type tablespace struct {
	OID, Name, Location string
}

// tablespaceMappingArg is pg_basebackup's --tablespace-mapping value, with
// "=" in the paths escaped.
func tablespaceMappingArg(from, to string) string {
	esc := strings.NewReplacer(`=`, `\=`)
	return "--tablespace-mapping=" + esc.Replace(from) + "=" + esc.Replace(to)
}
