package cluster

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// fakePostgres is a postgres that answers -C from files: <dir>/<name>
// holds a setting's value, and data_directory is the -c override when
// given. A setting named "broken" fails like a bad include does.
const fakePostgres = `#!/bin/sh
d= over= name=
while [ $# -gt 0 ]; do
	case $1 in
	-D) d=$2; shift ;;
	-c) over=${2#data_directory=}; shift ;;
	-C) name=$2; shift ;;
	esac
	shift
done
echo "2024-01-01 00:00:00.000 UTC [1] LOG:  skipping missing configuration file" >&2
case $name in
broken) echo 'FATAL:  could not open configuration file "/x.conf": No such file or directory' >&2; exit 1 ;;
badinclude) echo '2024-01-01 00:00:00.000 UTC [1] LOG:  could not open configuration file "/etc/pg/missing.conf": No such file or directory' >&2
	echo '2024-01-01 00:00:00.000 UTC [1] FATAL:  configuration file "/etc/pg/postgresql.conf" contains errors' >&2; exit 1 ;;
data_directory) if [ -n "$over" ]; then echo "$over"; else cat "$d/$name"; fi ;;
*) cat "$d/$name" ;;
esac
`

func TestShowSettings(t *testing.T) {
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "postgres"), []byte(fakePostgres), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "etc dir") // a space must survive quoting
	if err := os.MkdirAll(conf, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{"postgresql.conf": "", "data_directory": "/var/lib/pg/main", "port": "5433", "hba_file": conf + "/pg_hba.conf"} {
		if err := os.WriteFile(filepath.Join(conf, name), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a := NewLocal(&Node{Name: "dc2-a", Local: true})
	cases := []struct {
		name    string
		confDir string
		dataDir string
		names   []string
		want    Settings
	}{
		{"as configured", conf, "", []string{"data_directory", "port", "hba_file"},
			Settings{Values: map[string]string{"data_directory": "/var/lib/pg/main", "port": "5433", "hba_file": conf + "/pg_hba.conf"}, Errors: map[string]string{}}},
		{"with the copy as data directory", conf, "/var/lib/pg/main.sdr/new", []string{"data_directory", "port"},
			Settings{Values: map[string]string{"data_directory": "/var/lib/pg/main.sdr/new", "port": "5433"}, Errors: map[string]string{}}},
		{"a failing setting is reported, the others read", conf, "", []string{"broken", "port"},
			Settings{Values: map[string]string{"port": "5433"},
				Errors: map[string]string{"broken": `FATAL:  could not open configuration file "/x.conf": No such file or directory`}}},
		{"the cause postgres logs before its FATAL is kept", conf, "", []string{"badinclude"},
			Settings{Values: map[string]string{}, Errors: map[string]string{"badinclude": "2024-01-01 00:00:00.000 UTC [1] LOG:  could not open configuration file " +
				`"/etc/pg/missing.conf": No such file or directory` + "\n" + `2024-01-01 00:00:00.000 UTC [1] FATAL:  configuration file "/etc/pg/postgresql.conf" contains errors`}}},
		{"no postgresql.conf", filepath.Join(conf, "missing"), "", []string{"port"}, Settings{NoConfig: true, Values: map[string]string{}, Errors: map[string]string{}}},
		// config_file is <confDir>/postgresql.conf, not asked of postgres
		// (the fake one would fail: it has no file for it).
		{"config_file without a process", conf + "/", "", []string{"config_file", "port"},
			Settings{Values: map[string]string{"config_file": conf + "/postgresql.conf", "port": "5433"}, Errors: map[string]string{}}},
		{"config_file alone", conf, "", []string{"config_file"},
			Settings{Values: map[string]string{"config_file": conf + "/postgresql.conf"}, Errors: map[string]string{}}},
		{"config_file, no postgresql.conf", filepath.Join(conf, "missing"), "", []string{"config_file"},
			Settings{NoConfig: true, Values: map[string]string{}, Errors: map[string]string{}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ShowSettings(context.Background(), a, bin, tc.confDir, tc.dataDir, tc.names)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ShowSettings =\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
	if _, err := ShowSettings(context.Background(), a, bin, conf, "", []string{"port; rm -rf /"}); err == nil {
		t.Error("a setting name that is not one was accepted")
	}
}
