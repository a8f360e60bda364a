package steps

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgsdr/sdr/cluster"
)

// Where a DR node's server reads its configuration, and the check that a
// new copy will start with the configuration sdr expects.
//
// The configuration is found the way the node's service manager finds it:
// postgres -D <config_dir, else the data directory> -C <setting> gives
// config_file, hba_file, ident_file and data_directory after every file
// and include is read. With config_dir set (Debian: /etc/postgresql/15/main)
// pg_hba.conf and pg_ident.conf live outside the data directory: a rebuild
// does not touch them, sdr does not save or restore them, and it writes its
// pg_hba.conf block into them where they are. Files that live inside the
// data directory (the pg_ctl and RHEL layouts) are saved before the copy and
// put into the copy, at the same place, before the swap.

// nodeConf is where a DR node's server reads its configuration files.
type nodeConf struct {
	ConfigFile, HbaFile, IdentFile string
	// DataDirectory is the data directory the configuration names.
	DataDirectory string
	// NoConfig: the configuration is in the data directory and there is
	// none yet (a node never initialised); the files are the defaults.
	NoConfig bool
}

// confSettings are the settings that place a node's files.
var confSettings = []string{"config_file", "data_directory", "hba_file", "ident_file"}

// showConfigSQL asks a running server where its files are.
const showConfigSQL = `SELECT current_setting('config_file'), current_setting('hba_file'), current_setting('ident_file'),
	current_setting('data_directory')`

// confOf returns where n's server reads its configuration, reading it
// once per run.
func (e *Env) confOf(ctx context.Context, n *cluster.Node) (nodeConf, error) {
	return e.confs.do(n.Name, func() (nodeConf, error) {
		a, err := e.access(ctx, n)
		if err != nil {
			return nodeConf{}, err
		}
		// postgres -C reads the configuration as configured, unless a
		// server running on the node's configuration says it for sure
		// (confFromServer); where the data directory really is is resolved
		// meanwhile.
		var lay nodeLayout
		var s cluster.Settings
		if err := together(
			func() (err error) { lay, err = e.layoutOf(ctx, n); return err },
			func() (err error) {
				if got, ok := e.confFromServer(ctx, n); ok {
					s = got
					return nil
				}
				cctx, cancel := e.cmdCtx(ctx)
				defer cancel()
				s, err = cluster.ShowSettings(cctx, a, n.BinDir, n.ConfDir(), "", confSettings)
				return err
			},
		); err != nil {
			return nodeConf{}, err
		}
		return decideNodeConf(n, lay, s)
	})
}

// fileSetting is one row of pg_file_settings: a setting as the server's
// configuration files give it now (read again for the query).
type fileSetting struct {
	Name, Setting, Error string
}

// confFromServer asks a server running on n's port where postgres -C
// would place n's files, in one session, so that no postgres process is
// started for it (confFromFileSettings decides whether the answer is
// sure). ok is false when no server answers, or it cannot say for sure.
func (e *Env) confFromServer(ctx context.Context, n *cluster.Node) (cluster.Settings, bool) {
	var configFile string
	var rows []fileSetting
	err := e.withAdmin(ctx, n, func(ctx context.Context, c *pgx.Conn) error {
		if err := c.QueryRow(ctx, `SELECT current_setting('config_file')`).Scan(&configFile); err != nil {
			return err
		}
		r, err := c.Query(ctx, `SELECT coalesce(name, ''), coalesce(setting, ''), coalesce(error, '') FROM pg_file_settings ORDER BY seqno`)
		if err != nil {
			return err
		}
		rows, err = pgx.CollectRows(r, func(row pgx.CollectableRow) (fileSetting, error) {
			var f fileSetting
			err := row.Scan(&f.Name, &f.Setting, &f.Error)
			return f, err
		})
		return err
	})
	if err != nil {
		return cluster.Settings{}, false
	}
	return confFromFileSettings(n.ConfDir(), configFile, rows)
}

