package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Defaults applied by Load (and SetDefaults) to settings left out of the file.
const (
	DefaultSSHPort    = 22
	DefaultSSHUser    = "postgres"
	DefaultPGPort     = 5432
	DefaultBinDir     = "/usr/lib/postgresql/15/bin"
	DefaultSocketDir  = "/var/run/postgresql"
	DefaultPGUser     = "postgres"
	DefaultPGDatabase = "postgres"
	DefaultSystemctl  = "sudo -n systemctl"

	DefaultConnectTimeout = 10 * time.Second
	DefaultCommandTimeout = 2 * time.Minute
	DefaultWaitTimeout    = 30 * time.Minute
	DefaultKeepalive      = 15 * time.Second
)

// LogFileSuffix is appended to a node's data_dir to make its default log_file:
// "<data_dir>.sdr/postgresql.log".
const LogFileSuffix = ".sdr/postgresql.log"

// Load reads, defaults and validates the config file at path. Unknown fields,
// YAML type errors and failed checks are returned as *ConfigError, which wraps
// ErrBadConfig.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &ConfigError{File: path, Problem: "cannot read: " + unwrapPathError(err).Error(), err: err}
	}
	c, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Parse is Load for config text already read; file is only used in errors.
func Parse(file string, data []byte) (*Config, error) {
	if err := oldFormat(file, data); err != nil {
		return nil, err
	}
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &ConfigError{File: file, Problem: "the file is empty"}
		}
		return nil, yamlError(file, data, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, &ConfigError{File: file, Problem: "the file holds more than one YAML document"}
	}
	c.Path = file
	if err := c.ResolveRoles(); err != nil {
		return nil, err
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// oldFormat refuses a config written in the format with primary: and
// standby: sections, naming what to change.
func oldFormat(file string, data []byte) error {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil || len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return nil // the decoder reports it
	}
	m := root.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i].Value, m.Content[i+1]
		if (k == "primary" && v.Kind == yaml.MappingNode) || k == "standby" {
			return &ConfigError{File: file, Field: k, Problem: "this is the old format, with primary: and standby: sections: " +
				"name the two clusters under clusters: (for example clusters: {dc1: {nodes: [...]}, dc2: {main: dc2-a, nodes: [...]}}), " +
				"give each its main: (the node that streams from the other cluster when it is the DR side), " +
				"and say which is the primary now with primary: dc1 (see docs/config.md, \"Old and new formats\")"}
		}
	}
	return nil
}

// ResolveRoles fills Primary, Standby, PrimaryName and StandbyName from
// PrimaryCluster and Clusters. A Config built by hand with Primary and
// Standby set and no Clusters keeps them (named "primary" and "standby").
func (c *Config) ResolveRoles() error {
	bad := func(field, format string, args ...any) error {
		return &ConfigError{File: c.Path, Field: field, Problem: fmt.Sprintf(format, args...)}
	}
	if len(c.Clusters) == 0 {
		if len(c.Primary.Nodes) > 0 || len(c.Standby.Nodes) > 0 {
			if c.PrimaryName == "" {
				c.PrimaryName, c.StandbyName = "primary", "standby"
			}
			return nil
		}
		return bad("clusters", "is required: name the two clusters of the pair, each with its nodes and its main standby")
	}
	var names []string
	for name := range c.Clusters {
		if !nodeNameRE.MatchString(name) {
			return bad("clusters."+name, "%q must start with [a-z0-9] and hold only [a-z0-9_-]", name)
		}
		names = append(names, name)
	}
	sort.Strings(names)
	if len(names) != 2 {
		return bad("clusters", "names %d clusters (%s): a DR pair has exactly two", len(names), strings.Join(names, ", "))
	}
	switch c.PrimaryCluster {
	case "":
		return bad("primary", "is required: name the cluster that is the primary now (%s or %s)", names[0], names[1])
	case names[0], names[1]:
	default:
		return bad("primary", "%q is not a cluster of the pair (%s or %s)", c.PrimaryCluster, names[0], names[1])
	}
	c.PrimaryName = c.PrimaryCluster
	c.StandbyName = names[0]
	if c.StandbyName == c.PrimaryName {
		c.StandbyName = names[1]
	}
	c.Primary, c.Standby = c.Clusters[c.PrimaryName], c.Clusters[c.StandbyName]
	// The working copies share nothing with the YAML model.
	c.Primary.Nodes = append([]Node(nil), c.Primary.Nodes...)
	c.Standby.Nodes = append([]Node(nil), c.Standby.Nodes...)
	return nil
}

