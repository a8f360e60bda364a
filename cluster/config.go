package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config describes one DR pair. The same file is used on both sides.
// See docs/config.md.
type Config struct {
	Name        string      `yaml:"name"`
	Replication Replication `yaml:"replication"`
	Postgres    PGAdmin     `yaml:"postgres"`
	SSH         SSHConfig   `yaml:"ssh"`
	Timeouts    Timeouts    `yaml:"timeouts"`
	// Copy is how the DR cluster's copy of the primary is made: WAN
	// options for the copy from the primary, and the fan-out copy.
	Copy CopyOptions `yaml:"copy"`
	// PrimaryCluster (`primary:`) names the cluster that is the primary
	// now. It is the one field an operator changes when the primary moves
	// (after a failover or a switchover).
	PrimaryCluster string `yaml:"primary"`
	// Clusters are the two clusters of the pair, by name (e.g. dc1, dc2).
	Clusters map[string]ClusterSpec `yaml:"clusters"`

	// Primary and Standby are the two clusters in their roles now, as
	// PrimaryCluster says (not in YAML): Primary is the cluster named by
	// primary:, Standby the other one, the DR side. Code works on these.
	Primary ClusterSpec `yaml:"-"`
	Standby ClusterSpec `yaml:"-"`
	// PrimaryName and StandbyName are their names in Clusters.
	PrimaryName string `yaml:"-"`
	StandbyName string `yaml:"-"`

	// Path is the file the config was loaded from (not in YAML).
	Path string `yaml:"-"`
}

// Replication names the replication role and where its password comes from.
type Replication struct {
	User         string `yaml:"user"`
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
}

// PGAdmin is how sdr itself connects to each node's PostgreSQL: through the
// node's Unix socket, as this database user (peer authentication as the
// node's OS user).
type PGAdmin struct {
	User     string `yaml:"user"`     // default "postgres"
	Database string `yaml:"database"` // default "postgres"
}

// SSHConfig is how sdr reaches nodes.
type SSHConfig struct {
	IdentityFile string `yaml:"identity_file"`
	KnownHosts   string `yaml:"known_hosts"`
	// InsecureIgnoreHostKey turns host key checking off. Loudly named on purpose.
	InsecureIgnoreHostKey bool `yaml:"insecure_ignore_host_key"`
}

// Timeouts bound remote calls and waits.
type Timeouts struct {
	Connect Duration `yaml:"connect"` // SSH and PostgreSQL connects; default 10s
	Command Duration `yaml:"command"` // one remote command or SQL call; default 2m
	Wait    Duration `yaml:"wait"`    // default for --timeout (waits for streaming, basebackup); default 30m
	// Keepalive is how often an SSH connection is asked whether it still
	// answers; one that leaves an ask unanswered for KeepaliveMisses ×
	// Keepalive is closed, so that what runs through it fails instead of
	// waiting for --timeout. Default 15s.
	Keepalive Duration `yaml:"keepalive"`
}

// KeepaliveMisses is how many keepalive intervals an SSH connection may
// leave an ask unanswered before it is taken for dead.
const KeepaliveMisses = 4

// CopyOptions are the settings of the copy from the primary (copy:). The
// WAN options apply only to the copy that crosses from the primary's data
// centre, never to a cascade's copy from the main standby.
type CopyOptions struct {
	// Compress is pg_basebackup's server-side compression of that copy:
	// "" (none), server-gzip, server-lz4 or server-zstd, optionally with
	// a level after ":" (server-zstd:3). PostgreSQL 15 and later.
	Compress string `yaml:"compress"`
	// MaxRate is pg_basebackup's --max-rate for that copy: a number of
	// kB/s, or with a k or M suffix (100M); 32k to 1024M. "" is no limit.
	MaxRate string `yaml:"max_rate"`
	// FanOut streams the one copy from the primary to every DR node at
	// the same time, instead of copying each cascade from the main
	// standby once the main standby runs.
	FanOut bool `yaml:"fan_out"`
}

// Duration is a time.Duration written as "10s" in YAML.
type Duration struct{ time.Duration }

// ClusterSpec is one cluster of the pair.
type ClusterSpec struct {
	// Defaults are node settings for every node of this cluster that does
	// not set them itself (all but name, host, replication_host and local).
	Defaults Node   `yaml:"defaults"`
	Nodes    []Node `yaml:"nodes"`
	// Main names the node that is the cluster's main standby whenever the
	// cluster is the DR side: it streams from the other cluster's primary,
	// and the cluster's other nodes stream from it.
	Main string `yaml:"main"`
}