// confFromFileSettings gives what postgres -D confDir -C would print for
// confSettings, from a running server's config_file and pg_file_settings
// (its configuration files as they are now), when that is sure: the server
// reads confDir's postgresql.conf, no line of its files has an error (a
// setting that waits for a restart counts as one), and the files set
// data_directory, hba_file and ident_file, if at all, to absolute, clean
// paths. Then the files are the ones postgres -C would read, and a setting
// they do not set is PostgreSQL's default beside postgresql.conf
// (data_directory: confDir itself). ok is false otherwise.
func confFromFileSettings(confDir, configFile string, rows []fileSetting) (cluster.Settings, bool) {
	confDir = path.Clean(confDir)
	if path.Clean(configFile) != path.Join(confDir, "postgresql.conf") {
		return cluster.Settings{}, false
	}
	vals := map[string]string{"config_file": path.Join(confDir, "postgresql.conf"), "data_directory": confDir,
		"hba_file": path.Join(confDir, "pg_hba.conf"), "ident_file": path.Join(confDir, "pg_ident.conf")}
	for _, r := range rows {
		if r.Error != "" {
			return cluster.Settings{}, false
		}
		switch name := strings.ToLower(r.Name); name {
		case "data_directory", "hba_file", "ident_file", "config_file":
			if name == "config_file" || !path.IsAbs(r.Setting) || path.Clean(r.Setting) != r.Setting {
				return cluster.Settings{}, false
			}
			vals[name] = r.Setting
		}
	}
	return cluster.Settings{Values: vals, Errors: map[string]string{}}, true
}

// decideNodeConf reads what postgres -C said about n's configuration.
func decideNodeConf(n *cluster.Node, lay nodeLayout, s cluster.Settings) (nodeConf, error) {
	if s.NoConfig {
		if n.SeparateConfig() {
			return nodeConf{}, permanent(fmt.Errorf("%s: config_dir %s holds no postgresql.conf: set config_dir to the directory of the "+
				"postgresql.conf this node's server reads (SHOW config_file), or leave it empty when that is in the data directory", n.Name, n.ConfigDir))
		}
		return nodeConf{ConfigFile: path.Join(lay.DataDir, "postgresql.conf"), HbaFile: path.Join(lay.DataDir, "pg_hba.conf"),
			IdentFile: path.Join(lay.DataDir, "pg_ident.conf"), DataDirectory: n.DataDir, NoConfig: true}, nil
	}
	var problems []string
	for _, name := range confSettings {
		if msg, ok := s.Errors[name]; ok {
			problems = append(problems, name+": "+msg)
		}
	}
	if len(problems) > 0 {
		return nodeConf{}, permanent(fmt.Errorf("%s: PostgreSQL cannot read the configuration in %s (postgres -C): %s",
			n.Name, n.ConfDir(), strings.Join(problems, "; ")))
	}
	return nodeConf{ConfigFile: s.Values["config_file"], HbaFile: s.Values["hba_file"], IdentFile: s.Values["ident_file"],
		DataDirectory: s.Values["data_directory"]}, nil
}

// inData returns p relative to the data directory when p lies inside it
// (under data_dir as configured or under its real path).
func inData(p string, n *cluster.Node, lay nodeLayout) (string, bool) {
	for _, d := range []string{lay.DataDir, n.DataDir} {
		if rel, ok := strings.CutPrefix(path.Clean(p), d+"/"); ok {
			return rel, true
		}
	}
	return "", false
}

// ownFile is one of the node's configuration files that a rebuild must
// carry into the new copy, because it lives in the data directory.
type ownFile struct {
	Rel   string // its path inside the data directory
	Saved string // its name in the saved directory
}

// ownFiles returns the node's pg_hba.conf and pg_ident.conf that live in
// its data directory. Files elsewhere (Debian's /etc) survive a rebuild
// where they are.
func ownFiles(c nodeConf, n *cluster.Node, lay nodeLayout) []ownFile {
	var out []ownFile
	for _, p := range []string{c.HbaFile, c.IdentFile} {
		if rel, ok := inData(p, n, lay); ok {
			out = append(out, ownFile{Rel: rel, Saved: path.Base(rel)})
		}
	}
	return out
}

// inCopy maps a path the node's server reads to where the same file is
// for a server running in the copy newDir: inside the data directory it
// moves with the data; anywhere else it stays.
func inCopy(p string, n *cluster.Node, lay nodeLayout, newDir string) string {
	if rel, ok := inData(p, n, lay); ok {
		return path.Join(newDir, rel)
	}
	return p
}