// clusterField is the config path of a cluster in its role now:
// "clusters.dc1" (or "primary"/"standby" for a Config built by hand).
func (c *Config) clusterField(role string) string {
	if len(c.Clusters) == 0 {
		return role
	}
	return "clusters." + c.ClusterOf(role)
}

// yamlError turns a yaml.v3 error into a *ConfigError naming the field at
// the line yaml reported.
var yamlLineRE = regexp.MustCompile(`^line (\d+): `)

func yamlError(file string, data []byte, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) || len(te.Errors) == 0 {
		return &ConfigError{File: file, Problem: strings.TrimPrefix(err.Error(), "yaml: "), err: err}
	}
	var root yaml.Node
	fields := map[int]string{}
	if yaml.Unmarshal(data, &root) == nil {
		mapLines(&root, "", fields)
	}
	first := te.Errors[0]
	ce := &ConfigError{File: file, Problem: strings.Join(te.Errors, "; "), err: err}
	if m := yamlLineRE.FindStringSubmatch(first); m != nil {
		line, _ := strconv.Atoi(m[1])
		ce.Field = fields[line]
	}
	return ce
}

// mapLines records, for each line of the document, the path of the most
// specific setting written on it ("clusters.dc2.nodes[1].pg_port").
func mapLines(n *yaml.Node, prefix string, out map[int]string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			mapLines(c, prefix, out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if prefix != "" {
				p = prefix + "." + k.Value
			}
			mapLines(v, p, out)
			out[k.Line] = p // the key names a flow value on its line best
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", prefix, i)
			out[c.Line] = p
			mapLines(c, p, out)
		}
	case yaml.ScalarNode, yaml.AliasNode:
		if prefix != "" {
			out[n.Line] = prefix
		}
	}
}

// SetDefaults fills in every setting left empty. Load calls it; code that
// builds a Config by hand (tests) should too, before Validate.
func (c *Config) SetDefaults() {
	if c.Postgres.User == "" {
		c.Postgres.User = DefaultPGUser
	}
	if c.Postgres.Database == "" {
		c.Postgres.Database = DefaultPGDatabase
	}
	if c.Timeouts.Connect.Duration == 0 {
		c.Timeouts.Connect.Duration = DefaultConnectTimeout
	}
	if c.Timeouts.Command.Duration == 0 {
		c.Timeouts.Command.Duration = DefaultCommandTimeout
	}
	if c.Timeouts.Wait.Duration == 0 {
		c.Timeouts.Wait.Duration = DefaultWaitTimeout
	}
	if c.Timeouts.Keepalive.Duration == 0 {
		c.Timeouts.Keepalive.Duration = DefaultKeepalive
	}
	for _, cs := range []*ClusterSpec{&c.Primary, &c.Standby} {
		for i := range cs.Nodes {
			n := &cs.Nodes[i]
			mergeNodeDefaults(n, cs.Defaults)
			setNodeDefaults(n)
		}
	}
}

// mergeNodeDefaults fills every setting n leaves empty from the cluster's
// defaults. name, host, replication_host and local are never taken from
// them (Validate refuses them there).
func mergeNodeDefaults(n *Node, d Node) {
	str := func(v *string, def string) {
		if *v == "" {
			*v = def
		}
	}
	if n.SSHPort == 0 {
		n.SSHPort = d.SSHPort
	}
	if n.PGPort == 0 {
		n.PGPort = d.PGPort
	}
	str(&n.SSHUser, d.SSHUser)
	str(&n.DataDir, d.DataDir)
	str(&n.BinDir, d.BinDir)
	str(&n.SocketDir, d.SocketDir)
	str(&n.LogFile, d.LogFile)
	str(&n.ConfigDir, d.ConfigDir)
	s, ds := &n.Service, d.Service
	str(&s.Manager, ds.Manager)
	str(&s.Version, ds.Version)
	str(&s.Cluster, ds.Cluster)
	str(&s.Unit, ds.Unit)
	str(&s.Systemctl, ds.Systemctl)
	str(&s.Start, ds.Start)
	str(&s.Stop, ds.Stop)
	str(&s.Status, ds.Status)
}

