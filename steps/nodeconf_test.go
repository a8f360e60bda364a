package steps

import (
	"reflect"
	"strings"
	"testing"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/workflow"
)

var (
	rhelNode   = &cluster.Node{Name: "dc2-a", DataDir: "/var/lib/pgsql/16/data", SocketDir: "/run/postgresql", PGPort: 5432}
	debianNode = &cluster.Node{Name: "dc2-a", DataDir: "/var/lib/postgresql/15/main", ConfigDir: "/etc/postgresql/15/main",
		SocketDir: "/var/run/postgresql", PGPort: 5432}
	rhelLayout   = nodeLayout{DataDir: "/var/lib/pgsql/16/data", Work: "/var/lib/pgsql/16/data.sdr"}
	debianLayout = nodeLayout{DataDir: "/var/lib/postgresql/15/main", Work: "/var/lib/postgresql/15/main.sdr"}
)

func TestDecideNodeConf(t *testing.T) {
	vals := func(kv ...string) cluster.Settings {
		s := cluster.Settings{Values: map[string]string{}, Errors: map[string]string{}}
		for i := 0; i+1 < len(kv); i += 2 {
			s.Values[kv[i]] = kv[i+1]
		}
		return s
	}
	cases := []struct {
		name    string
		n       *cluster.Node
		lay     nodeLayout
		s       cluster.Settings
		want    nodeConf
		refused string
	}{
		{"RHEL: everything in the data directory", rhelNode, rhelLayout,
			vals("config_file", "/var/lib/pgsql/16/data/postgresql.conf", "hba_file", "/var/lib/pgsql/16/data/pg_hba.conf",
				"ident_file", "/var/lib/pgsql/16/data/pg_ident.conf", "data_directory", "/var/lib/pgsql/16/data"),
			nodeConf{ConfigFile: "/var/lib/pgsql/16/data/postgresql.conf", HbaFile: "/var/lib/pgsql/16/data/pg_hba.conf",
				IdentFile: "/var/lib/pgsql/16/data/pg_ident.conf", DataDirectory: "/var/lib/pgsql/16/data"}, ""},
		{"Debian: files in /etc", debianNode, debianLayout,
			vals("config_file", "/etc/postgresql/15/main/postgresql.conf", "hba_file", "/etc/postgresql/15/main/pg_hba.conf",
				"ident_file", "/etc/postgresql/15/main/pg_ident.conf", "data_directory", "/var/lib/postgresql/15/main"),
			nodeConf{ConfigFile: "/etc/postgresql/15/main/postgresql.conf", HbaFile: "/etc/postgresql/15/main/pg_hba.conf",
				IdentFile: "/etc/postgresql/15/main/pg_ident.conf", DataDirectory: "/var/lib/postgresql/15/main"}, ""},
		{"a node never initialised: the defaults in the data directory", rhelNode, rhelLayout, cluster.Settings{NoConfig: true},
			nodeConf{ConfigFile: "/var/lib/pgsql/16/data/postgresql.conf", HbaFile: "/var/lib/pgsql/16/data/pg_hba.conf",
				IdentFile: "/var/lib/pgsql/16/data/pg_ident.conf", DataDirectory: "/var/lib/pgsql/16/data", NoConfig: true}, ""},
		{"config_dir without postgresql.conf", debianNode, debianLayout, cluster.Settings{NoConfig: true}, nodeConf{}, "holds no postgresql.conf"},
		{"a configuration PostgreSQL cannot read", debianNode, debianLayout,
			cluster.Settings{Values: map[string]string{}, Errors: map[string]string{"hba_file": `FATAL:  could not open configuration file "conf.d/x.conf"`}},
			nodeConf{}, "conf.d/x.conf"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decideNodeConf(tc.n, tc.lay, tc.s)
			if tc.refused != "" {
				if err == nil || !strings.Contains(err.Error(), tc.refused) || !workflow.IsPermanent(err) {
					t.Fatalf("err = %v, want a permanent refusal mentioning %q", err, tc.refused)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("decideNodeConf = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestOwnFilesAndInCopy(t *testing.T) {
	cases := []struct {
		name      string
		n         *cluster.Node
		lay       nodeLayout
		c         nodeConf
		wantOwn   []ownFile
		wantHba   string // where the copy's server reads pg_hba.conf
		wantIdent string
	}{
		{"RHEL: both files move with the data", rhelNode, rhelLayout,
			nodeConf{HbaFile: "/var/lib/pgsql/16/data/pg_hba.conf", IdentFile: "/var/lib/pgsql/16/data/pg_ident.conf"},
			[]ownFile{{"pg_hba.conf", "pg_hba.conf"}, {"pg_ident.conf", "pg_ident.conf"}},
			"/var/lib/pgsql/16/data.sdr/new/pg_hba.conf", "/var/lib/pgsql/16/data.sdr/new/pg_ident.conf"},
		{"Debian: neither is saved, both stay in /etc", debianNode, debianLayout,
			nodeConf{HbaFile: "/etc/postgresql/15/main/pg_hba.conf", IdentFile: "/etc/postgresql/15/main/pg_ident.conf"},
			nil, "/etc/postgresql/15/main/pg_hba.conf", "/etc/postgresql/15/main/pg_ident.conf"},
		{"hba_file in a subdirectory of the data directory, ident_file elsewhere", rhelNode, rhelLayout,
			nodeConf{HbaFile: "/var/lib/pgsql/16/data/conf/pg_hba.conf", IdentFile: "/etc/pg/ident.conf"},
			[]ownFile{{"conf/pg_hba.conf", "pg_hba.conf"}},
			"/var/lib/pgsql/16/data.sdr/new/conf/pg_hba.conf", "/etc/pg/ident.conf"},
		{"data_dir is a symlink: the file is found under either spelling",
			&cluster.Node{Name: "dc2-a", DataDir: "/srv/pg"}, nodeLayout{DataDir: "/data/pg", Work: "/data/pg.sdr"},
			nodeConf{HbaFile: "/srv/pg/pg_hba.conf", IdentFile: "/data/pg/pg_ident.conf"},
			[]ownFile{{"pg_hba.conf", "pg_hba.conf"}, {"pg_ident.conf", "pg_ident.conf"}},
			"/data/pg.sdr/new/pg_hba.conf", "/data/pg.sdr/new/pg_ident.conf"},
		{"a sibling directory that shares the prefix is not inside", &cluster.Node{Name: "dc2-a", DataDir: "/srv/pg"},
			nodeLayout{DataDir: "/srv/pg", Work: "/srv/pg.sdr"},
			nodeConf{HbaFile: "/srv/pg2/pg_hba.conf", IdentFile: "/srv/pg.conf/pg_ident.conf"},
			nil, "/srv/pg2/pg_hba.conf", "/srv/pg.conf/pg_ident.conf"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := ownFiles(tc.c, tc.n, tc.lay); !reflect.DeepEqual(got, tc.wantOwn) {
				t.Errorf("ownFiles = %+v, want %+v", got, tc.wantOwn)
			}
			if got := inCopy(tc.c.HbaFile, tc.n, tc.lay, tc.lay.New()); got != tc.wantHba {
				t.Errorf("inCopy(hba) = %s, want %s", got, tc.wantHba)
			}
			if got := inCopy(tc.c.IdentFile, tc.n, tc.lay, tc.lay.New()); got != tc.wantIdent {
				t.Errorf("inCopy(ident) = %s, want %s", got, tc.wantIdent)
			}
		})
	}
}

func TestCheckConfDataDir(t *testing.T) {
	conf := func(dd string) nodeConf {
		return nodeConf{ConfigFile: "/etc/postgresql/15/main/postgresql.conf", DataDirectory: dd}
	}
	symlinked := &cluster.Node{Name: "dc2-a", DataDir: "/srv/pg", ConfigDir: "/etc/postgresql/15/main"}
	symLayout := nodeLayout{DataDir: "/data/pg", Work: "/data/pg.sdr"}
	cases := []struct {
		name    string
		n       *cluster.Node
		lay     nodeLayout
		c       nodeConf
		real    string
		refused bool
	}{
		{"the configuration names data_dir", debianNode, debianLayout, conf("/var/lib/postgresql/15/main"), "/var/lib/postgresql/15/main", false},
		{"it names data_dir through a symlink", symlinked, symLayout, conf("/srv/pg"), "/data/pg", false},
		{"it names the real path of a symlinked data_dir", symlinked, symLayout, conf("/data/pg"), "/data/pg", false},
		{"the data directory does not exist yet", debianNode, debianLayout, conf("/var/lib/postgresql/15/main"), "", false},
		{"it names another cluster's directory", debianNode, debianLayout, conf("/var/lib/postgresql/15/other"), "/var/lib/postgresql/15/other", true},
		{"it names a directory that does not exist", debianNode, debianLayout, conf("/var/lib/postgresql/15/nothere"), "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := checkConfDataDir(tc.n, tc.lay, tc.c, tc.real)
			if (got != "") != tc.refused {
				t.Errorf("checkConfDataDir = %q, refused want %v", got, tc.refused)
			}
		})
	}
}

func TestCheckRunningConf(t *testing.T) {
	debConf := nodeConf{ConfigFile: "/etc/postgresql/15/main/postgresql.conf", HbaFile: "/etc/postgresql/15/main/pg_hba.conf",
		IdentFile: "/etc/postgresql/15/main/pg_ident.conf", DataDirectory: "/var/lib/postgresql/15/main"}
	inDataConf := nodeConf{ConfigFile: "/var/lib/postgresql/15/main/postgresql.conf", HbaFile: "/var/lib/postgresql/15/main/pg_hba.conf",
		IdentFile: "/var/lib/postgresql/15/main/pg_ident.conf", DataDirectory: "/var/lib/postgresql/15/main"}
	debNoConfigDir := &cluster.Node{Name: "dc2-a", DataDir: "/var/lib/postgresql/15/main"}
	cases := []struct {
		name     string
		n        *cluster.Node
		c, live  nodeConf
		liveReal string
		want     []string // words of each problem, in order
	}{
		{"Debian node configured as Debian", debianNode, debConf, debConf, "/var/lib/postgresql/15/main", nil},
		{"Debian node without config_dir: sdr would look in the data directory", debNoConfigDir, inDataConf, debConf,
			"/var/lib/postgresql/15/main", []string{"set config_dir: /etc/postgresql/15/main"}},
		{"config_dir set for a server whose configuration is in the data directory", debianNode, debConf, inDataConf,
			"/var/lib/postgresql/15/main", []string{"leave config_dir empty"}},
		{"server started with -c hba_file", debianNode, debConf,
			nodeConf{ConfigFile: debConf.ConfigFile, HbaFile: "/tmp/hba", IdentFile: debConf.IdentFile, DataDirectory: debConf.DataDirectory},
			"/var/lib/postgresql/15/main", []string{"hba_file = /tmp/hba"}},
		{"data_dir is a symlink: the server names its files by the real path", &cluster.Node{Name: "dc2-a", DataDir: "/srv/pg"},
			nodeConf{ConfigFile: "/srv/pg/postgresql.conf", HbaFile: "/srv/pg/pg_hba.conf", IdentFile: "/srv/pg/pg_ident.conf"},
			nodeConf{ConfigFile: "/var/lib/postgresql/15/main/postgresql.conf", HbaFile: "/var/lib/postgresql/15/main/pg_hba.conf",
				IdentFile: "/var/lib/postgresql/15/main/pg_ident.conf", DataDirectory: "/var/lib/postgresql/15/main"},
			"/var/lib/postgresql/15/main", nil},
		{"server runs in another data directory", debianNode, debConf,
			nodeConf{ConfigFile: debConf.ConfigFile, HbaFile: debConf.HbaFile, IdentFile: debConf.IdentFile, DataDirectory: "/srv/other"},
			"/srv/other", []string{"data_directory /srv/other"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := checkRunningConf(tc.n, debianLayout, tc.c, tc.live, tc.liveReal)
			if len(got) != len(tc.want) {
				t.Fatalf("problems %q, want %d", got, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %q does not mention %q", got[i], w)
				}
			}
		})
	}
}

func TestCheckCopyConfig(t *testing.T) {
	newDir := debianLayout.New()
	debWant := copyWant{Node: "dc2-a", Copy: newDir, DataDirs: []string{"/var/lib/postgresql/15/main"}, Separate: true,
		HbaFile: "/etc/postgresql/15/main/pg_hba.conf", IdentFile: "/etc/postgresql/15/main/pg_ident.conf",
		Port: 5432, SocketDir: "/var/run/postgresql", AppName: "sdr_pair1_dc2_a_0fbd858c", Slot: "sdr_pair1_dc2_a_0fbd858c"}
	good := func() map[string]string {
		return map[string]string{
			"data_directory": newDir, "config_file": "/etc/postgresql/15/main/postgresql.conf",
			"hba_file": "/etc/postgresql/15/main/pg_hba.conf", "ident_file": "/etc/postgresql/15/main/pg_ident.conf",
			"port": "5432", "unix_socket_directories": "/var/run/postgresql", "hot_standby": "on",
			"primary_conninfo":  "host=10.0.1.10 port=5432 user=sdr_repl passfile=/x application_name=sdr_pair1_dc2_a_0fbd858c connect_timeout=10",
			"primary_slot_name": "sdr_pair1_dc2_a_0fbd858c", "external_pid_file": "/var/run/postgresql/15-main.pid",
			"ssl": "on", "ssl_cert_file": "/etc/ssl/certs/ssl-cert-snakeoil.pem", "ssl_key_file": "/etc/ssl/private/ssl-cert-snakeoil.key",
			"ssl_ca_file": "", "ssl_crl_file": "",
		}
	}
	allExist := map[string]bool{"/etc/postgresql/15/main/pg_hba.conf": true, "/etc/postgresql/15/main/pg_ident.conf": true,
		"/var/run/postgresql": true, "/etc/ssl/certs/ssl-cert-snakeoil.pem": true, "/etc/ssl/private/ssl-cert-snakeoil.key": true}
	obs := func(edit func(v map[string]string, o *copyObs)) copyObs {
		o := copyObs{Settings: cluster.Settings{Values: good(), Errors: map[string]string{}}, LiveDataDirectory: "/var/lib/postgresql/15/main",
			Exists: map[string]bool{}}
		for k, v := range allExist {
			o.Exists[k] = v
		}
		edit(o.Settings.Values, &o)
		return o
	}
	cases := []struct {
		name string
		w    copyWant
		o    copyObs
		want []string
	}{
		{"Debian copy that starts as the node's standby", debWant, obs(func(map[string]string, *copyObs) {}), nil},
		{"RHEL copy with its files inside", copyWant{Node: "dc2-a", Copy: rhelLayout.New(), DataDirs: []string{rhelLayout.DataDir},
			HbaFile: rhelLayout.New() + "/pg_hba.conf", IdentFile: rhelLayout.New() + "/pg_ident.conf", Port: 5432,
			SocketDir: "/run/postgresql", AppName: "a", Slot: ""},
			copyObs{Settings: cluster.Settings{Values: map[string]string{"data_directory": rhelLayout.New(),
				"hba_file": rhelLayout.New() + "/pg_hba.conf", "ident_file": rhelLayout.New() + "/pg_ident.conf", "port": "5432",
				"unix_socket_directories": "/run/postgresql, /tmp", "hot_standby": "on", "primary_conninfo": "application_name=a",
				"primary_slot_name": "", "ssl": "off", "ssl_cert_file": "server.crt"}},
				Exists: map[string]bool{rhelLayout.New() + "/pg_hba.conf": true, rhelLayout.New() + "/pg_ident.conf": true}}, nil},
		{"config_dir names another data directory", debWant, obs(func(_ map[string]string, o *copyObs) {
			o.LiveDataDirectory = "/srv/elsewhere"
		}), []string{"data_directory = /srv/elsewhere"}},
		{"the copy's postgresql.conf moves the data directory", debWant, obs(func(v map[string]string, _ *copyObs) {
			v["data_directory"] = "/var/lib/postgresql/15/primary"
		}), []string{"would run there"}},
		{"the copy would read the primary's pg_hba.conf", debWant, obs(func(v map[string]string, _ *copyObs) {
			v["hba_file"] = "/etc/postgresql/15/primary/pg_hba.conf"
		}), []string{"hba_file = /etc/postgresql/15/primary/pg_hba.conf", "/etc/postgresql/15/primary/pg_hba.conf does not exist"}},
		{"the node's pg_ident.conf is missing", debWant, obs(func(_ map[string]string, o *copyObs) {
			o.Exists["/etc/postgresql/15/main/pg_ident.conf"] = false
		}), []string{"ident_file /etc/postgresql/15/main/pg_ident.conf does not exist"}},
		{"port and socket of the upstream", debWant, obs(func(v map[string]string, _ *copyObs) {
			v["port"], v["unix_socket_directories"] = "5433", "/tmp"
		}), []string{"port 5433", "socket_dir /var/run/postgresql"}},
		{"hot_standby off", debWant, obs(func(v map[string]string, _ *copyObs) { v["hot_standby"] = "off" }), []string{"hot_standby = off"}},
		{"standby settings not read", debWant, obs(func(v map[string]string, _ *copyObs) {
			v["primary_conninfo"], v["primary_slot_name"] = "", ""
		}), []string{"application_name=sdr_pair1_dc2_a_0fbd858c", "primary_slot_name"}},
		{"ssl on without the key on this node", debWant, obs(func(_ map[string]string, o *copyObs) {
			o.Exists["/etc/ssl/private/ssl-cert-snakeoil.key"] = false
		}), []string{"ssl_key_file /etc/ssl/private/ssl-cert-snakeoil.key does not exist"}},
		{"external_pid_file's directory missing", debWant, obs(func(_ map[string]string, o *copyObs) {
			o.Exists["/var/run/postgresql"] = false
		}), []string{"external_pid_file"}},
		{"an include the copy cannot read", debWant, obs(func(_ map[string]string, o *copyObs) {
			o.Settings.Errors["port"] = `FATAL:  could not open configuration file "/etc/postgresql/15/main/conf.d/x.conf"`
			delete(o.Settings.Values, "port")
		}), []string{"cannot read port"}},
		{"no postgresql.conf in the copy", copyWant{Node: "dc2-a", Copy: rhelLayout.New()}, copyObs{Settings: cluster.Settings{NoConfig: true}},
			[]string{"no postgresql.conf"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := checkCopyConfig(tc.w, tc.o)
			if len(got) != len(tc.want) {
				t.Fatalf("problems:\n%s\nwant %d", strings.Join(got, "\n"), len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %q does not mention %q", got[i], w)
				}
			}
		})
	}
}

func TestCopyPathsPerVersion(t *testing.T) {
	s := cluster.Settings{Values: map[string]string{"hba_file": "pg_hba.conf", "ident_file": "/etc/pg/pg_ident.conf", "ssl": "on",
		"ssl_cert_file": "server.crt", "ssl_key_file": "", "stats_temp_directory": "/var/run/postgresql/13-main.pg_stat_tmp"}}
	got := copyPaths(s, "/d.sdr/new")
	want := map[string]string{"hba_file": "/d.sdr/new/pg_hba.conf", "ident_file": "/etc/pg/pg_ident.conf",
		"ssl_cert_file": "/d.sdr/new/server.crt", "stats_temp_directory": "/var/run/postgresql"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("copyPaths = %v, want %v", got, want)
	}
}

// TestConfFromFileSettings: a running server's config_file and
// pg_file_settings give what postgres -C would print only when that is
// sure; otherwise postgres -C reads the configuration.
func TestConfFromFileSettings(t *testing.T) {
	pgctl := "/pg/dc2-a/data"
	deb := "/etc/postgresql/15/main"
	debRows := []fileSetting{{Name: "data_directory", Setting: "/var/lib/postgresql/15/main"},
		{Name: "hba_file", Setting: deb + "/pg_hba.conf"}, {Name: "ident_file", Setting: deb + "/pg_ident.conf"}, {Name: "port", Setting: "5432"}}
	cases := []struct {
		name       string
		confDir    string
		configFile string
		rows       []fileSetting
		want       map[string]string // nil: not sure
	}{
		{"pg_ctl layout, nothing set: the defaults beside postgresql.conf", pgctl + "/", pgctl + "/postgresql.conf", []fileSetting{{Name: "port", Setting: "5433"}},
			map[string]string{"config_file": pgctl + "/postgresql.conf", "data_directory": pgctl, "hba_file": pgctl + "/pg_hba.conf", "ident_file": pgctl + "/pg_ident.conf"}},
		{"Debian layout: the files' absolute paths", deb, deb + "/postgresql.conf", debRows,
			map[string]string{"config_file": deb + "/postgresql.conf", "data_directory": "/var/lib/postgresql/15/main", "hba_file": deb + "/pg_hba.conf", "ident_file": deb + "/pg_ident.conf"}},
		{"the last line wins, names in any case", pgctl, pgctl + "/postgresql.conf", []fileSetting{{Name: "hba_file", Setting: "/a/pg_hba.conf"}, {Name: "HBA_File", Setting: "/b/pg_hba.conf"}},
			map[string]string{"config_file": pgctl + "/postgresql.conf", "data_directory": pgctl, "hba_file": "/b/pg_hba.conf", "ident_file": pgctl + "/pg_ident.conf"}},
		{"the server reads another postgresql.conf", deb, "/etc/postgresql/15/other/postgresql.conf", debRows, nil},
		{"a line with an error (a change waiting for a restart)", deb, deb + "/postgresql.conf",
			append(append([]fileSetting{}, debRows...), fileSetting{Name: "hba_file", Setting: deb + "/new_hba.conf", Error: "setting could not be applied"}), nil},
		{"an error on another setting", pgctl, pgctl + "/postgresql.conf", []fileSetting{{Name: "shared_buffers", Setting: "1TB", Error: "setting could not be applied"}}, nil},
		{"a relative path", pgctl, pgctl + "/postgresql.conf", []fileSetting{{Name: "hba_file", Setting: "conf/pg_hba.conf"}}, nil},
		{"a path postgres would print cleaned", pgctl, pgctl + "/postgresql.conf", []fileSetting{{Name: "ident_file", Setting: "/etc/pg//pg_ident.conf"}}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, ok := confFromFileSettings(c.confDir, c.configFile, c.rows)
			if c.want == nil {
				if ok {
					t.Fatalf("sure, with %v; want postgres -C to read it", s.Values)
				}
				return
			}
			if !ok || !reflect.DeepEqual(s.Values, c.want) {
				t.Fatalf("got %v (sure %v), want %v", s.Values, ok, c.want)
			}
		})
	}
}