// checkConfDataDir checks that the data_directory a separate
// configuration names (real: its resolved path, "" when it does not
// exist yet) is the node's data_dir; it returns the problem or "".
func checkConfDataDir(n *cluster.Node, lay nodeLayout, c nodeConf, real string) string {
	switch {
	case real != "" && real == lay.DataDir:
		return ""
	case real == "" && (path.Clean(c.DataDirectory) == n.DataDir || path.Clean(c.DataDirectory) == lay.DataDir):
		return "" // not made yet: compared as written
	}
	return fmt.Sprintf("%s: %s sets data_directory = %s, not data_dir %s: the service manager would start "+
		"PostgreSQL there, not in the directory sdr rebuilds", n.Name, c.ConfigFile, c.DataDirectory, n.DataDir)
}

// checkRunningConf compares where a running server reads its files
// (SHOW) with what sdr found with postgres -C. A difference means the
// server was started with other files than sdr would use or edit: the
// config must say where they are before anything is stopped.
func checkRunningConf(n *cluster.Node, lay nodeLayout, c nodeConf, live nodeConf, liveDataReal string) []string {
	var out []string
	if liveDataReal != "" && liveDataReal != lay.DataDir {
		out = append(out, fmt.Sprintf("%s: the PostgreSQL server running there has data_directory %s, not data_dir %s: "+
			"set data_dir to the directory the server uses", n.Name, live.DataDirectory, n.DataDir))
	}
	same := func(a, b string) bool { return sameConfPath(a, b, n, lay) }
	if !same(live.ConfigFile, c.ConfigFile) {
		hint := "set config_dir: " + path.Dir(live.ConfigFile)
		if _, ok := inData(live.ConfigFile, n, lay); ok {
			hint = "leave config_dir empty"
		}
		out = append(out, fmt.Sprintf("%s: the server reads %s, but with this config sdr would read %s: %s", n.Name, live.ConfigFile, c.ConfigFile, hint))
		return out // the other files follow from the config file
	}
	for _, f := range []struct{ what, live, want string }{{"hba_file", live.HbaFile, c.HbaFile}, {"ident_file", live.IdentFile, c.IdentFile}} {
		if !same(f.live, f.want) {
			out = append(out, fmt.Sprintf("%s: the server reads %s = %s, but its configuration in %s says %s now: either the configuration "+
				"changed since the server started (pg_settings.pending_restart; restart the node through its service manager so that it reads %s), "+
				"or the server was started with other options (then set %s in its postgresql.conf to %s): sdr edits the file the server "+
				"will read after the rebuild, and both must be the same", n.Name, f.what, f.live, n.ConfDir(), f.want, f.want, f.what, f.live))
		}
	}
	return out
}

// sameConfPath reports whether two spellings name the same file: equal,
// or the same file inside the data directory, reached once through
// data_dir and once through its real path.
func sameConfPath(a, b string, n *cluster.Node, lay nodeLayout) bool {
	if path.Clean(a) == path.Clean(b) {
		return true
	}
	ra, oka := inData(a, n, lay)
	rb, okb := inData(b, n, lay)
	return oka && okb && ra == rb
}

// liveConf asks n's running server where its files are.
func (e *Env) liveConf(ctx context.Context, n *cluster.Node) (nodeConf, error) {
	var c nodeConf
	err := e.withAdmin(ctx, n, func(ctx context.Context, conn *pgx.Conn) error {
		if err := conn.QueryRow(ctx, showConfigSQL).Scan(&c.ConfigFile, &c.HbaFile, &c.IdentFile, &c.DataDirectory); err != nil {
			return fmt.Errorf("while asking the server on %s where its configuration is: %w", n.Name, err)
		}
		return nil
	})
	return c, err
}

// copyWant is what the configuration of a new copy must give, for a
// server started in it the way the node's service manager starts one.
type copyWant struct {
	Node      string
	Copy      string   // the copy's directory (<work>/new)
	DataDirs  []string // the node's data directory as configured and its real path
	Separate  bool     // config_dir is outside the data directory
	HbaFile   string   // the pg_hba.conf a server in the copy must read
	IdentFile string
	Port      int
	SocketDir string
	AppName   string
	Slot      string
}

// copyObs is what postgres -C says about the copy, and which of the paths
// it names exist.
type copyObs struct {
	Settings cluster.Settings // with the copy as data directory
	// LiveDataDirectory is data_directory from config_dir's configuration
	// as it is (Separate only).
	LiveDataDirectory string
	Exists            map[string]bool // of copyPaths
}