// debianConfRE matches a Debian cluster's configuration directory.
var debianConfRE = regexp.MustCompile(`^/etc/postgresql/([0-9][0-9.]*)/([^/]+)$`)

// DebianCluster returns the version and cluster name of a Debian
// configuration directory /etc/postgresql/<version>/<cluster>.
func DebianCluster(configDir string) (version, cluster string, ok bool) {
	m := debianConfRE.FindStringSubmatch(configDir)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

// setNodeDefaults fills one node's remaining empty settings.
func setNodeDefaults(n *Node) {
	if n.SSHPort == 0 {
		n.SSHPort = DefaultSSHPort
	}
	if n.SSHUser == "" {
		n.SSHUser = DefaultSSHUser
	}
	if n.PGPort == 0 {
		n.PGPort = DefaultPGPort
	}
	s := &n.Service
	if s.Manager == "" {
		s.Manager = ManagerPgCtl
	}
	// A Debian layout names its cluster in the configuration directory,
	// and the cluster names its configuration directory.
	if v, c, ok := DebianCluster(n.ConfigDir); ok && (s.Manager == ManagerPgCtlCluster || s.Manager == ManagerSystemd) {
		if s.Version == "" && s.Cluster == "" {
			s.Version, s.Cluster = v, c
		}
	}
	if s.Manager == ManagerPgCtlCluster && n.ConfigDir == "" && s.Version != "" && s.Cluster != "" {
		n.ConfigDir = "/etc/postgresql/" + s.Version + "/" + s.Cluster
	}
	if s.Manager == ManagerSystemd {
		if s.Unit == "" && s.Version != "" && s.Cluster != "" {
			s.Unit = "postgresql@" + s.Version + "-" + s.Cluster
		}
		if s.Systemctl == "" {
			s.Systemctl = DefaultSystemctl
		}
	}
	if n.BinDir == "" {
		n.BinDir = DefaultBinDir
		if s.Version != "" {
			n.BinDir = "/usr/lib/postgresql/" + s.Version + "/bin"
		}
	}
	if n.SocketDir == "" {
		n.SocketDir = DefaultSocketDir
	}
	if n.LogFile == "" && n.DataDir != "" {
		n.LogFile = n.DataDir + LogFileSuffix
	}
}

var (
	pairNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,30}$`)
	nodeNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	// roleRE is a role name that needs no quoting anywhere (SQL, pg_hba.conf, conninfo).
	roleRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)
	// dbNameRE is the same for database names.
	dbNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)
	envRE    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// osUserRE is a plain OS user name.
	osUserRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	// hostRE is a DNS name, an IPv4 address or an IPv6 address (no brackets).
	hostRE = regexp.MustCompile(`^[A-Za-z0-9._:-]+$`)
)

// Validate checks the config. It expects defaults to be set (Load does that)
// and returns the first problem found as a *ConfigError.
func (c *Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &ConfigError{File: c.Path, Field: field, Problem: fmt.Sprintf(format, args...)}
	}
	switch {
	case c.Name == "":
		return bad("name", "is required")
	case !pairNameRE.MatchString(c.Name):
		return bad("name", "%q must be a lower-case letter followed by at most 30 of [a-z0-9_]", c.Name)
	}

	r := c.Replication
	switch {
	case r.User == "":
		return bad("replication.user", "is required")
	case !roleRE.MatchString(r.User):
		return bad("replication.user", "%q must be a plain lower-case identifier ([a-z_][a-z0-9_]*)", r.User)
	case r.PasswordFile == "" && r.PasswordEnv == "":
		return bad("replication.password_file", "one of replication.password_file or replication.password_env is required")
	case r.PasswordFile != "" && r.PasswordEnv != "":
		return bad("replication.password_env", "set only one of replication.password_file and replication.password_env")
	case r.PasswordEnv != "" && !envRE.MatchString(r.PasswordEnv):
		return bad("replication.password_env", "%q is not an environment variable name", r.PasswordEnv)
	}

	switch {
	case !roleRE.MatchString(c.Postgres.User):
		return bad("postgres.user", "%q must be a plain lower-case identifier", c.Postgres.User)
	case !dbNameRE.MatchString(c.Postgres.Database):
		return bad("postgres.database", "%q must be a plain lower-case identifier", c.Postgres.Database)
	case r.User == c.Postgres.User:
		return bad("replication.user", "%q is also postgres.user, the role sdr administers PostgreSQL as: "+
			"the standby cluster must stream as a role of its own with LOGIN REPLICATION only (for example sdr_repl)", r.User)
	}

	for _, t := range []struct {
		field string
		d     Duration
	}{{"timeouts.connect", c.Timeouts.Connect}, {"timeouts.command", c.Timeouts.Command}, {"timeouts.wait", c.Timeouts.Wait}, {"timeouts.keepalive", c.Timeouts.Keepalive}} {
		if t.d.Duration <= 0 {
			return bad(t.field, "must be positive, like \"10s\"")
		}
	}

	if field, problem := c.Copy.problem(); problem != "" {
		return bad("copy."+field, "%s", problem)
	}

	if !c.SSH.InsecureIgnoreHostKey && c.SSH.KnownHosts == "" && c.anyRemote() {
		return bad("ssh.known_hosts", "is required (or set ssh.insecure_ignore_host_key: true, which skips host key checks)")
	}
	if c.SSH.IdentityFile == "" && c.anyRemote() {
		return bad("ssh.identity_file", "is required when a node is not local")
	}

	type where struct{ field, node string }
	names := map[string]string{} // node name -> field
	dirs := map[string]where{}   // host + data_dir
	ports := map[string]where{}  // host + pg_port
	for _, side := range []struct {
		name string
		cs   *ClusterSpec
	}{{"primary", &c.Primary}, {"standby", &c.Standby}} {
		field := c.clusterField(side.name)
		if len(side.cs.Nodes) == 0 {
			return bad(field+".nodes", "the %s cluster needs at least one node", side.name)
		}
		d := side.cs.Defaults
		for _, f := range []struct{ field, val string }{
			{"name", d.Name}, {"host", d.Host}, {"replication_host", d.ReplicationHost},
		} {
			if f.val != "" {
				return bad(field+".defaults."+f.field, "cannot be a default: set it on each node")
			}
		}
		if d.Local {
			return bad(field+".defaults.local", "cannot be a default: set it on each node")
		}
		for i, n := range side.cs.Nodes {
			p := fmt.Sprintf("%s.nodes[%d]", field, i)
			if err := c.validateNode(p, n, bad); err != nil {
				return err
			}
			if prev, ok := names[n.Name]; ok {
				return bad(p+".name", "%q is also the name of %s", n.Name, prev)
			}
			names[n.Name] = p
			hd := hostKey(n.Host) + "\x00" + n.DataDir
			if prev, ok := dirs[hd]; ok {
				return bad(p+".data_dir", "%s on %s is also the data directory of node %q", n.DataDir, n.Host, prev.node)
			}
			dirs[hd] = where{p, n.Name}
			for _, h := range uniqueHosts(n.Host, n.ReplHost()) {
				hp := hostKey(h) + "\x00" + strconv.Itoa(n.PGPort)
				if prev, ok := ports[hp]; ok && prev.node != n.Name {
					return bad(p+".pg_port", "%s:%d is also the PostgreSQL address of node %q", h, n.PGPort, prev.node)
				}
				ports[hp] = where{p, n.Name}
			}
		}
	}

	if err := c.checkNameCollisions(bad); err != nil {
		return err
	}

	if len(c.Clusters) == 0 {
		// A Config built by hand in the role view.
		if c.Primary.Main != "" {
			return bad("primary.main", "must be empty: the primary cluster has no main standby (sdr finds its primary itself)")
		}
	} else {
		pf := c.clusterField("primary") + ".main"
		switch {
		case c.Primary.Main == "":
			return bad(pf, "is required: name the node of cluster %s that streams from the other cluster's primary whenever %s is the DR side",
				c.PrimaryName, c.PrimaryName)
		case !hasNode(c.Primary.Nodes, c.Primary.Main):
			return bad(pf, "%q is not a node of cluster %s", c.Primary.Main, c.PrimaryName)
		}
	}
	sf := c.clusterField("standby") + ".main"
	if c.Standby.Main == "" {
		return bad(sf, "is required: name the node of the DR cluster %s that streams from the primary", c.StandbyName)
	}
	if c.MainStandby() == nil {
		return bad(sf, "%q is not a node of cluster %s", c.Standby.Main, c.StandbyName)
	}
	return nil
}

func hasNode(nodes []Node, name string) bool {
	for _, n := range nodes {
		if n.Name == name {
			return true
		}
	}
	return false
}

func (c *Config) validateNode(p string, n Node, bad func(field, format string, args ...any) error) error {
	switch {
	case n.Name == "":
		return bad(p+".name", "is required")
	case !nodeNameRE.MatchString(n.Name):
		return bad(p+".name", "%q must start with [a-z0-9] and hold only [a-z0-9_-]", n.Name)
	case n.Host == "":
		return bad(p+".host", "is required")
	case HostProblem(n.Host) != "":
		return bad(p+".host", "%q %s", n.Host, HostProblem(n.Host))
	case !hostRE.MatchString(n.Host):
		return bad(p+".host", "%q is not a host name or IP address", n.Host)
	case n.ReplicationHost != "" && HostProblem(n.ReplicationHost) != "":
		return bad(p+".replication_host", "%q %s", n.ReplicationHost, HostProblem(n.ReplicationHost))
	case n.ReplicationHost != "" && !hostRE.MatchString(n.ReplicationHost):
		return bad(p+".replication_host", "%q is not a host name or IP address", n.ReplicationHost)
	case n.SSHPort < 1 || n.SSHPort > 65535:
		return bad(p+".ssh_port", "%d is not a port (1-65535)", n.SSHPort)
	case n.PGPort < 1 || n.PGPort > 65535:
		return bad(p+".pg_port", "%d is not a port (1-65535)", n.PGPort)
	case !osUserRE.MatchString(n.SSHUser):
		return bad(p+".ssh_user", "%q is not a plain user name", n.SSHUser)
	}
	for _, d := range []struct{ field, val string }{
		{"data_dir", n.DataDir}, {"bin_dir", n.BinDir}, {"socket_dir", n.SocketDir}, {"log_file", n.LogFile},
	} {
		switch {
		case d.val == "":
			return bad(p+"."+d.field, "is required")
		case !path.IsAbs(d.val):
			return bad(p+"."+d.field, "%q must be an absolute path", d.val)
		case path.Clean(d.val) != d.val:
			return bad(p+"."+d.field, "%q must be a clean path (write %q)", d.val, path.Clean(d.val))
		case strings.ContainsAny(d.val, "\n\x00"):
			return bad(p+"."+d.field, "must not contain a newline")
		}
	}
	if n.DataDir == "/" {
		return bad(p+".data_dir", "must not be /")
	}
	if strings.HasPrefix(n.LogFile, n.DataDir+"/") {
		return bad(p+".log_file", "%q must be outside the data directory (it is replaced when the standby is rebuilt)", n.LogFile)
	}
	if n.ConfigDir != "" {
		switch {
		case !path.IsAbs(n.ConfigDir):
			return bad(p+".config_dir", "%q must be an absolute path", n.ConfigDir)
		case path.Clean(n.ConfigDir) != n.ConfigDir:
			return bad(p+".config_dir", "%q must be a clean path (write %q)", n.ConfigDir, path.Clean(n.ConfigDir))
		case strings.ContainsAny(n.ConfigDir, "\n\x00"):
			return bad(p+".config_dir", "must not contain a newline")
		case strings.HasPrefix(n.ConfigDir, n.DataDir+"/"):
			return bad(p+".config_dir", "%q is inside the data directory %s, which a rebuild replaces: "+
				"leave config_dir empty when postgresql.conf is in the data directory", n.ConfigDir, n.DataDir)
		}
	}
	return validateService(p+".service", n, bad)
}

var (
	// debianVersionRE is a Debian cluster version ("15", "9.6").
	debianVersionRE = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)
	// debianClusterRE is a Debian cluster name as pg_createcluster allows it.
	debianClusterRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)
	// unitRE is a systemd unit name.
	unitRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9@:._\\-]*$`)
)

