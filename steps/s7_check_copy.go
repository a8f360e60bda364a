package steps

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strings"

	"go.uber.org/zap"

	"github.com/pgsdr/sdr/cluster"
)

// checkCopy proves, before the swap, that the configured copy in
// <work>/new would start as this node's standby with the configuration
// the node's service manager gives it: postgres -C reads that
// configuration with the copy as the data directory (config_dir's
// postgresql.conf, or the copy's own), and checkCopyConfig decides. It
// starts nothing and changes nothing; a problem stops the rebuild before
// the node's data directory is touched.
//
// After a rewind, newDir is the data directory itself, configured in place.
func (b *nodeBuild) checkCopy(ctx context.Context, newDir string) error {
	conf, err := b.e.confOf(ctx, b.n)
	if err != nil {
		return err
	}
	f := features(pgVersion(b.p.VersionNum))
	confDir, override := b.copyConfDir(newDir)
	cctx, cancel := b.e.cmdCtx(ctx)
	defer cancel()
	hbaFile, identFile := inCopy(conf.HbaFile, b.n, b.lay, newDir), inCopy(conf.IdentFile, b.n, b.lay, newDir)
	// Settings read while the copy was configured are not asked again
	// unless configuring may have changed them (copyCheckAfter).
	names, keep := f.copySettings(), cluster.Settings{}
	if p := b.pre; p != nil && p.dir == newDir {
		if after, ok := copyCheckAfter(names, p); ok {
			names, keep = after, p.s
		}
	}
	// The files the copy should start with are looked at while postgres
	// -C reads its settings; files the settings name otherwise are looked
	// at after.
	var s cluster.Settings
	var seen map[string]cluster.PathInfo
	if err := together(
		func() (err error) {
			s, err = cluster.ShowSettings(cctx, b.a, b.n.BinDir, confDir, override, names)
			if err == nil {
				s = mergeSettings(keep, s)
			}
			return err
		},
		func() error {
			_, infos, err := cluster.StatPaths(cctx, b.a, hbaFile, identFile)
			if err == nil {
				seen = infos
			}
			return nil // looked at again below
		},
	); err != nil {
		return err
	}
	if s.Values["ssl"] == "on" {
		files, err := cluster.ShowSettings(cctx, b.a, b.n.BinDir, confDir, override, sslFileSettings)
		if err != nil {
			return err
		}
		for k, v := range files.Values {
			s.Values[k] = v
		}
		for k, v := range files.Errors {
			s.Errors[k] = v
		}
	}
	o := copyObs{Settings: s, Exists: map[string]bool{}}
	if b.n.SeparateConfig() {
		live, err := cluster.ShowSettings(cctx, b.a, b.n.BinDir, b.n.ConfigDir, "", []string{"data_directory"})
		if err != nil {
			return err
		}
		o.LiveDataDirectory = live.Values["data_directory"]
	}
	var list []string
	for _, p := range copyPaths(s, newDir) {
		if pi, ok := seen[p]; ok {
			o.Exists[p] = pi.Exists
		} else {
			list = append(list, p)
		}
	}
	if len(list) > 0 {
		sort.Strings(list)
		_, infos, err := cluster.StatPaths(cctx, b.a, list...)
		if err != nil {
			return fmt.Errorf("while checking the files the new copy of %s needs: %w", b.n.Name, err)
		}
		for p, pi := range infos {
			o.Exists[p] = pi.Exists
		}
	}
	w := copyWant{Node: b.n.Name, Copy: newDir, DataDirs: []string{b.n.DataDir, b.lay.DataDir}, Separate: b.n.SeparateConfig(),
		HbaFile: hbaFile, IdentFile: identFile,
		Port: b.n.PGPort, SocketDir: path.Clean(b.n.SocketDir), AppName: cluster.AppName(b.e.Config.Name, b.n.Name), Slot: b.up.Slot}
	if problems := checkCopyConfig(w, o); len(problems) > 0 {
		hint := ""
		if s.NoConfig && !b.n.SeparateConfig() {
			hint = fmt.Sprintf(" (%s keeps its postgresql.conf outside its data directory, so the copy has none: give %s a postgresql.conf "+
				"of its own outside the data directory and set config_dir to its directory)", b.up.Node, b.n.Name)
		}
		if newDir == b.lay.DataDir {
			return permanent(fmt.Errorf("the rewound data directory of %s was not started (it holds standby.signal, so whatever starts it "+
				"starts a standby): %s%s", b.n.Name, strings.Join(problems, "; "), hint))
		}
		return permanent(fmt.Errorf("the new copy was not swapped in, the data directory of %s is unchanged: %s%s",
			b.n.Name, strings.Join(problems, "; "), hint))
	}
	b.log.Info("the new copy starts with the node's configuration", zap.String("config_file", s.Values["config_file"]),
		zap.String("hba_file", s.Values["hba_file"]), zap.String("data_directory", s.Values["data_directory"]))
	return nil
}

// copyConfDir is the configuration directory postgres -C reads for a copy
// in dir, and the data_directory it is given (config_dir's postgresql.conf
// with the copy as data directory, or the copy's own).
func (b *nodeBuild) copyConfDir(dir string) (confDir, override string) {
	if b.n.SeparateConfig() {
		return b.n.ConfigDir, dir
	}
	return dir, ""
}

// copyPre is what postgres -C said about a copy's settings while the copy
// was configured, and what configuring it saw in its postgresql.auto.conf.
type copyPre struct {
	dir     string
	names   []string
	s       cluster.Settings
	touched map[string]bool // settings postgresql.auto.conf named, before or after the edit
	all     bool            // it holds an include: any setting may have changed
}

// copyCheckAfter returns which of names the copy check asks postgres -C
// for after the copy was configured, given what was read while it was
// (pre): the names pre did not read, and those postgresql.auto.conf named
// before or after the edit (the only file configuring changes that
// postgres -C reads). ok is false, and everything is read again, when the
// file holds an include, or pre found no configuration or an error (an
// edit may have mended or caused it).
func copyCheckAfter(names []string, pre *copyPre) (after []string, ok bool) {
	if pre.all || pre.s.NoConfig || len(pre.s.Errors) > 0 {
		return nil, false
	}
	read := map[string]bool{}
	for _, n := range pre.names {
		if _, ok := pre.s.Values[n]; ok {
			read[n] = true
		}
	}
	for _, n := range names {
		if !read[n] || pre.touched[n] {
			after = append(after, n)
		}
	}
	return after, true
}

// mergeSettings returns later with the values of earlier that later did
// not read.
func mergeSettings(earlier, later cluster.Settings) cluster.Settings {
	out := cluster.Settings{NoConfig: later.NoConfig, Values: map[string]string{}, Errors: map[string]string{}}
	for k, v := range earlier.Values {
		out.Values[k] = v
	}
	for k, v := range later.Values {
		out.Values[k] = v
	}
	for k, v := range later.Errors {
		delete(out.Values, k)
		out.Errors[k] = v
	}
	return out
}

// autoConfNames returns the settings named in a postgresql.auto.conf
// before or after an edit, and whether either holds an include directive
// (then any setting may come from it).
func autoConfNames(before, after string) (names map[string]bool, include bool) {
	names = map[string]bool{}
	for _, content := range []string{before, after} {
		for _, l := range strings.Split(content, "\n") {
			switch n := settingName(l); n {
			case "":
			case "include", "include_dir", "include_if_exists":
				include = true
			default:
				names[n] = true
			}
		}
	}
	return names, include
}