// copyPaths returns the paths of s that must exist for a server to start
// in the copy: configuration files and, with ssl on, its certificate and
// key (relative ones are in the data directory, the copy); the directory
// of external_pid_file and of stats_temp_directory (13 and 14).
func copyPaths(s cluster.Settings, copyDir string) map[string]string {
	out := map[string]string{}
	abs := func(p string) string {
		if path.IsAbs(p) {
			return path.Clean(p)
		}
		return path.Join(copyDir, p)
	}
	for _, k := range []string{"hba_file", "ident_file"} {
		if v := s.Values[k]; v != "" {
			out[k] = abs(v)
		}
	}
	if s.Values["ssl"] == "on" {
		for _, k := range sslFileSettings {
			if v := s.Values[k]; v != "" {
				out[k] = abs(v)
			}
		}
	}
	if v := s.Values["external_pid_file"]; v != "" {
		out["external_pid_file"] = path.Dir(abs(v))
	}
	if v := s.Values["stats_temp_directory"]; v != "" && path.IsAbs(v) {
		out["stats_temp_directory"] = path.Dir(path.Clean(v))
	}
	return out
}

// checkCopyConfig decides whether a server started in the copy would be
// the node's standby: in the copy, on the node's port and socket, with the
// node's own pg_hba.conf and pg_ident.conf, streaming as this node, and
// with every file it needs at start. It returns what is wrong, each naming
// the setting, the value and what it should be.
func checkCopyConfig(w copyWant, o copyObs) []string {
	var out []string
	bad := func(format string, args ...any) { out = append(out, w.Node+": "+fmt.Sprintf(format, args...)) }
	s := o.Settings
	if s.NoConfig {
		bad("the new copy in %s has no postgresql.conf to start with", w.Copy)
		return out
	}
	var names []string
	for k := range s.Errors {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		bad("PostgreSQL cannot read %s of the new copy's configuration: %s", k, s.Errors[k])
	}
	if w.Separate && !slices.Contains(w.DataDirs, path.Clean(o.LiveDataDirectory)) {
		bad("%s/postgresql.conf sets data_directory = %s, not data_dir %s: the service manager would start PostgreSQL there, "+
			"not in the directory sdr rebuilds", path.Dir(s.Values["config_file"]), o.LiveDataDirectory, w.DataDirs[0])
	}
	v := s.Values
	if d, ok := v["data_directory"]; ok && path.Clean(d) != w.Copy {
		bad("the new copy's configuration sets data_directory = %s: after the swap the server would run there, not in data_dir %s", d, w.DataDirs[0])
	}
	for _, f := range []struct{ name, want string }{{"hba_file", w.HbaFile}, {"ident_file", w.IdentFile}} {
		if got, ok := v[f.name]; ok && path.Clean(got) != f.want {
			bad("the new copy would read %s = %s, not the node's own %s", f.name, got, f.want)
		}
	}
	if got, ok := v["port"]; ok && got != fmt.Sprint(w.Port) {
		bad("the new copy would listen on port %s, not pg_port %d", got, w.Port)
	}
	if got, ok := v["unix_socket_directories"]; ok && !slices.Contains(splitList(got), w.SocketDir) {
		bad("the new copy's unix_socket_directories = %q does not hold socket_dir %s", got, w.SocketDir)
	}
	if got, ok := v["hot_standby"]; ok && got != "on" {
		bad("the new copy has hot_standby = %s: sdr could not connect to it to check that it streams", got)
	}
	if got, ok := v["primary_conninfo"]; ok && conninfoValue(got, "application_name") != w.AppName {
		bad("the new copy's primary_conninfo does not carry application_name=%s (something overrides sdr's settings in postgresql.auto.conf)", w.AppName)
	}
	if got, ok := v["primary_slot_name"]; ok && got != w.Slot {
		bad("the new copy's primary_slot_name is %q, not %q", got, w.Slot)
	}
	paths := copyPaths(s, w.Copy)
	var keys []string
	for k := range paths {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if o.Exists[paths[k]] {
			continue
		}
		switch k {
		case "external_pid_file", "stats_temp_directory":
			bad("the directory of %s (%s) does not exist on the node", k, paths[k])
		default:
			bad("%s %s does not exist on the node", k, paths[k])
		}
	}
	return out
}

// splitList splits a comma-separated setting (unix_socket_directories),
// dropping blanks and quotes around items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		p = strings.Trim(strings.TrimSpace(p), `"`)
		if p != "" {
			out = append(out, path.Clean(p))
		}
	}
	return out
}