// validateService checks a node's service settings: the manager is known,
// what it needs is set, and nothing that belongs to another manager is.
func validateService(p string, n Node, bad func(field, format string, args ...any) error) error {
	s := n.Service
	set := map[string]string{"version": s.Version, "cluster": s.Cluster, "unit": s.Unit, "systemctl": s.Systemctl,
		"start": s.Start, "stop": s.Stop, "status": s.Status}
	allowed := map[string][]string{
		ManagerPgCtl:        nil,
		ManagerPgCtlCluster: {"version", "cluster"},
		ManagerSystemd:      {"version", "cluster", "unit", "systemctl"},
		ManagerCommands:     {"start", "stop", "status"},
	}
	want, ok := allowed[s.Manager]
	if !ok {
		return bad(p+".manager", "%q is not a service manager: use pg_ctl, pg_ctlcluster, systemd or commands", s.Manager)
	}
	for _, f := range []string{"version", "cluster", "unit", "systemctl", "start", "stop", "status"} {
		if set[f] != "" && !slices.Contains(want, f) {
			return bad(p+"."+f, "is not used with service.manager %s", s.Manager)
		}
	}
	switch s.Manager {
	case ManagerPgCtlCluster:
		switch {
		case s.Version == "" || s.Cluster == "":
			return bad(p+".version", "service.manager pg_ctlcluster needs service.version and service.cluster "+
				"(or config_dir /etc/postgresql/<version>/<cluster>)")
		case !debianVersionRE.MatchString(s.Version):
			return bad(p+".version", "%q is not a PostgreSQL major version like 15", s.Version)
		case !debianClusterRE.MatchString(s.Cluster):
			return bad(p+".cluster", "%q is not a Debian cluster name", s.Cluster)
		}
		if v, c, ok := DebianCluster(n.ConfigDir); ok && (v != s.Version || c != s.Cluster) {
			return bad(p+".cluster", "%s/%s does not match config_dir %s", s.Version, s.Cluster, n.ConfigDir)
		}
	case ManagerSystemd:
		switch {
		case s.Unit == "":
			return bad(p+".unit", "service.manager systemd needs service.unit (for example postgresql@15-main or postgresql-15)")
		case !unitRE.MatchString(s.Unit):
			return bad(p+".unit", "%q is not a systemd unit name", s.Unit)
		case strings.TrimSpace(s.Systemctl) == "":
			return bad(p+".systemctl", "must not be blank")
		}
	case ManagerCommands:
		for _, f := range []string{"start", "stop", "status"} {
			if strings.TrimSpace(set[f]) == "" {
				return bad(p+"."+f, "service.manager commands needs service.start, service.stop and service.status")
			}
		}
	}
	return nil
}