// Node is one PostgreSQL instance.
type Node struct {
	Name string `yaml:"name"`
	Host string `yaml:"host"` // SSH host; also the PostgreSQL host unless replication_host is set
	// ReplicationHost is the address other nodes use for this node's
	// PostgreSQL (streaming, pg_basebackup) and the address its own
	// replication connections come from, when that network is not the
	// one SSH uses. Default: Host. See ReplHost.
	ReplicationHost string `yaml:"replication_host"`
	SSHPort         int    `yaml:"ssh_port"`   // default 22
	SSHUser         string `yaml:"ssh_user"`   // default "postgres"
	PGPort          int    `yaml:"pg_port"`    // default 5432
	DataDir         string `yaml:"data_dir"`   // absolute
	BinDir          string `yaml:"bin_dir"`    // default /usr/lib/postgresql/<service.version, else 15>/bin
	SocketDir       string `yaml:"socket_dir"` // default /var/run/postgresql
	LogFile         string `yaml:"log_file"`   // pg_ctl -l target when sdr starts the node with pg_ctl; default <data_dir>.sdr/postgresql.log
	// ConfigDir is the directory that holds the node's postgresql.conf
	// when it is not the data directory (Debian: /etc/postgresql/15/main).
	// "" means the data directory.
	ConfigDir string  `yaml:"config_dir"`
	Service   Service `yaml:"service"`
	Local     bool    `yaml:"local"` // reach this node without SSH (sdr must run as the node's OS user)
}

// Service is how PostgreSQL is started and stopped on a node.
type Service struct {
	// Manager is one of ManagerPgCtl (the default), ManagerPgCtlCluster,
	// ManagerSystemd or ManagerCommands.
	Manager string `yaml:"manager"`
	// Version and Cluster name a Debian cluster for pg_ctlcluster
	// ("15", "main"). Both default from a config_dir of the form
	// /etc/postgresql/<version>/<cluster>.
	Version string `yaml:"version"`
	Cluster string `yaml:"cluster"`
	// Unit is the systemd unit (postgresql@15-main, postgresql-15).
	// With pg_ctlcluster layouts it defaults to postgresql@<version>-<cluster>.
	Unit string `yaml:"unit"`
	// Systemctl is the command sdr runs, as ssh_user, to start and stop
	// Unit: default "sudo -n systemctl".
	Systemctl string `yaml:"systemctl"`
	// Start, Stop and Status are the operator's commands (ManagerCommands),
	// run with /bin/sh as ssh_user. Status exits 0 when PostgreSQL runs.
	Start  string `yaml:"start"`
	Stop   string `yaml:"stop"`
	Status string `yaml:"status"`
}

// Service managers.
const (
	ManagerPgCtl        = "pg_ctl"
	ManagerPgCtlCluster = "pg_ctlcluster"
	ManagerSystemd      = "systemd"
	ManagerCommands     = "commands"
)

// ReplHost is the address other nodes use for n's PostgreSQL, and the
// address n's own replication connections come from: replication_host,
// or host.
func (n *Node) ReplHost() string {
	if n.ReplicationHost != "" {
		return n.ReplicationHost
	}
	return n.Host
}

// ConfDir is the directory PostgreSQL is pointed at with -D to find the
// node's configuration: config_dir, or the data directory.
func (n *Node) ConfDir() string {
	if n.ConfigDir != "" {
		return n.ConfigDir
	}
	return n.DataDir
}

// SeparateConfig reports whether the node's postgresql.conf lives outside
// its data directory (config_dir set to another directory).
func (n *Node) SeparateConfig() bool { return n.ConfigDir != "" && n.ConfigDir != n.DataDir }

// UnmarshalYAML reads a duration written like "10s", "2m" or "1h30m".
func (d *Duration) UnmarshalYAML(value *yaml.Node) error {
	if value.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: a duration must be a string like \"10s\"", value.Line)}}
	}
	v, err := time.ParseDuration(value.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: cannot parse %q as a duration (like \"10s\" or \"2m\")", value.Line, value.Value)}}
	}
	d.Duration = v
	return nil
}

// MarshalYAML writes the duration as "10s".
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// Node returns the node with this name from either cluster.
func (c *Config) Node(name string) (*Node, bool) {
	for _, cs := range []*ClusterSpec{&c.Primary, &c.Standby} {
		for i := range cs.Nodes {
			if cs.Nodes[i].Name == name {
				return &cs.Nodes[i], true
			}
		}
	}
	return nil, false
}

