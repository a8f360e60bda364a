package cluster

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

const validYAML = `
name: pair1
replication:
  user: repl
  password_file: /etc/sdr/repl.password
ssh:
  identity_file: /etc/sdr/id_ed25519
  known_hosts: /etc/sdr/known_hosts
timeouts:
  connect: 5s
primary: dc1
clusters:
  dc1:
    main: dc1-a
    nodes:
      - name: dc1-a
        host: 10.0.1.10
        data_dir: /var/lib/postgresql/15/main
      - name: dc1-b
        host: 10.0.1.11
        data_dir: /var/lib/postgresql/15/main
  dc2:
    main: dc2-a
    nodes:
      - name: dc2-a
        host: 10.0.2.10
        data_dir: /var/lib/postgresql/15/main
      - name: dc2-b
        host: 10.0.2.11
        ssh_port: 2222
        ssh_user: pg
        pg_port: 5433
        data_dir: /srv/pg
        bin_dir: /opt/pg/bin
        socket_dir: /tmp
        log_file: /var/log/pg.log
`

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sdr.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustLoad(t *testing.T) *Config {
	t.Helper()
	c, err := Load(writeConfig(t, validYAML))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLoadValidWithDefaults(t *testing.T) {
	c := mustLoad(t)
	if c.Postgres.User != "postgres" || c.Postgres.Database != "postgres" {
		t.Errorf("postgres defaults: %+v", c.Postgres)
	}
	if c.Timeouts.Connect.Duration != 5*time.Second || c.Timeouts.Command.Duration != 2*time.Minute || c.Timeouts.Wait.Duration != 30*time.Minute {
		t.Errorf("timeouts: %+v", c.Timeouts)
	}
	want := Node{Name: "dc2-a", Host: "10.0.2.10", SSHPort: 22, SSHUser: "postgres", PGPort: 5432,
		DataDir: "/var/lib/postgresql/15/main", BinDir: "/usr/lib/postgresql/15/bin", SocketDir: "/var/run/postgresql",
		LogFile: "/var/lib/postgresql/15/main.sdr/postgresql.log", Service: Service{Manager: ManagerPgCtl}}
	if got := *c.MainStandby(); got != want {
		t.Errorf("main standby:\n got %+v\nwant %+v", got, want)
	}
	explicit := Node{Name: "dc2-b", Host: "10.0.2.11", SSHPort: 2222, SSHUser: "pg", PGPort: 5433, DataDir: "/srv/pg",
		BinDir: "/opt/pg/bin", SocketDir: "/tmp", LogFile: "/var/log/pg.log", Service: Service{Manager: ManagerPgCtl}}
	if got := c.StandbyCascades(); !reflect.DeepEqual(got, []Node{explicit}) {
		t.Errorf("cascades: %+v", got)
	}
	if n, ok := c.Node("dc1-b"); !ok || n.Host != "10.0.1.11" {
		t.Errorf("Node(dc1-b) = %+v, %v", n, ok)
	}
	if _, ok := c.Node("dc9"); ok {
		t.Error("Node(dc9) found")
	}
	if !c.IsPrimaryNode("dc1-a") || c.IsPrimaryNode("dc2-a") {
		t.Error("IsPrimaryNode")
	}
}

func TestValidateProblems(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(c *Config)
		field string
	}{
		{"name missing", func(c *Config) { c.Name = "" }, "name"},
		{"name bad", func(c *Config) { c.Name = "Pair-1" }, "name"},
		{"name too long", func(c *Config) { c.Name = "a" + strings.Repeat("b", 31) }, "name"},
		{"repl user missing", func(c *Config) { c.Replication.User = "" }, "replication.user"},
		{"repl user not identifier", func(c *Config) { c.Replication.User = "repl user" }, "replication.user"},
		{"no password source", func(c *Config) { c.Replication.PasswordFile = "" }, "replication.password_file"},
		{"two password sources", func(c *Config) { c.Replication.PasswordEnv = "PW" }, "replication.password_env"},
		{"bad env name", func(c *Config) { c.Replication.PasswordFile, c.Replication.PasswordEnv = "", "PW-1" }, "replication.password_env"},
		{"known_hosts missing", func(c *Config) { c.SSH.KnownHosts = "" }, "ssh.known_hosts"},
		{"identity missing", func(c *Config) { c.SSH.IdentityFile = "" }, "ssh.identity_file"},
		{"no primary nodes", func(c *Config) { c.Primary.Nodes = nil }, "clusters.dc1.nodes"},
		{"no standby nodes", func(c *Config) { c.Standby.Nodes = nil }, "clusters.dc2.nodes"},
		{"node name missing", func(c *Config) { c.Standby.Nodes[1].Name = "" }, "clusters.dc2.nodes[1].name"},
		{"node name bad", func(c *Config) { c.Primary.Nodes[0].Name = "DC1" }, "clusters.dc1.nodes[0].name"},
		{"node name duplicate across clusters", func(c *Config) { c.Standby.Nodes[1].Name = "dc1-a" }, "clusters.dc2.nodes[1].name"},
		{"host missing", func(c *Config) { c.Primary.Nodes[1].Host = "" }, "clusters.dc1.nodes[1].host"},
		{"host bad", func(c *Config) { c.Primary.Nodes[1].Host = "a b" }, "clusters.dc1.nodes[1].host"},
		{"ssh port zero", func(c *Config) { c.Standby.Nodes[0].SSHPort = -1 }, "clusters.dc2.nodes[0].ssh_port"},
		{"pg port too big", func(c *Config) { c.Standby.Nodes[0].PGPort = 70000 }, "clusters.dc2.nodes[0].pg_port"},
		{"data dir relative", func(c *Config) { c.Standby.Nodes[1].DataDir = "srv/pg" }, "clusters.dc2.nodes[1].data_dir"},
		{"data dir unclean", func(c *Config) { c.Standby.Nodes[1].DataDir = "/srv/pg/" }, "clusters.dc2.nodes[1].data_dir"},
		{"data dir root", func(c *Config) { c.Standby.Nodes[1].DataDir = "/" }, "clusters.dc2.nodes[1].data_dir"},
		{"data dir missing", func(c *Config) { c.Standby.Nodes[1].DataDir = "" }, "clusters.dc2.nodes[1].data_dir"},
		{"bin dir relative", func(c *Config) { c.Standby.Nodes[1].BinDir = "bin" }, "clusters.dc2.nodes[1].bin_dir"},
		{"socket dir relative", func(c *Config) { c.Standby.Nodes[1].SocketDir = "tmp" }, "clusters.dc2.nodes[1].socket_dir"},
		{"log file inside data dir", func(c *Config) { c.Standby.Nodes[1].LogFile = "/srv/pg/log" }, "clusters.dc2.nodes[1].log_file"},
		{"same host and data dir on both sides", func(c *Config) { c.Standby.Nodes[0].Host = "10.0.1.10" }, "clusters.dc2.nodes[0].data_dir"},
		{"same host and pg port", func(c *Config) {
			c.Primary.Nodes[1].Host = "10.0.1.10"
			c.Primary.Nodes[1].DataDir = "/srv/other"
		}, "clusters.dc1.nodes[1].pg_port"},
		{"standby main missing", func(c *Config) { c.Standby.Main = "" }, "clusters.dc2.main"},
		{"standby main unknown", func(c *Config) { c.Standby.Main = "dc9" }, "clusters.dc2.main"},
		{"standby main is a primary node", func(c *Config) { c.Standby.Main = "dc1-a" }, "clusters.dc2.main"},
		{"primary cluster's main unknown", func(c *Config) { c.Primary.Main = "dc9" }, "clusters.dc1.main"},
		{"primary cluster's main missing", func(c *Config) { c.Primary.Main = "" }, "clusters.dc1.main"},
		{"timeout negative", func(c *Config) { c.Timeouts.Wait.Duration = -time.Second }, "timeouts.wait"},
		{"repl user is postgres.user", func(c *Config) { c.Replication.User = "postgres" }, "replication.user"},
		{"repl user is a custom postgres.user", func(c *Config) { c.Postgres.User, c.Replication.User = "dba", "dba" }, "replication.user"},
		{"copy.compress unknown method", func(c *Config) { c.Copy.Compress = "server-bzip2" }, "copy.compress"},
		{"copy.compress client-side", func(c *Config) { c.Copy.Compress = "client-zstd" }, "copy.compress"},
		{"copy.compress without server-", func(c *Config) { c.Copy.Compress = "zstd" }, "copy.compress"},
		{"copy.compress level too high", func(c *Config) { c.Copy.Compress = "server-gzip:10" }, "copy.compress"},
		{"copy.compress level zero", func(c *Config) { c.Copy.Compress = "server-lz4:0" }, "copy.compress"},
		{"copy.compress detail words", func(c *Config) { c.Copy.Compress = "server-zstd:level=3,workers=2" }, "copy.compress"},
		{"copy.max_rate unit", func(c *Config) { c.Copy.MaxRate = "100MB" }, "copy.max_rate"},
		{"copy.max_rate too low", func(c *Config) { c.Copy.MaxRate = "31k" }, "copy.max_rate"},
		{"copy.max_rate too high", func(c *Config) { c.Copy.MaxRate = "1025M" }, "copy.max_rate"},
		{"copy.max_rate huge", func(c *Config) { c.Copy.MaxRate = "99999999999999999999" }, "copy.max_rate"},
		{"host all", func(c *Config) { c.Standby.Nodes[1].Host = "all" }, "clusters.dc2.nodes[1].host"},
		{"host ALL", func(c *Config) { c.Standby.Nodes[1].Host = "ALL" }, "clusters.dc2.nodes[1].host"},
		{"host samehost", func(c *Config) { c.Standby.Nodes[0].Host = "samehost" }, "clusters.dc2.nodes[0].host"},
		{"host samenet", func(c *Config) { c.Primary.Nodes[0].Host = "samenet" }, "clusters.dc1.nodes[0].host"},
		{"host domain suffix", func(c *Config) { c.Standby.Nodes[1].Host = ".example.com" }, "clusters.dc2.nodes[1].host"},
		{"host group", func(c *Config) { c.Standby.Nodes[1].Host = "+admins" }, "clusters.dc2.nodes[1].host"},
		{"host file", func(c *Config) { c.Standby.Nodes[1].Host = "@hosts" }, "clusters.dc2.nodes[1].host"},
		{"host short IPv4", func(c *Config) { c.Standby.Nodes[1].Host = "10.0.2" }, "clusters.dc2.nodes[1].host"},
		{"host IPv4 out of range", func(c *Config) { c.Standby.Nodes[1].Host = "10.0.2.300" }, "clusters.dc2.nodes[1].host"},
		{"host IPv6 in brackets", func(c *Config) { c.Standby.Nodes[1].Host = "[::1]" }, "clusters.dc2.nodes[1].host"},
		{"host IPv6 with a zone", func(c *Config) { c.Standby.Nodes[1].Host = "fe80::1%eth0" }, "clusters.dc2.nodes[1].host"},
		{"host with a port", func(c *Config) { c.Standby.Nodes[1].Host = "db1:5432" }, "clusters.dc2.nodes[1].host"},
		{"host IPv6 bad", func(c *Config) { c.Standby.Nodes[1].Host = "fd00:::1" }, "clusters.dc2.nodes[1].host"},
		{"host name with an empty label", func(c *Config) { c.Standby.Nodes[1].Host = "db..example.com" }, "clusters.dc2.nodes[1].host"},
		{"host name label ends in -", func(c *Config) { c.Standby.Nodes[1].Host = "db-.example.com" }, "clusters.dc2.nodes[1].host"},
		{"replication host keyword", func(c *Config) { c.Standby.Nodes[1].ReplicationHost = "samenet" }, "clusters.dc2.nodes[1].replication_host"},
		{"replication host bad", func(c *Config) { c.Standby.Nodes[1].ReplicationHost = "a b" }, "clusters.dc2.nodes[1].replication_host"},
		{"replication host and pg port of another node", func(c *Config) {
			c.Standby.Nodes[0].ReplicationHost = "10.0.2.11"
			c.Standby.Nodes[0].PGPort = 5433
		}, "clusters.dc2.nodes[1].pg_port"},
		{"same IPv6 spelled twice with the same pg port", func(c *Config) {
			c.Standby.Nodes[0].Host, c.Standby.Nodes[1].Host = "fd00::1", "fd00:0:0::1"
			c.Standby.Nodes[1].PGPort = 5432
		}, "clusters.dc2.nodes[1].pg_port"},
		{"defaults name", func(c *Config) { c.Standby.Defaults.Name = "x" }, "clusters.dc2.defaults.name"},
		{"defaults host", func(c *Config) { c.Primary.Defaults.Host = "10.0.0.1" }, "clusters.dc1.defaults.host"},
		{"defaults local", func(c *Config) { c.Primary.Defaults.Local = true }, "clusters.dc1.defaults.local"},
		{"config dir relative", func(c *Config) { c.Standby.Nodes[0].ConfigDir = "etc/pg" }, "clusters.dc2.nodes[0].config_dir"},
		{"config dir inside the data dir", func(c *Config) { c.Standby.Nodes[1].ConfigDir = "/srv/pg/conf" }, "clusters.dc2.nodes[1].config_dir"},
		{"unknown manager", func(c *Config) { c.Standby.Nodes[0].Service.Manager = "runit" }, "clusters.dc2.nodes[0].service.manager"},
		{"pg_ctlcluster without cluster", func(c *Config) {
			c.Standby.Nodes[0].Service = Service{Manager: ManagerPgCtlCluster, Version: "15"}
		}, "clusters.dc2.nodes[0].service.version"},
		{"pg_ctlcluster bad version", func(c *Config) {
			c.Standby.Nodes[0].Service = Service{Manager: ManagerPgCtlCluster, Version: "fifteen", Cluster: "main"}
		}, "clusters.dc2.nodes[0].service.version"},
		{"pg_ctlcluster cluster other than config_dir's", func(c *Config) {
			c.Standby.Nodes[0].ConfigDir = "/etc/postgresql/15/main"
			c.Standby.Nodes[0].Service = Service{Manager: ManagerPgCtlCluster, Version: "15", Cluster: "dr"}
		}, "clusters.dc2.nodes[0].service.cluster"},
		{"pg_ctlcluster with a unit", func(c *Config) {
			c.Standby.Nodes[0].Service = Service{Manager: ManagerPgCtlCluster, Version: "15", Cluster: "main", Unit: "postgresql@15-main"}
		}, "clusters.dc2.nodes[0].service.unit"},
		{"systemd without unit", func(c *Config) {
			c.Standby.Nodes[0].Service = Service{Manager: ManagerSystemd, Systemctl: "systemctl"}
		}, "clusters.dc2.nodes[0].service.unit"},
		{"systemd bad unit", func(c *Config) {
			c.Standby.Nodes[0].Service = Service{Manager: ManagerSystemd, Unit: "postgresql 15", Systemctl: "systemctl"}
		}, "clusters.dc2.nodes[0].service.unit"},
		{"systemd with a start command", func(c *Config) {
			c.Standby.Nodes[0].Service = Service{Manager: ManagerSystemd, Unit: "postgresql-15", Systemctl: "systemctl", Start: "x"}
		}, "clusters.dc2.nodes[0].service.start"},
		{"commands without status", func(c *Config) {
			c.Standby.Nodes[0].Service = Service{Manager: ManagerCommands, Start: "a", Stop: "b"}
		}, "clusters.dc2.nodes[0].service.status"},
		{"pg_ctl with a unit", func(c *Config) { c.Standby.Nodes[0].Service.Unit = "postgresql-15" }, "clusters.dc2.nodes[0].service.unit"},
		// Two long names cut to the same prefix whose hashes share their
		// first 4 bytes: sha256("pair1\x00" + n50 + "-4397") and ... "-66406".
		{"slot names collide", func(c *Config) {
			n50 := strings.Repeat("n", 50)
			c.Standby.Nodes[0].Name, c.Standby.Nodes[1].Name, c.Standby.Main = n50+"-4397", n50+"-66406", n50+"-4397"
		},
			"clusters.dc2.nodes[1].name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := mustLoad(t)
			tc.edit(c)
			err := c.Validate()
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("want *ConfigError, got %v", err)
			}
			if ce.Field != tc.field {
				t.Fatalf("Field = %q, want %q (%v)", ce.Field, tc.field, err)
			}
			if !errors.Is(err, ErrBadConfig) {
				t.Fatal("does not wrap ErrBadConfig")
			}
		})
	}
}