// uniqueHosts returns the distinct hosts among hs, in order.
func uniqueHosts(hs ...string) []string {
	var out []string
	for _, h := range hs {
		dup := false
		for _, o := range out {
			dup = dup || SameHost(o, h)
		}
		if !dup {
			out = append(out, h)
		}
	}
	return out
}

// hostKey is a host's spelling for comparing: an IP address in canonical
// form, a name in lower case.
func hostKey(h string) string {
	if ip := net.ParseIP(h); ip != nil {
		return ip.String()
	}
	return strings.ToLower(h)
}

// HostProblem says what is wrong with host as a node address that sdr
// writes into pg_hba.conf and primary_conninfo, or "" when nothing is.
// pg_hba.conf gives all, samehost and samenet, a leading "." (a domain
// suffix), "+" and "@" special meanings, so such a host would open access
// far wider than one node. Digits and dots that are not an IPv4 address
// ("10.0.1") are refused too: pg_hba.conf would not read them as a host name.
// So are an IPv6 address in brackets or with a zone index ("[::1]",
// "fe80::1%eth0"), a ":" in anything but an IPv6 address (a port belongs in
// ssh_port or pg_port), and a name that is not a DNS name.
func HostProblem(host string) string { return hostProblem(host) }

// checkNameCollisions refuses two nodes of the pair whose slot or
// application_name would be the same: one node's standby would then
// stream through, or be reported as, the other.
func (c *Config) checkNameCollisions(bad func(field, format string, args ...any) error) error {
	seen := map[string]string{} // SlotName -> node
	for _, side := range []struct {
		name string
		cs   *ClusterSpec
	}{{"primary", &c.Primary}, {"standby", &c.Standby}} {
		for i, n := range side.cs.Nodes {
			id := SlotName(c.Name, n.Name)
			if prev, ok := seen[id]; ok {
				return bad(fmt.Sprintf("%s.nodes[%d].name", c.clusterField(side.name), i),
					"%q and %q would both use the slot and application_name %s: rename one of them", n.Name, prev, id)
			}
			seen[id] = n.Name
		}
	}
	return nil
}