// IsPrimaryNode reports whether name is a node of the primary cluster.
func (c *Config) IsPrimaryNode(name string) bool {
	for i := range c.Primary.Nodes {
		if c.Primary.Nodes[i].Name == name {
			return true
		}
	}
	return false
}

// MainStandby returns the standby cluster's main standby (standby.main), or
// nil if the config does not name one.
func (c *Config) MainStandby() *Node {
	for i := range c.Standby.Nodes {
		if c.Standby.Nodes[i].Name == c.Standby.Main {
			return &c.Standby.Nodes[i]
		}
	}
	return nil
}

// StandbyCascades returns the standby cluster's other nodes, which stream
// from the main standby, in config order.
func (c *Config) StandbyCascades() []Node {
	var out []Node
	for _, n := range c.Standby.Nodes {
		if n.Name != c.Standby.Main {
			out = append(out, n)
		}
	}
	return out
}

// Password returns the replication password from replication.password_file
// (one trailing newline is dropped) or from the variable named by
// replication.password_env. Errors name the file or variable, never the value.
func (c *Config) Password() (string, error) {
	r := c.Replication
	switch {
	case r.PasswordFile != "":
		b, err := os.ReadFile(r.PasswordFile)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return "", fmt.Errorf("replication.password_file %s: %w (%w)", r.PasswordFile, err, ErrNoPassword)
		}
		pw := string(b)
		if strings.HasSuffix(pw, "\r\n") {
			pw = pw[:len(pw)-2]
		} else if strings.HasSuffix(pw, "\n") {
			pw = pw[:len(pw)-1]
		}
		if pw == "" {
			return "", fmt.Errorf("replication.password_file %s: the file is empty: %w", r.PasswordFile, ErrNoPassword)
		}
		return pw, nil
	case r.PasswordEnv != "":
		pw, ok := os.LookupEnv(r.PasswordEnv)
		if !ok {
			return "", fmt.Errorf("replication.password_env %s: the variable is not set: %w", r.PasswordEnv, ErrNoPassword)
		}
		if pw == "" {
			return "", fmt.Errorf("replication.password_env %s: the variable is empty: %w", r.PasswordEnv, ErrNoPassword)
		}
		return pw, nil
	default:
		return "", fmt.Errorf("neither replication.password_file nor replication.password_env is set: %w", ErrNoPassword)
	}
}

// ClusterOf returns the name of the cluster that plays role ("primary" or
// "standby") now.
func (c *Config) ClusterOf(role string) string {
	if role == "primary" {
		return c.PrimaryName
	}
	return c.StandbyName
}

// InputPath says where the config file sets the input name of Inputs:
// a node's field under the cluster that now holds the node
// (clusters.dc2.nodes[dc2-b].pg_port for standby.nodes[dc2-b].pg_port),
// the DR side's main standby and each side's node list under its cluster.
// Other names, and a node no longer in the config, come back as they are.
func (c *Config) InputPath(name string) string {
	switch {
	case name == "standby.main" && c.StandbyName != "":
		return "clusters." + c.StandbyName + ".main"
	case name == "primary.nodes" && c.PrimaryName != "":
		return "clusters." + c.PrimaryName + ".nodes"
	case name == "standby.nodes" && c.StandbyName != "":
		return "clusters." + c.StandbyName + ".nodes"
	}
	for _, side := range []string{"primary.nodes[", "standby.nodes["} {
		rest, ok := strings.CutPrefix(name, side)
		if !ok {
			continue
		}
		node, field, ok := strings.Cut(rest, "].")
		if !ok {
			return name
		}
		for _, cs := range []struct {
			name string
			spec *ClusterSpec
		}{{c.PrimaryName, &c.Primary}, {c.StandbyName, &c.Standby}} {
			for _, n := range cs.spec.Nodes {
				if n.Name == node && cs.name != "" {
					return "clusters." + cs.name + ".nodes[" + node + "]." + field
				}
			}
		}
	}
	return name
}

