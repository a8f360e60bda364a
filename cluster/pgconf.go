package cluster

import (
	"context"
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// settingNameRE is a PostgreSQL setting name (custom ones hold a dot).
var settingNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_.]*$`)

// Settings are values of PostgreSQL settings as a server would have them,
// read with postgres -C (ShowSettings).
type Settings struct {
	// NoConfig: <confDir>/postgresql.conf does not exist, so nothing was read.
	NoConfig bool
	// Values of the settings that could be read, by name.
	Values map[string]string
	// Errors says, by name, why postgres -C failed for a setting (its last
	// lines of stderr): a broken include, an unknown setting, a syntax error.
	Errors map[string]string
}

// ShowSettings reads settings the way a server started with -D confDir
// would have them, in one remote command: postgres -C <name> for each name
// (postgres from binDir, run as the node's SSH user, LANG=C), after every
// configuration file, include and postgresql.auto.conf is read. When
// dataDir is not "", it is given as -c data_directory=<dataDir>, which
// overrides the configuration's own: the settings a server would have with
// that data directory (its postgresql.auto.conf). postgres -C reads files
// only; it works while a server runs, and starts nothing. config_file is
// not asked of postgres (it can only be set on the command line, so it is
// <confDir>/postgresql.conf).
func ShowSettings(ctx context.Context, a Access, binDir, confDir, dataDir string, names []string) (Settings, error) {
	node := a.Node().Name
	fail := func(err error) (Settings, error) {
		return Settings{}, fmt.Errorf("on %s: while reading the settings of %s with postgres -C: %w", node, confDir, err)
	}
	check := []string{binDir, confDir}
	if dataDir != "" {
		check = append(check, dataDir)
	}
	if err := checkPaths(check...); err != nil {
		return fail(err)
	}
	for _, n := range names {
		if !settingNameRE.MatchString(n) {
			return fail(fmt.Errorf("%q is not a setting name", n))
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "c=%s\npg=%s\n", ShellQuote(path.Clean(confDir)), ShellQuote(path.Join(binDir, "postgres")))
	// postgres -C prints one setting per run, and each run costs a process
	// start and a read of the configuration: they run side by side, each
	// into a file of its own, and the records are printed in order.
	b.WriteString(`[ -f "$c/postgresql.conf" ] || { printf 'noconf=1\0'; exit 0; }
d=$(mktemp -d) || exit 1
trap 'rm -rf -- "$d"' EXIT
sdr_show() {
	sdr_i=$1
	shift
	if sdr_v=$(LANG=C LC_ALL=C "$pg" -D "$c" "$@" 2>"$d/e$sdr_i"); then
		printf 'v%s=%s\0' "$sdr_i" "$sdr_v"
	else
		printf 'e%s=%s\0' "$sdr_i" "$(grep -v 'LOG:  skipping missing configuration file' "$d/e$sdr_i" | tail -n 5)"
	fi >"$d/o$sdr_i"
}
`)
	over := ""
	if dataDir != "" {
		over = " -c data_directory=" + ShellQuote(path.Clean(dataDir))
	}
	// config_file can only be set on the command line: with -D confDir it
	// is confDir's postgresql.conf, made absolute (confDir is already),
	// and no process is started to say so.
	var outs []string
	wantConfigFile := false
	for i, n := range names {
		if n == "config_file" {
			wantConfigFile = true
			continue
		}
		fmt.Fprintf(&b, "sdr_show %d%s -C %s &\n", i, over, n)
		outs = append(outs, fmt.Sprintf(`"$d/o%d"`, i))
	}
	if len(outs) > 0 {
		fmt.Fprintf(&b, "wait\ncat %s\n", strings.Join(outs, " "))
	}
	// postgres -C reads the configuration only (the temporary directory
	// holds its output and stderr and is removed): a plan may run it.
	out, err := runReadScript(ctx, a, "postgres -C in "+confDir, b.String())
	if err != nil {
		return Settings{}, fmt.Errorf("while reading the settings of %s with postgres -C: %w", confDir, err)
	}
	recs, err := parseRecords(out)
	if err != nil {
		return fail(err)
	}
	s := Settings{Values: map[string]string{}, Errors: map[string]string{}}
	for _, r := range recs {
		switch {
		case r.key == "noconf":
			s.NoConfig = true
		case strings.HasPrefix(r.key, "v"), strings.HasPrefix(r.key, "e"):
			i, err := strconv.Atoi(r.key[1:])
			if err != nil || i < 0 || i >= len(names) {
				return fail(fmt.Errorf("unexpected record %q", r.key))
			}
			if r.key[0] == 'v' {
				s.Values[names[i]] = r.val
			} else {
				s.Errors[names[i]] = strings.TrimSpace(r.val)
			}
		default:
			return fail(fmt.Errorf("unexpected record %q", r.key))
		}
	}
	if wantConfigFile && !s.NoConfig {
		s.Values["config_file"] = path.Join(path.Clean(confDir), "postgresql.conf")
	}
	return s, nil
}