func (c *Config) anyRemote() bool {
	for _, cs := range []*ClusterSpec{&c.Primary, &c.Standby} {
		for _, n := range cs.Nodes {
			if !n.Local {
				return true
			}
		}
	}
	return false
}

// unwrapPathError drops the "open <path>:" part of an *fs.PathError, for
// messages that already name the file.
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Compression methods of copy.compress, and the levels pg_basebackup
// accepts for each.
var compressLevels = map[string][2]int{"gzip": {1, 9}, "lz4": {1, 12}, "zstd": {1, 22}}

// compressRE is copy.compress: server-<method>[:<level>].
var compressRE = regexp.MustCompile(`^server-([a-z0-9]+)(?::([0-9]+))?$`)

// maxRateRE is copy.max_rate: kB/s, or with a k or M suffix.
var maxRateRE = regexp.MustCompile(`^([0-9]+)([kM]?)$`)

// CompressMethod returns the method and the level (0 when not given) of
// copy.compress; ok is false when it is not set or not valid.
func (o CopyOptions) CompressMethod() (method string, level int, ok bool) {
	m := compressRE.FindStringSubmatch(o.Compress)
	if m == nil {
		return "", 0, false
	}
	if _, known := compressLevels[m[1]]; !known {
		return "", 0, false
	}
	if m[2] != "" {
		level, _ = strconv.Atoi(m[2])
	}
	return m[1], level, true
}