// Inputs returns every setting that changes what the DR steps do, as a flat
// map with deterministic keys like "primary.nodes[dc1-a].data_dir". It holds
// no secret: for the password only the file path or the variable's name.
// Runs fingerprint it to notice changed inputs.
func (c *Config) Inputs() map[string]string {
	m := map[string]string{
		"name":              c.Name,
		"primary":           c.PrimaryName,
		"standby":           c.StandbyName,
		"replication.user":  c.Replication.User,
		"postgres.user":     c.Postgres.User,
		"postgres.database": c.Postgres.Database,
		"standby.main":      c.Standby.Main,
	}
	if c.Replication.PasswordFile != "" {
		m["replication.password_file"] = c.Replication.PasswordFile
	}
	if c.Replication.PasswordEnv != "" {
		m["replication.password_env"] = c.Replication.PasswordEnv
	}
	// Recorded only when set, so that a state file written before these
	// settings existed still matches a config that leaves them out.
	if c.Copy.Compress != "" {
		m["copy.compress"] = c.Copy.Compress
	}
	if c.Copy.MaxRate != "" {
		m["copy.max_rate"] = c.Copy.MaxRate
	}
	if c.Copy.FanOut {
		m["copy.fan_out"] = "true"
	}
	for _, side := range []struct {
		name string
		cs   *ClusterSpec
	}{{"primary", &c.Primary}, {"standby", &c.Standby}} {
		names := make([]string, 0, len(side.cs.Nodes))
		for _, n := range side.cs.Nodes {
			names = append(names, n.Name)
			p := side.name + ".nodes[" + n.Name + "]."
			m[p+"host"] = n.Host
			m[p+"ssh_port"] = strconv.Itoa(n.SSHPort)
			m[p+"ssh_user"] = n.SSHUser
			m[p+"pg_port"] = strconv.Itoa(n.PGPort)
			m[p+"data_dir"] = n.DataDir
			m[p+"bin_dir"] = n.BinDir
			m[p+"socket_dir"] = n.SocketDir
			m[p+"log_file"] = n.LogFile
			m[p+"local"] = strconv.FormatBool(n.Local)
			// Settings added later are recorded only when they differ
			// from what sdr did before they existed, so that a state file
			// of an earlier run still matches an unchanged config.
			opt := func(k, v string) {
				if v != "" {
					m[p+k] = v
				}
			}
			opt("replication_host", n.ReplicationHost)
			opt("config_dir", n.ConfigDir)
			if n.Service.Manager != ManagerPgCtl {
				opt("service.manager", n.Service.Manager)
			}
			opt("service.version", n.Service.Version)
			opt("service.cluster", n.Service.Cluster)
			opt("service.unit", n.Service.Unit)
			opt("service.systemctl", n.Service.Systemctl)
			opt("service.start", n.Service.Start)
			opt("service.stop", n.Service.Stop)
			opt("service.status", n.Service.Status)
		}
		m[side.name+".nodes"] = strings.Join(names, ",")
	}
	return m
}

// maxIdentLen is PostgreSQL's NAMEDATALEN-1.
const maxIdentLen = 63

// SlotName is the name of the physical replication slot sdr keeps for node
// in DR pair pair. It is "sdr_<pair>_<node>" when that spelling can only
// come from this pair and node: the pair and the node name hold no "_" and
// the node name no "-". Otherwise (for example node dc2-a, node dc2_a, or
// pair a_b) it is that name with "-" replaced by "_", cut to fit 63
// characters, followed by "_" and 8 hex digits of a hash of the exact pair
// and node names. So dc2-a and dc2_a, or pair a_b + node c and pair a +
// node b_c, get different names. Config validation refuses two nodes of a
// pair whose names would still collide.
func SlotName(pair, node string) string { return pairIdent(pair, node) }

// AppName is the application_name node uses in primary_conninfo, so that
// pg_stat_replication on its upstream shows which node is streaming. It is
// the same as SlotName.
func AppName(pair, node string) string { return pairIdent(pair, node) }

// identHashLen is the length of the "_xxxxxxxx" suffix of a hashed name.
const identHashLen = 9

func pairIdent(pair, node string) string {
	plain := "sdr_" + pair + "_" + node
	if isPlainPart(pair) && isPlainPart(node) && len(plain) <= maxIdentLen {
		return plain
	}
	b := []byte(strings.ToLower(plain))
	for i, ch := range b {
		if !(ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '_') {
			b[i] = '_'
		}
	}
	if len(b) > maxIdentLen-identHashLen {
		b = b[:maxIdentLen-identHashLen]
	}
	// The exact names go into the hash, with a separator that neither
	// may hold, so that every distinct (pair, node) hashes distinct input.
	sum := sha256.Sum256([]byte(pair + "\x00" + node))
	return string(b) + "_" + hex.EncodeToString(sum[:4])
}

// isPlainPart reports whether s needs no sanitising and holds no "_", so
// that "sdr_<pair>_<node>" can be split back into pair and node.
func isPlainPart(s string) bool {
	if s == "" {
		return false
	}
	for _, ch := range []byte(s) {
		if !(ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9') {
			return false
		}
	}
	return true
}
