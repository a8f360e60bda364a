package steps

import (
	"context"
	"fmt"
	"path"
	"slices"
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
			if p.auto != "" {
				var vals map[string]string
				vals, names = blockValues(p.auto, p.own, names)
				keep = mergeSettings(keep, cluster.Settings{Values: vals})
			}
		}
	}
	// With ssl on already read (and not named by postgresql.auto.conf),
	// the files ssl needs are read in the same round.
	sslRead := keep.Values["ssl"] == "on" && !slices.Contains(names, "ssl")
	if sslRead {
		names = append(slices.Clip(names), sslFileSettings...)
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
	if s.Values["ssl"] == "on" && !sslRead {
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
	auto    string          // postgresql.auto.conf as the edit wrote it
	own     []string        // the lines of sdr's block (standbySettings)
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

// blockValues returns, of names, the settings whose last assignment in
// auto (a copy's postgresql.auto.conf as configuring wrote it) is one of
// sdr's own lines, with the values those lines give, and the settings
// postgres -C still reads (rest). PostgreSQL reads postgresql.auto.conf
// after every other configuration file, so its last assignment of a
// setting is the value the server gets, as postgres -C would print it for
// the lines sdr writes (a bare number or "on", or a quoted string).
//
// rest is never empty when names is not: one setting is read all the
// same, since postgres -C refuses to print anything while any line of the
// configuration is wrong, and so proves that the edited files load; its
// value is read rather than taken. With an include in auto, every setting
// is read.
func blockValues(auto string, own, names []string) (vals map[string]string, rest []string) {
	last := map[string]string{}
	for _, l := range strings.Split(auto, "\n") {
		switch n := settingName(l); n {
		case "":
		case "include", "include_dir", "include_if_exists":
			return nil, names
		default:
			last[n] = strings.TrimSpace(l)
		}
	}
	mine := map[string]bool{}
	for _, l := range own {
		mine[strings.TrimSpace(l)] = true
	}
	vals = map[string]string{}
	for _, n := range names {
		l, ok := last[n]
		if !ok || !mine[l] {
			rest = append(rest, n)
			continue
		}
		if _, v, ok := confSetting(l); ok {
			vals[n] = v
		} else {
			rest = append(rest, n)
		}
	}
	if len(rest) == 0 && len(names) > 0 {
		rest = names[:1]
		delete(vals, names[0])
	}
	return vals, rest
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