// MaxRateKB returns copy.max_rate in kB/s (0 when not set).
func (o CopyOptions) MaxRateKB() int {
	m := maxRateRE.FindStringSubmatch(o.MaxRate)
	if m == nil {
		return 0
	}
	n, err := strconv.Atoi(m[1])
	if err != nil {
		return 0
	}
	if m[2] == "M" {
		n *= 1024
	}
	return n
}

// problem checks the copy settings and returns the field and what is
// wrong with it ("" when nothing is).
func (o CopyOptions) problem() (field, problem string) {
	if o.Compress != "" {
		m := compressRE.FindStringSubmatch(o.Compress)
		switch {
		case m == nil && strings.HasPrefix(o.Compress, "client-"):
			return "compress", fmt.Sprintf("%q: sdr uses server-side compression only (the copy crosses the network compressed; "+
				"the copy on disk is not): write server-gzip, server-lz4 or server-zstd", o.Compress)
		case m == nil:
			return "compress", fmt.Sprintf("%q is not server-gzip, server-lz4 or server-zstd, optionally with a level (server-zstd:3)", o.Compress)
		}
		r, known := compressLevels[m[1]]
		if !known {
			return "compress", fmt.Sprintf("%q: unknown method %s (use gzip, lz4 or zstd)", o.Compress, m[1])
		}
		if m[2] != "" {
			if l, err := strconv.Atoi(m[2]); err != nil || l < r[0] || l > r[1] {
				return "compress", fmt.Sprintf("%q: the %s level must be %d to %d", o.Compress, m[1], r[0], r[1])
			}
		}
	}
	if o.MaxRate != "" {
		if maxRateRE.FindStringSubmatch(o.MaxRate) == nil {
			return "max_rate", fmt.Sprintf("%q is not a rate in kB/s like 102400, 100000k or 100M", o.MaxRate)
		}
		if kb := o.MaxRateKB(); kb < 32 || kb > 1024*1024 {
			return "max_rate", fmt.Sprintf("%q is out of pg_basebackup's range, 32k to 1024M (kB/s)", o.MaxRate)
		}
	}
	return "", ""
}