func TestConfigErrorMessage(t *testing.T) {
	c := mustLoad(t)
	c.Path = "/etc/sdr.yaml"
	c.Standby.Main = "dc9"
	want := `config /etc/sdr.yaml: clusters.dc2.main: "dc9" is not a node of cluster dc2`
	if err := c.Validate(); err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
}

func TestLoadYAMLProblems(t *testing.T) {
	cases := []struct {
		name    string
		replace [2]string // old, new in validYAML
		field   string
	}{
		{"type error", [2]string{"pg_port: 5433", "pg_port: abc"}, "clusters.dc2.nodes[1].pg_port"},
		{"unknown field", [2]string{"ssh_user: pg", "ssh_usr: pg"}, "clusters.dc2.nodes[1].ssh_usr"},
		{"unknown top-level field", [2]string{"name: pair1", "name: pair1\nnmae: x"}, "nmae"},
		{"bad duration", [2]string{"connect: 5s", "connect: five"}, "timeouts.connect"},
		{"duration not scalar", [2]string{"connect: 5s", "connect: [1]"}, "timeouts.connect"},
		{"validation after load", [2]string{"main: dc2-a", "main: dc9"}, "clusters.dc2.main"},
		{"syntax error", [2]string{"name: pair1", "name: [pair1"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := writeConfig(t, strings.Replace(validYAML, tc.replace[0], tc.replace[1], 1))
			_, err := Load(p)
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("want *ConfigError, got %v", err)
			}
			if ce.Field != tc.field {
				t.Fatalf("Field = %q, want %q (%v)", ce.Field, tc.field, err)
			}
			if ce.File != p || !strings.Contains(err.Error(), p) {
				t.Fatalf("error does not name the file: %v", err)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
		if !errors.Is(err, os.ErrNotExist) || !errors.Is(err, ErrBadConfig) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("empty file", func(t *testing.T) {
		if _, err := Load(writeConfig(t, "")); !errors.Is(err, ErrBadConfig) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("two documents", func(t *testing.T) {
		if _, err := Load(writeConfig(t, validYAML+"---\nname: x\n")); !errors.Is(err, ErrBadConfig) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestPassword(t *testing.T) {
	dir := t.TempDir()
	n := 0
	file := func(content string) string {
		n++
		p := filepath.Join(dir, "pw"+strconv.Itoa(n))
		os.WriteFile(p, []byte(content), 0o600)
		return p
	}
	cases := []struct {
		name    string
		rep     Replication
		env     map[string]string
		want    string
		wantErr string // substring naming the source
	}{
		{"file with newline", Replication{PasswordFile: file("s3cr:et\n")}, nil, "s3cr:et", ""},
		{"file with crlf", Replication{PasswordFile: file("abc\r\n")}, nil, "abc", ""},
		{"file keeps inner newlines", Replication{PasswordFile: file("a\nb\n\n")}, nil, "a\nb\n", ""},
		{"file missing", Replication{PasswordFile: filepath.Join(dir, "none")}, nil, "", "replication.password_file " + filepath.Join(dir, "none") + ": no such file"},
		{"file empty", Replication{PasswordFile: file("\n")}, nil, "", "is empty"},
		{"env", Replication{PasswordEnv: "SDR_PW_T"}, map[string]string{"SDR_PW_T": "pw"}, "pw", ""},
		{"env unset", Replication{PasswordEnv: "SDR_PW_UNSET_T"}, nil, "", "replication.password_env SDR_PW_UNSET_T"},
		{"env empty", Replication{PasswordEnv: "SDR_PW_T"}, map[string]string{"SDR_PW_T": ""}, "", "SDR_PW_T: the variable is empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			c := &Config{Replication: tc.rep}
			got, err := c.Password()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrNoPassword) {
					t.Fatalf("got %q, %v; want error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v", got, err)
			}
		})
	}
}

func TestInputs(t *testing.T) {
	c := mustLoad(t)
	in := c.Inputs()
	want := map[string]string{
		"name":                          "pair1",
		"replication.user":              "repl",
		"replication.password_file":     "/etc/sdr/repl.password",
		"standby.main":                  "dc2-a",
		"primary.nodes":                 "dc1-a,dc1-b",
		"primary.nodes[dc1-a].data_dir": "/var/lib/postgresql/15/main",
		"standby.nodes[dc2-b].pg_port":  "5433",
		"standby.nodes[dc2-a].log_file": "/var/lib/postgresql/15/main.sdr/postgresql.log",
		"standby.nodes[dc2-b].local":    "false",
	}
	for k, v := range want {
		if in[k] != v {
			t.Errorf("%s = %q, want %q", k, in[k], v)
		}
	}
	if _, ok := in["replication.password_env"]; ok {
		t.Error("password_env present though unset")
	}
	// Deterministic, and changes when a node setting changes.
	if !reflect.DeepEqual(in, mustLoad(t).Inputs()) {
		t.Error("not deterministic")
	}
	c.Standby.Nodes[1].DataDir = "/srv/pg2"
	if c.Inputs()["standby.nodes[dc2-b].data_dir"] != "/srv/pg2" {
		t.Error("change not seen")
	}
	// Never the password itself.
	t.Setenv("SDR_SECRET_T", "hunter2")
	c.Replication = Replication{User: "repl", PasswordEnv: "SDR_SECRET_T"}
	for k, v := range c.Inputs() {
		if strings.Contains(v, "hunter2") {
			t.Errorf("%s holds the password", k)
		}
	}
}

func TestValidateAcceptsHosts(t *testing.T) {
	for _, tc := range []struct{ name, host string }{
		{"IPv4", "10.0.2.11"},
		{"IPv6", "fd00::2:11"},
		{"IPv6 loopback", "::1"},
		{"host name", "dc2-b.example.com"},
		{"short host name", "dc2b"},
		{"host name with a keyword inside", "all-db1"},
		{"host name ending in a dot", "dc2-b.example.com."},
		{"localhost", "localhost"},
		{"IPv6 full form", "fd00:0:0:0:0:0:2:11"},
		{"IPv4-mapped IPv6", "::ffff:10.0.2.11"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustLoad(t)
			c.Standby.Nodes[1].Host = tc.host
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
}

func TestSlotName(t *testing.T) {
	cases := []struct {
		name, pair, node string
		want             string // "" when only the shape is checked
		hashed           bool
	}{
		{name: "plain", pair: "pair1", node: "dc2a", want: "sdr_pair1_dc2a"},
		{name: "digits", pair: "p2", node: "7", want: "sdr_p2_7"},
		{name: "hyphen in node", pair: "pair1", node: "dc2-a", hashed: true},
		{name: "underscore in node", pair: "pair1", node: "dc2_a", hashed: true},
		{name: "underscore in pair", pair: "a_b", node: "c", hashed: true},
		{name: "upper case", pair: "pair1", node: "DC2.B", hashed: true},
		{name: "long", pair: "pair1", node: strings.Repeat("n", 70), hashed: true},
	}
	hashedRE := regexp.MustCompile(`^sdr_[a-z0-9_]+_[0-9a-f]{8}$`)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := SlotName(tc.pair, tc.node)
			if tc.want != "" && got != tc.want {
				t.Errorf("SlotName(%q, %q) = %q, want %q", tc.pair, tc.node, got, tc.want)
			}
			if tc.hashed && !hashedRE.MatchString(got) {
				t.Errorf("SlotName(%q, %q) = %q, want a sanitised name ending in _<8 hex digits>", tc.pair, tc.node, got)
			}
			if len(got) > 63 {
				t.Errorf("SlotName(%q, %q) = %q is longer than 63", tc.pair, tc.node, got)
			}
			if app := AppName(tc.pair, tc.node); app != got {
				t.Errorf("AppName = %q, SlotName = %q", app, got)
			}
			if again := SlotName(tc.pair, tc.node); again != got {
				t.Errorf("SlotName is not stable: %q then %q", got, again)
			}
		})
	}
}

// TestSlotNameInjective checks the collisions the plain replace-by-"_"
// scheme had: each group must give distinct names.
func TestSlotNameInjective(t *testing.T) {
	groups := []struct {
		name  string
		pairs [][2]string // pair, node
	}{
		{"hyphen and underscore", [][2]string{{"pair1", "dc2-a"}, {"pair1", "dc2_a"}, {"pair1", "dc2a"}}},
		{"pair and node split", [][2]string{{"a_b", "c"}, {"a", "b_c"}, {"a", "b-c"}}},
		{"plain vs sanitised", [][2]string{{"a", "b"}, {"a", "B"}}},
		{"long names differing at the end", [][2]string{{"pair1", strings.Repeat("n", 70) + "a"}, {"pair1", strings.Repeat("n", 70) + "b"}}},
		{"hash suffix lookalike", [][2]string{{"a", "b_0123abcd"}, {"a", "b"}}},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			seen := map[string][2]string{}
			for _, pn := range g.pairs {
				got := SlotName(pn[0], pn[1])
				if prev, ok := seen[got]; ok {
					t.Errorf("%v and %v both give %q", prev, pn, got)
				}
				seen[got] = pn
			}
		})
	}
}

func TestClustersAndRoles(t *testing.T) {
	c := mustLoad(t)
	if c.PrimaryName != "dc1" || c.StandbyName != "dc2" || c.Standby.Main != "dc2-a" || c.Primary.Nodes[0].Name != "dc1-a" {
		t.Fatalf("roles: primary %s (%v), standby %s main %s", c.PrimaryName, c.Primary.Nodes, c.StandbyName, c.Standby.Main)
	}
	swapped, err := Load(writeConfig(t, strings.Replace(validYAML, "primary: dc1", "primary: dc2", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if swapped.PrimaryName != "dc2" || swapped.StandbyName != "dc1" || swapped.Standby.Main != "dc1-a" || swapped.Primary.Nodes[0].Name != "dc2-a" {
		t.Fatalf("primary: dc2 gives primary %s, standby %s main %s", swapped.PrimaryName, swapped.StandbyName, swapped.Standby.Main)
	}
	if got := swapped.MainStandby(); got == nil || got.Name != "dc1-a" {
		t.Fatalf("main standby after the roles moved: %v", got)
	}
	if swapped.Inputs()["primary"] != "dc2" {
		t.Errorf("the cluster that is primary is an input")
	}
}

func TestClusterShapeProblems(t *testing.T) {
	cases := []struct {
		name    string
		replace [2]string
		field   string
		says    string
	}{
		{"primary missing", [2]string{"primary: dc1\n", ""}, "primary", "is required"},
		{"primary unknown", [2]string{"primary: dc1", "primary: dc3"}, "primary", "not a cluster"},
		{"clusters missing", [2]string{"clusters:", "clusterz:"}, "clusterz", ""},
		{"three clusters", [2]string{"  dc2:\n", "  dc3:\n    nodes: []\n  dc2:\n"}, "clusters", "exactly two"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			text := strings.Replace(validYAML, tc.replace[0], tc.replace[1], 1)
			_, err := Load(writeConfig(t, text))
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("want *ConfigError, got %v", err)
			}
			if tc.field != "" && ce.Field != tc.field {
				t.Fatalf("Field = %q, want %q (%v)", ce.Field, tc.field, err)
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("error %q should say %q", err, tc.says)
			}
		})
	}
	old := `
name: pair1
replication: {user: repl, password_file: /x}
ssh: {identity_file: /k, known_hosts: /h}
primary:
  nodes: [{name: a, host: 10.0.0.1, data_dir: /pg}]
standby:
  main: b
  nodes: [{name: b, host: 10.0.0.2, data_dir: /pg}]
`
	_, err := Load(writeConfig(t, old))
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Field != "primary" || !strings.Contains(err.Error(), "clusters:") {
		t.Fatalf("the old format should be refused naming primary: and clusters:, got %v", err)
	}
}

const debianYAML = `
name: pair1
replication:
  user: repl
  password_env: PW
ssh:
  identity_file: /etc/sdr/id
  known_hosts: /etc/sdr/known_hosts
primary: dc1
clusters:
  dc1:
    main: dc1-a
    defaults:
      data_dir: /var/lib/postgresql/16/main
      config_dir: /etc/postgresql/16/main
      service:
        manager: pg_ctlcluster
    nodes:
      - name: dc1-a
        host: db1.dc1.example.com
        replication_host: 10.1.0.1
      - name: dc1-b
        host: db2.dc1.example.com
        pg_port: 5433
        config_dir: /etc/postgresql/16/dr
        data_dir: /srv/pg/16/dr
  dc2:
    main: dc2-a
    defaults:
      service:
        manager: systemd
        version: "16"
        cluster: main
    nodes:
      - name: dc2-a
        host: "fd00::21"
        data_dir: /var/lib/postgresql/16/main
      - name: dc2-b
        host: "fd00::22"
        data_dir: /var/lib/pgsql/16/data
        bin_dir: /usr/pgsql-16/bin
        service:
          unit: postgresql-16
          systemctl: systemctl
`

func TestDefaultsAndDerivedServiceSettings(t *testing.T) {
	c, err := Load(writeConfig(t, debianYAML))
	if err != nil {
		t.Fatal(err)
	}
	get := func(name string) *Node {
		n, ok := c.Node(name)
		if !ok {
			t.Fatalf("no node %s", name)
		}
		return n
	}
	cases := []struct {
		name string
		got  Node
		want Node
	}{
		{"cluster defaults, Debian cluster from config_dir", *get("dc1-a"), Node{Name: "dc1-a", Host: "db1.dc1.example.com", ReplicationHost: "10.1.0.1",
			SSHPort: 22, SSHUser: "postgres", PGPort: 5432, DataDir: "/var/lib/postgresql/16/main", BinDir: "/usr/lib/postgresql/16/bin",
			SocketDir: "/var/run/postgresql", LogFile: "/var/lib/postgresql/16/main.sdr/postgresql.log", ConfigDir: "/etc/postgresql/16/main",
			Service: Service{Manager: ManagerPgCtlCluster, Version: "16", Cluster: "main"}}},
		{"node settings win over defaults", *get("dc1-b"), Node{Name: "dc1-b", Host: "db2.dc1.example.com",
			SSHPort: 22, SSHUser: "postgres", PGPort: 5433, DataDir: "/srv/pg/16/dr", BinDir: "/usr/lib/postgresql/16/bin",
			SocketDir: "/var/run/postgresql", LogFile: "/srv/pg/16/dr.sdr/postgresql.log", ConfigDir: "/etc/postgresql/16/dr",
			Service: Service{Manager: ManagerPgCtlCluster, Version: "16", Cluster: "dr"}}},
		{"systemd unit from the Debian cluster", *get("dc2-a"), Node{Name: "dc2-a", Host: "fd00::21",
			SSHPort: 22, SSHUser: "postgres", PGPort: 5432, DataDir: "/var/lib/postgresql/16/main", BinDir: "/usr/lib/postgresql/16/bin",
			SocketDir: "/var/run/postgresql", LogFile: "/var/lib/postgresql/16/main.sdr/postgresql.log",
			Service: Service{Manager: ManagerSystemd, Version: "16", Cluster: "main", Unit: "postgresql@16-main", Systemctl: DefaultSystemctl}}},
		{"RHEL unit given on the node", *get("dc2-b"), Node{Name: "dc2-b", Host: "fd00::22",
			SSHPort: 22, SSHUser: "postgres", PGPort: 5432, DataDir: "/var/lib/pgsql/16/data", BinDir: "/usr/pgsql-16/bin",
			SocketDir: "/var/run/postgresql", LogFile: "/var/lib/pgsql/16/data.sdr/postgresql.log",
			Service: Service{Manager: ManagerSystemd, Version: "16", Cluster: "main", Unit: "postgresql-16", Systemctl: "systemctl"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("\n got %+v\nwant %+v", tc.got, tc.want)
			}
		})
	}
	if h := get("dc1-a").ReplHost(); h != "10.1.0.1" {
		t.Errorf("ReplHost of dc1-a = %q, want replication_host", h)
	}
	if h := get("dc1-b").ReplHost(); h != "db2.dc1.example.com" {
		t.Errorf("ReplHost of dc1-b = %q, want host", h)
	}
	if d := get("dc2-b").ConfDir(); d != "/var/lib/pgsql/16/data" {
		t.Errorf("ConfDir without config_dir = %q, want the data directory", d)
	}
}

func TestInputsOfNewSettings(t *testing.T) {
	// A config without the settings added for real servers records the
	// same inputs as before they existed.
	c := mustLoad(t)
	for k := range c.Inputs() {
		for _, f := range []string{"replication_host", "config_dir", "service."} {
			if strings.Contains(k, f) {
				t.Errorf("input %s recorded for a config that does not set it", k)
			}
		}
	}
	d, err := Load(writeConfig(t, debianYAML))
	if err != nil {
		t.Fatal(err)
	}
	in := d.Inputs()
	for k, v := range map[string]string{
		"primary.nodes[dc1-a].replication_host": "10.1.0.1",
		"primary.nodes[dc1-a].config_dir":       "/etc/postgresql/16/main",
		"primary.nodes[dc1-a].service.manager":  "pg_ctlcluster",
		"standby.nodes[dc2-b].service.unit":     "postgresql-16",
	} {
		if in[k] != v {
			t.Errorf("%s = %q, want %q", k, in[k], v)
		}
	}
}

func TestCopyOptions(t *testing.T) {
	cases := []struct {
		name          string
		o             CopyOptions
		method        string
		level, rateKB int
	}{
		{"none", CopyOptions{}, "", 0, 0},
		{"zstd", CopyOptions{Compress: "server-zstd"}, "zstd", 0, 0},
		{"gzip level", CopyOptions{Compress: "server-gzip:9"}, "gzip", 9, 0},
		{"lz4 level", CopyOptions{Compress: "server-lz4:12"}, "lz4", 12, 0},
		{"rate kB/s", CopyOptions{MaxRate: "32"}, "", 0, 32},
		{"rate k", CopyOptions{MaxRate: "2048k"}, "", 0, 2048},
		{"rate M", CopyOptions{MaxRate: "100M"}, "", 0, 102400},
		{"rate 1024M", CopyOptions{MaxRate: "1024M", Compress: "server-zstd:22"}, "zstd", 22, 1048576},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if f, p := tc.o.problem(); p != "" {
				t.Fatalf("refused: %s: %s", f, p)
			}
			m, l, ok := tc.o.CompressMethod()
			if m != tc.method || l != tc.level || ok != (tc.method != "") {
				t.Errorf("CompressMethod = %q %d %v, want %q %d", m, l, ok, tc.method, tc.level)
			}
			if got := tc.o.MaxRateKB(); got != tc.rateKB {
				t.Errorf("MaxRateKB = %d, want %d", got, tc.rateKB)
			}
		})
	}
}

func TestInputsOfCopySettings(t *testing.T) {
	c := mustLoad(t)
	for k := range c.Inputs() {
		if strings.HasPrefix(k, "copy.") {
			t.Errorf("input %s recorded for a config without copy settings", k)
		}
	}
	c.Copy = CopyOptions{Compress: "server-lz4", MaxRate: "100M", FanOut: true}
	in := c.Inputs()
	for k, v := range map[string]string{"copy.compress": "server-lz4", "copy.max_rate": "100M", "copy.fan_out": "true"} {
		if in[k] != v {
			t.Errorf("%s = %q, want %q", k, in[k], v)
		}
	}
}

// TestDocExamplesLoad loads every complete config example of
// docs/config.md: the annotated one, and those for Debian and RHEL.
func TestDocExamplesLoad(t *testing.T) {
	raw, err := os.ReadFile("../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(raw), -1)
	cases := []struct {
		name    string
		heading string // the example's text starts after this
		check   func(t *testing.T, c *Config)
	}{
		{"annotated", "## Annotated example", func(t *testing.T, c *Config) {
			if n, _ := c.Node("dc1-b"); n.DataDir != "/var/lib/postgresql/15/main" {
				t.Errorf("dc1-b data_dir %q, want it from primary.defaults", n.DataDir)
			}
		}},
		{"Debian", "## Example: Debian or Ubuntu servers", func(t *testing.T, c *Config) {
			n, _ := c.Node("dc2-a")
			want := Service{Manager: ManagerSystemd, Version: "16", Cluster: "main", Unit: "postgresql@16-main", Systemctl: DefaultSystemctl}
			if n.Service != want || n.BinDir != "/usr/lib/postgresql/16/bin" || n.ReplHost() != "fd00:20::1" || !n.SeparateConfig() {
				t.Errorf("dc2-a = %+v", *n)
			}
		}},
		{"RHEL", "## Example: RHEL, Rocky or Alma servers", func(t *testing.T, c *Config) {
			n, _ := c.Node("dc2-b")
			if n.Service.Unit != "postgresql-17" || n.BinDir != "/usr/pgsql-17/bin" || n.SeparateConfig() || n.SocketDir != "/run/postgresql" {
				t.Errorf("dc2-b = %+v", *n)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			at := strings.Index(string(raw), tc.heading)
			if at < 0 {
				t.Fatalf("no %q in docs/config.md", tc.heading)
			}
			var text string
			for _, b := range blocks {
				if i := strings.Index(string(raw), b[0]); i > at {
					text = b[1]
					break
				}
			}
			t.Setenv("SDR_ERP_PASSWORD", "x")
			c, err := Parse("docs/config.md", []byte(text))
			if err != nil {
				t.Fatalf("the example does not load: %v\n%s", err, text)
			}
			tc.check(t, c)
		})
	}
}

func TestInputPath(t *testing.T) {
	c := mustLoad(t)
	for _, tc := range []struct{ name, want string }{
		{"standby.nodes[dc2-b].pg_port", "clusters." + c.StandbyName + ".nodes[dc2-b].pg_port"},
		{"primary.nodes[dc1-a].data_dir", "clusters." + c.PrimaryName + ".nodes[dc1-a].data_dir"},
		{"standby.nodes[dc2-a].service.unit", "clusters." + c.StandbyName + ".nodes[dc2-a].service.unit"},
		{"standby.main", "clusters." + c.StandbyName + ".main"},
		{"primary.nodes", "clusters." + c.PrimaryName + ".nodes"},
		{"standby.nodes[gone].pg_port", "standby.nodes[gone].pg_port"}, // no longer in the config
		{"standby.nodes[dc2-a]", "standby.nodes[dc2-a]"},
		{"replication.user", "replication.user"},
		{"action", "action"},
	} {
		if got := c.InputPath(tc.name); got != tc.want {
			t.Errorf("InputPath(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
	// Every node input of Inputs is named under clusters:.
	for k := range c.Inputs() {
		if strings.Contains(k, "nodes[") && !strings.HasPrefix(c.InputPath(k), "clusters.") {
			t.Errorf("InputPath(%q) = %q", k, c.InputPath(k))
		}
	}
}
