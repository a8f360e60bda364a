// Package bed builds a throw-away test bed for sdr's end-to-end tests: two
// "data centres" of two PostgreSQL 15 instances each on loopback, run as the
// postgres OS user, and one private OpenSSH server through which sdr (running
// as root) reaches every node as the OS user postgres.
//
// Two flavours (Options.Flavour): FlavourPgCtl (the default) keeps each
// node's configuration in its data directory and runs it with pg_ctl;
// FlavourDebian builds the nodes the way Debian does, with
// pg_createcluster (configuration in /etc/postgresql/15/<cluster>,
// clusters named sdrbed<id>_<node>) and runs them with pg_ctlcluster
// (debian.go). Options.Addressing chooses how the config names the nodes:
// all 127.0.0.1, or by name and IPv6 (AddrNamesIPv6).
//
// Layout under Bed.Dir:
//
//	bed.json                 the Bed itself (see Load), for sdr-bed down/sql
//	sdr.yaml                 sdr config for the pair
//	repl.pass                replication password (0600, contains a ':')
//	state-primary.db         state file paths for the two sides (not created)
//	state-standby.db
//	sdr-primary.log          log file paths for the two sides (not created)
//	sdr-standby.log
//	ssh/                     sshd_config, host key, client_key, known_hosts,
//	                         authorized_keys, sshd.pid, sshd.log
//	nodes/<node>/data        data directories (nodes/<node> owned by postgres)
//	run/<node>/              unix_socket_directories
//	logs/<node>.log          server logs (pg_ctl -l)
package bed

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"
)

// BinDir holds the PostgreSQL 15 server binaries on Debian.
const BinDir = "/usr/lib/postgresql/15/bin"

// SSHD is the OpenSSH server binary.
const SSHD = "/usr/sbin/sshd"

// Node names, in the order they are built.
const (
	DC1A = "dc1-a" // primary DC, primary
	DC1B = "dc1-b" // primary DC, in-cluster standby of dc1-a
	DC2A = "dc2-a" // standby DC, main (a primary of its own before DR)
	DC2B = "dc2-b" // standby DC, in-cluster standby of dc2-a
)

// The bed's two clusters (data centres), as the config names them.
const (
	ClusterDC1 = "dc1" // the primary cluster when the bed is built
	ClusterDC2 = "dc2" // the DR cluster when the bed is built
)

// NodeNames lists every node of the bed in a stable order.
var NodeNames = []string{DC1A, DC1B, DC2A, DC2B}

// StateFile is the name of the JSON file in Dir that describes the bed.
const StateFile = "bed.json"

// Flavours of the bed.
const (
	FlavourPgCtl  = "pg_ctl"
	FlavourDebian = "debian"
)

// Addressings of the bed's nodes in sdr's config.
const (
	// AddrIPv4: every node's host is 127.0.0.1.
	AddrIPv4 = "ipv4"
	// AddrNamesIPv6: the primary cluster's nodes have host "localhost"
	// (SSH by name) and replication_host "::1"; the standby cluster's
	// nodes have host "::1". sshd and PostgreSQL listen on ::1 too, and
	// the primary cluster's pg_hba.conf has no line for ::1 of its own,
	// so the standby cluster streams only through sdr's "::1/128" lines.
	AddrNamesIPv6 = "names-ipv6"
)

// HasIPv6Loopback reports whether ::1 can be listened on here.
func HasIPv6Loopback() bool {
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// Options configure New.
type Options struct {
	// Flavour is FlavourPgCtl (default) or FlavourDebian.
	Flavour string
	// Addressing is AddrIPv4 (default) or AddrNamesIPv6.
	Addressing string
	// Dir is the base directory. It must be absolute, contain no spaces and
	// be missing or empty. Default: a fresh /tmp/sdr-bed-XXXXXX.
	Dir string
	// Name is the DR pair name. Default "drpair".
	Name string
	// Log receives progress messages (e.g. t.Logf). Default: discard.
	Log func(format string, args ...any)
	// KeepOnFailure keeps Dir (with the logs) when New fails. Processes are
	// stopped either way.
	KeepOnFailure bool
	// WalLogHints sets wal_log_hints = on on every node (from initdb on),
	// so that a former primary can be rewound with pg_rewind.
	WalLogHints bool
}

// NodeInfo describes one PostgreSQL instance of the bed.
type NodeInfo struct {
	Name      string `json:"name"`
	Side      string `json:"side"`     // "primary" or "standby"
	Upstream  string `json:"upstream"` // in-cluster upstream, "" for dc1-a and dc2-a
	Port      int    `json:"port"`
	NodeDir   string `json:"node_dir"` // <Dir>/nodes/<node>, owned by postgres
	DataDir   string `json:"data_dir"` // <NodeDir>/data
	SocketDir string `json:"socket_dir"`
	LogFile   string `json:"log_file"`
	// Host and ReplicationHost are how sdr's config names the node.
	Host            string `json:"host"`
	ReplicationHost string `json:"replication_host,omitempty"`
	// Cluster is the Debian cluster name, ConfigDir its configuration
	// directory /etc/postgresql/15/<cluster> (FlavourDebian).
	Cluster   string `json:"cluster,omitempty"`
	ConfigDir string `json:"config_dir,omitempty"`
}

// Bed is a running test bed. All fields are filled by New (or Load).
type Bed struct {
	Dir        string `json:"dir"`
	Name       string `json:"name"`
	Flavour    string `json:"flavour"`
	Addressing string `json:"addressing"`

	ConfigPath       string `json:"config_path"`   // <Dir>/sdr.yaml
	PasswordFile     string `json:"password_file"` // <Dir>/repl.pass
	Password         string `json:"-"`             // contents of PasswordFile
	ReplicationUser  string `json:"replication_user"`
	StateFilePrimary string `json:"state_file_primary"`
	StateFileStandby string `json:"state_file_standby"`
	LogFilePrimary   string `json:"log_file_primary"`
	LogFileStandby   string `json:"log_file_standby"`

	SSHDir  string `json:"ssh_dir"`
	SSHPort int    `json:"ssh_port"` // the sshd of data centre 1 (dc1-a, dc1-b)
	// Data centre 2 (dc2-a, dc2-b) has an sshd of its own, so that either
	// data centre can be cut off (StopSSHD).
	SSHPortDC2     int    `json:"ssh_port_dc2"`
	SSHConfigDC2   string `json:"ssh_config_dc2"`
	SSHPidFileDC2  string `json:"ssh_pid_file_dc2"`
	SSHLogDC2      string `json:"ssh_log_dc2"`
	SSHUser        string `json:"ssh_user"`
	SSHConfig      string `json:"ssh_config"` // sshd_config
	SSHPidFile     string `json:"ssh_pid_file"`
	SSHLog         string `json:"ssh_log"`
	HostKey        string `json:"host_key"`
	ClientKey      string `json:"client_key"` // private key for sdr (0600, root)
	KnownHosts     string `json:"known_hosts"`
	AuthorizedKeys string `json:"authorized_keys"`

	BinDir string               `json:"bin_dir"`
	Nodes  map[string]*NodeInfo `json:"nodes"`
	// WalLogHints: every node runs with wal_log_hints = on (Options).
	WalLogHints bool `json:"wal_log_hints,omitempty"`

	log func(format string, args ...any)
}

// ---------------------------------------------------------------------------
// Packages

// EnsurePackages installs postgresql-15 and openssh-server with apt when
// initdb or sshd is missing, and makes sure the postgres OS user is not
// locked (OpenSSH with UsePAM no refuses a locked account).
func EnsurePackages(ctx context.Context) error {
	if !exists(filepath.Join(BinDir, "initdb")) || !exists(SSHD) || !exists("/usr/bin/ssh-keygen") {
		env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		for _, args := range [][]string{
			{"apt-get", "update"},
			{"apt-get", "install", "-y", "postgresql-15", "openssh-server", "openssh-client"},
		} {
			cmd := exec.CommandContext(ctx, args[0], args[1:]...)
			cmd.Env = env
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("%s: %w\n%s", strings.Join(args, " "), err, tail(string(out), 30))
			}
		}
	}
	if _, err := user.Lookup("postgres"); err != nil {
		return fmt.Errorf("OS user postgres: %w", err)
	}
	out, err := exec.CommandContext(ctx, "getent", "shadow", "postgres").Output()
	if err != nil {
		return fmt.Errorf("getent shadow postgres: %w", err)
	}
	fields := strings.Split(strings.TrimSpace(string(out)), ":")
	if len(fields) > 1 && strings.HasPrefix(fields[1], "!") {
		if out, err := exec.CommandContext(ctx, "usermod", "-p", "*", "postgres").CombinedOutput(); err != nil {
			return fmt.Errorf("usermod -p '*' postgres: %w: %s", err, out)
		}
	}
	return nil
}

// ---------------------------------------------------------------------------
// New

// New builds and starts a bed. On error everything it started is stopped
// (and Dir removed unless opts.KeepOnFailure); the error carries the logs.
func New(ctx context.Context, opts Options) (_ *Bed, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("bed: must run as root")
	}
	if err := EnsurePackages(ctx); err != nil {
		return nil, err
	}
	dir := opts.Dir
	if dir == "" {
		dir, err = os.MkdirTemp("/tmp", "sdr-bed-")
		if err != nil {
			return nil, err
		}
	} else {
		if !filepath.IsAbs(dir) {
			return nil, fmt.Errorf("bed: dir %q is not absolute", dir)
		}
		dir = filepath.Clean(dir)
		if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
			return nil, fmt.Errorf("bed: dir %s exists and is not empty", dir)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	if strings.ContainsAny(dir, " \t\n\"'\\") {
		return nil, fmt.Errorf("bed: dir %q must not contain spaces, quotes or backslashes", dir)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	name := opts.Name
	if name == "" {
		name = "drpair"
	}
	logf := opts.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	flavour, addressing := opts.Flavour, opts.Addressing
	if flavour == "" {
		flavour = FlavourPgCtl
	}
	if addressing == "" {
		addressing = AddrIPv4
	}
	if flavour != FlavourPgCtl && flavour != FlavourDebian {
		return nil, fmt.Errorf("bed: unknown flavour %q", flavour)
	}
	if addressing != AddrIPv4 && addressing != AddrNamesIPv6 {
		return nil, fmt.Errorf("bed: unknown addressing %q", addressing)
	}
	if addressing == AddrNamesIPv6 && !HasIPv6Loopback() {
		return nil, errors.New("bed: addressing names-ipv6 needs IPv6 on the loopback interface (ip -6 addr show lo)")
	}
	if flavour == FlavourDebian {
		if err := checkDebianTools(); err != nil {
			return nil, err
		}
	}
	b := &Bed{
		Dir:              dir,
		Name:             name,
		Flavour:          flavour,
		Addressing:       addressing,
		ConfigPath:       filepath.Join(dir, "sdr.yaml"),
		PasswordFile:     filepath.Join(dir, "repl.pass"),
		ReplicationUser:  "sdr_repl",
		StateFilePrimary: filepath.Join(dir, "state-primary.db"),
		StateFileStandby: filepath.Join(dir, "state-standby.db"),
		LogFilePrimary:   filepath.Join(dir, "sdr-primary.log"),
		LogFileStandby:   filepath.Join(dir, "sdr-standby.log"),
		SSHDir:           filepath.Join(dir, "ssh"),
		SSHUser:          "postgres",
		BinDir:           BinDir,
		Nodes:            map[string]*NodeInfo{},
		WalLogHints:      opts.WalLogHints,
		log:              logf,
	}
	b.SSHConfig = filepath.Join(b.SSHDir, "sshd_config")
	b.SSHPidFile = filepath.Join(b.SSHDir, "sshd.pid")
	b.SSHLog = filepath.Join(b.SSHDir, "sshd.log")
	b.SSHConfigDC2 = filepath.Join(b.SSHDir, "sshd_config_dc2")
	b.SSHPidFileDC2 = filepath.Join(b.SSHDir, "sshd-dc2.pid")
	b.SSHLogDC2 = filepath.Join(b.SSHDir, "sshd-dc2.log")
	b.HostKey = filepath.Join(b.SSHDir, "host_ed25519_key")
	b.ClientKey = filepath.Join(b.SSHDir, "client_key")
	b.KnownHosts = filepath.Join(b.SSHDir, "known_hosts")
	b.AuthorizedKeys = filepath.Join(b.SSHDir, "authorized_keys")

	defer func() {
		if err == nil {
			return
		}
		logs := b.NodeLogs()
		cerr := b.Close(opts.KeepOnFailure)
		err = fmt.Errorf("%w\n%s", err, logs)
		if cerr != nil {
			err = fmt.Errorf("%w\n(cleanup: %v)", err, cerr)
		}
	}()

	ports := &portPicker{used: map[int]bool{}}
	if b.SSHPort, err = ports.pick(); err != nil {
		return b, err
	}
	if b.SSHPortDC2, err = ports.pick(); err != nil {
		return b, err
	}
	up := map[string]string{DC1B: DC1A, DC2B: DC2A}
	for _, n := range NodeNames {
		side := "primary"
		if strings.HasPrefix(n, "dc2") {
			side = "standby"
		}
		p, err := ports.pick()
		if err != nil {
			return b, err
		}
		nd := filepath.Join(dir, "nodes", n)
		ni := &NodeInfo{
			Name: n, Side: side, Upstream: up[n], Port: p,
			NodeDir:   nd,
			DataDir:   filepath.Join(nd, "data"),
			SocketDir: filepath.Join(dir, "run", n),
			LogFile:   filepath.Join(dir, "logs", n+".log"),
			Host:      "127.0.0.1",
		}
		if addressing == AddrNamesIPv6 {
			ni.Host = "::1"
			if side == "primary" {
				ni.Host, ni.ReplicationHost = "localhost", "::1"
			}
		}
		if flavour == FlavourDebian {
			ni.Cluster = debianClusterName(dir, n)
			ni.ConfigDir = filepath.Join(debianConfRoot, ni.Cluster)
		}
		b.Nodes[n] = ni
	}
	// Save early so that sdr-bed down can clean up even a half-built bed.
	if err := b.save(); err != nil {
		return b, err
	}
	if err := b.makeDirs(); err != nil {
		return b, err
	}
	if err := b.writePassword(); err != nil {
		return b, err
	}
	if err := b.setupSSH(ctx); err != nil {
		return b, err
	}
	// The two DCs are independent: build them in parallel.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, pair := range [][2]string{{DC1A, DC1B}, {DC2A, DC2B}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = b.buildDC(ctx, pair[0], pair[1])
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return b, err
	}
	if _, err := b.WriteConfigTo(b.ConfigPath, nil); err != nil {
		return b, err
	}
	if err := b.save(); err != nil {
		return b, err
	}
	logf("bed: ready in %s (ssh port %d; %s)", dir, b.SSHPort, b.portsSummary())
	return b, nil
}

func (b *Bed) portsSummary() string {
	var s []string
	for _, n := range NodeNames {
		s = append(s, fmt.Sprintf("%s=%d", n, b.Nodes[n].Port))
	}
	return strings.Join(s, " ")
}

// Load reads a bed saved in dir by New (for a bed built by another process).
func Load(dir string) (*Bed, error) {
	data, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		return nil, err
	}
	b := &Bed{}
	if err := json.Unmarshal(data, b); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, StateFile), err)
	}
	if pw, err := os.ReadFile(b.PasswordFile); err == nil {
		b.Password = string(pw)
	}
	b.log = func(string, ...any) {}
	return b, nil
}

// SetLog replaces the progress logger (e.g. of a loaded bed).
func (b *Bed) SetLog(f func(format string, args ...any)) {
	if f == nil {
		f = func(string, ...any) {}
	}
	b.log = f
}

func (b *Bed) logf(format string, args ...any) {
	if b.log != nil {
		b.log(format, args...)
	}
}

func (b *Bed) save() error {
	data, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(b.Dir, StateFile), append(data, '\n'), 0o644)
}

func (b *Bed) makeDirs() error {
	uid, gid, err := postgresIDs()
	if err != nil {
		return err
	}
	for _, d := range []string{b.SSHDir, filepath.Join(b.Dir, "nodes"), filepath.Join(b.Dir, "run")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		if err := os.Chmod(d, 0o755); err != nil {
			return err
		}
	}
	pgDirs := []string{filepath.Join(b.Dir, "logs")}
	for _, n := range b.Nodes {
		pgDirs = append(pgDirs, n.NodeDir, n.SocketDir)
	}
	for _, d := range pgDirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		if err := os.Chmod(d, 0o755); err != nil {
			return err
		}
		if err := os.Chown(d, uid, gid); err != nil {
			return err
		}
	}
	return nil
}

func (b *Bed) writePassword() error {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	pw := make([]byte, 24)
	for i := range pw {
		k, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		if err != nil {
			return err
		}
		pw[i] = alphabet[k.Int64()]
	}
	pw[8] = ':' // exercise escaping (.pgpass, conninfo)
	b.Password = string(pw)
	return os.WriteFile(b.PasswordFile, pw, 0o600)
}

// ---------------------------------------------------------------------------
// SSH

func (b *Bed) setupSSH(ctx context.Context) error {
	b.logf("bed: setting up the data centres' sshd on ports %d and %d (addressing %s)", b.SSHPort, b.SSHPortDC2, b.Addressing)
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return err
	}
	for _, k := range []struct{ path, comment string }{
		{b.HostKey, "sdr-bed-host"}, {b.ClientKey, "sdr-bed-client"},
	} {
		if out, err := exec.CommandContext(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", k.comment, "-f", k.path).CombinedOutput(); err != nil {
			return fmt.Errorf("ssh-keygen %s: %w: %s", k.path, err, out)
		}
		if err := os.Chmod(k.path, 0o600); err != nil {
			return err
		}
	}
	clientPub, err := os.ReadFile(b.ClientKey + ".pub")
	if err != nil {
		return err
	}
	if err := os.WriteFile(b.AuthorizedKeys, clientPub, 0o644); err != nil {
		return err
	}
	hostPub, err := os.ReadFile(b.HostKey + ".pub")
	if err != nil {
		return err
	}
	f := strings.Fields(string(hostPub))
	if len(f) < 2 {
		return fmt.Errorf("bad host key %q", hostPub)
	}
	// The same host key under the names tests use for this host, in
	// OpenSSH's form for a port other than 22 ([host]:port), for both data
	// centres' sshd.
	var kh strings.Builder
	for _, port := range []int{b.SSHPort, b.SSHPortDC2} {
		for _, h := range []string{"127.0.0.1", "localhost", "::1"} {
			fmt.Fprintf(&kh, "[%s]:%d %s %s\n", h, port, f[0], f[1])
		}
	}
	if err := os.WriteFile(b.KnownHosts, []byte(kh.String()), 0o644); err != nil {
		return err
	}
	for _, dc := range []string{ClusterDC1, ClusterDC2} {
		if err := b.writeSSHDConfig(dc); err != nil {
			return err
		}
		if err := b.StartSSHD(ctx, dc); err != nil {
			return err
		}
	}
	out, err := b.SSH(ctx, "id -un")
	if err != nil {
		return fmt.Errorf("ssh check: %w", err)
	}
	if out != "postgres" {
		return fmt.Errorf("ssh check: id -un = %q, want postgres", out)
	}
	return nil
}

// sshdFiles returns the port, config, pid file and log of a data centre's sshd.
func (b *Bed) sshdFiles(dc string) (port int, cfg, pid, log string) {
	if dc == ClusterDC2 {
		return b.SSHPortDC2, b.SSHConfigDC2, b.SSHPidFileDC2, b.SSHLogDC2
	}
	return b.SSHPort, b.SSHConfig, b.SSHPidFile, b.SSHLog
}

func (b *Bed) writeSSHDConfig(dc string) error {
	port, cfgPath, pidFile, _ := b.sshdFiles(dc)
	listen, family := "ListenAddress 127.0.0.1", "inet"
	if b.Addressing == AddrNamesIPv6 {
		listen, family = "ListenAddress 127.0.0.1\nListenAddress ::1", "any"
	}
	// StrictModes would reject authorized_keys below /tmp (world-writable),
	// so it is off; the files are root-owned and not writable by others.
	// MaxSessions is OpenSSH's default, which operators' nodes have: sdr
	// must not need more sessions at once on one connection. MaxStartups
	// is raised for the tests' own parallel connections.
	cfg := fmt.Sprintf(`# sshd of data centre %[6]s for the sdr test bed in %[1]s
Port %[2]d
%[7]s
AddressFamily %[8]s
HostKey %[3]s
PidFile %[4]s
AuthorizedKeysFile %[5]s
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
ChallengeResponseAuthentication no
UsePAM no
PermitRootLogin no
AllowUsers postgres
StrictModes no
AllowStreamLocalForwarding yes
AllowTcpForwarding yes
AllowAgentForwarding no
X11Forwarding no
PrintMotd no
PrintLastLog no
UseDNS no
MaxStartups 200
MaxSessions 10
LogLevel VERBOSE
Subsystem sftp internal-sftp
`, b.Dir, port, b.HostKey, pidFile, b.AuthorizedKeys, dc, listen, family)
	return os.WriteFile(cfgPath, []byte(cfg), 0o644)
}

// StartSSHD starts data centre dc's sshd (ClusterDC1 or ClusterDC2) and
// waits until it accepts connections.
func (b *Bed) StartSSHD(ctx context.Context, dc string) error {
	port, cfgPath, pidFile, logFile := b.sshdFiles(dc)
	b.logf("bed: starting the sshd of %s on 127.0.0.1:%d", dc, port)
	if out, err := exec.CommandContext(ctx, SSHD, "-t", "-f", cfgPath).CombinedOutput(); err != nil {
		return fmt.Errorf("sshd -t: %w: %s", err, out)
	}
	cmd := exec.CommandContext(ctx, SSHD, "-f", cfgPath, "-E", logFile)
	cmd.WaitDelay = 5 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("start sshd: %w: %s", err, out)
	}
	if err := waitFor(ctx, 15*time.Second, func() error {
		if _, err := readPid(pidFile); err != nil {
			return err
		}
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}); err != nil {
		return fmt.Errorf("sshd of %s did not come up: %w", dc, err)
	}
	return nil
}

// StopSSHD stops data centre dc's sshd and every session it serves, so
// that nothing reaches that data centre's nodes over SSH any more.
func (b *Bed) StopSSHD(dc string) error {
	_, _, pidFile, _ := b.sshdFiles(dc)
	pid, err := readPid(pidFile)
	if err != nil {
		return err
	}
	kill := []procID{{pid: pid}}
	for _, c := range descendants(pid) {
		kill = append(kill, procID{pid: c})
	}
	for _, p := range kill {
		_ = syscall.Kill(p.pid, syscall.SIGKILL)
	}
	if !waitGone(kill, 10*time.Second) {
		return fmt.Errorf("the sshd of %s does not die", dc)
	}
	_ = os.Remove(pidFile)
	return nil
}

// SSHArgs returns the ssh command line (without the remote command) that
// reaches the bed's nodes as postgres with strict host key checking.
func (b *Bed) SSHArgs() []string {
	return []string{"ssh", "-F", "/dev/null",
		"-i", b.ClientKey,
		"-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile=" + b.KnownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "BatchMode=yes",
		"-o", "ConnectTimeout=10",
		"-p", strconv.Itoa(b.SSHPort),
		b.SSHUser + "@127.0.0.1"}
}

// SSH runs a remote shell command through the bed's sshd as postgres and
// returns its trimmed stdout.
func (b *Bed) SSH(ctx context.Context, command string) (string, error) {
	args := append(b.SSHArgs(), command)
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return strings.TrimSpace(stdout.String()), fmt.Errorf("ssh %q: %w: %s", command, err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// ---------------------------------------------------------------------------
// PostgreSQL

func (b *Bed) buildDC(ctx context.Context, primary, standby string) error {
	if b.Flavour == FlavourDebian {
		return b.buildDebianDC(ctx, primary, standby)
	}
	p := b.Nodes[primary]
	b.logf("bed: initdb %s (port %d)", primary, p.Port)
	if _, err := b.asPostgres(ctx, filepath.Join(BinDir, "initdb"), "-D", p.DataDir,
		"--auth-local=peer", "--auth-host=scram-sha-256", "-U", "postgres",
		"-E", "UTF8", "--locale=C.UTF-8"); err != nil {
		return err
	}
	if err := b.writeNodeConf(p); err != nil {
		return err
	}
	if err := b.limitHBA(p); err != nil {
		return err
	}
	if primary == DC2A {
		if err := appendFile(filepath.Join(p.DataDir, "pg_hba.conf"),
			"host    all             all             10.99.0.0/24            scram-sha-256 # custom-dc2\n"); err != nil {
			return err
		}
		if err := appendFile(filepath.Join(p.DataDir, "pg_ident.conf"),
			"custommap       root                    postgres # custom-dc2\n"); err != nil {
			return err
		}
	}
	if err := b.PGCtl(ctx, primary, "start"); err != nil {
		return err
	}
	s := b.Nodes[standby]
	b.logf("bed: pg_basebackup %s from %s (port %d)", standby, primary, s.Port)
	if _, err := b.asPostgres(ctx, filepath.Join(BinDir, "pg_basebackup"),
		"-D", s.DataDir, "-h", p.SocketDir, "-p", strconv.Itoa(p.Port), "-U", "postgres",
		"-X", "stream", "-c", "fast", "--no-password"); err != nil {
		return err
	}
	if err := b.writeNodeConf(s); err != nil {
		return err
	}
	if err := b.limitHBA(s); err != nil {
		return err
	}
	conninfo := fmt.Sprintf("host=%s port=%d user=postgres application_name=%s", p.SocketDir, p.Port, standby)
	if err := appendFile(filepath.Join(s.DataDir, "postgresql.auto.conf"),
		fmt.Sprintf("primary_conninfo = '%s'\n", conninfo)); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.DataDir, "standby.signal"), nil, 0o600); err != nil {
		return err
	}
	if err := chownPostgres(filepath.Join(s.DataDir, "standby.signal")); err != nil {
		return err
	}
	if err := b.PGCtl(ctx, standby, "start"); err != nil {
		return err
	}
	return b.WaitStreaming(ctx, primary, standby, time.Minute)
}

// writeNodeConf (re)writes the bed's block at the end of postgresql.conf.
// A standby made by pg_basebackup inherits its upstream's block, which is
// replaced.
func (b *Bed) writeNodeConf(n *NodeInfo) error {
	path := filepath.Join(n.DataDir, "postgresql.conf")
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(data)
	if i := strings.Index(s, "# sdr-bed begin\n"); i >= 0 {
		s = s[:i]
	}
	s += fmt.Sprintf(`# sdr-bed begin
port = %d
listen_addresses = '%s'
unix_socket_directories = '%s'
cluster_name = '%s'
wal_keep_size = '256MB'
log_replication_commands = on
%s# sdr-bed end
`, n.Port, b.listenAddresses(), n.SocketDir, n.Name, b.extraSettings())
	return os.WriteFile(path, []byte(s), 0o600) // existing file: owner kept
}

// extraSettings are the settings of Options for every node's configuration.
func (b *Bed) extraSettings() string {
	if b.WalLogHints {
		return "wal_log_hints = on\n"
	}
	return ""
}

// listenAddresses is listen_addresses for every node.
func (b *Bed) listenAddresses() string {
	if b.Addressing == AddrNamesIPv6 {
		return "127.0.0.1,::1"
	}
	return "127.0.0.1"
}

// HBAFile, IdentFile and ConfFile are the files node's server reads.
func (b *Bed) HBAFile(node string) string   { return b.confPath(node, "pg_hba.conf") }
func (b *Bed) IdentFile(node string) string { return b.confPath(node, "pg_ident.conf") }
func (b *Bed) ConfFile(node string) string  { return b.confPath(node, "postgresql.conf") }

func (b *Bed) confPath(node, file string) string {
	n := b.Node(node)
	if n.ConfigDir != "" {
		return filepath.Join(n.ConfigDir, file)
	}
	return filepath.Join(n.DataDir, file)
}

// limitHBA drops, with AddrNamesIPv6, the default pg_hba.conf lines for
// ::1 from a primary-cluster node: connections from the standby cluster
// (from ::1) then need sdr's own lines.
func (b *Bed) limitHBA(n *NodeInfo) error {
	if b.Addressing != AddrNamesIPv6 || n.Side != "primary" {
		return nil
	}
	path := b.HBAFile(n.Name)
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var kept []string
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) >= 4 && f[0] == "host" && f[3] == "::1/128" {
			continue
		}
		kept = append(kept, l)
	}
	return os.WriteFile(path, []byte(strings.Join(kept, "\n")), 0o600) // existing file: owner kept
}

// StartNode starts node's PostgreSQL the way its flavour does (pg_ctl or
// pg_ctlcluster) and waits until it accepts connections.
func (b *Bed) StartNode(ctx context.Context, node string) error {
	n, err := b.node(node)
	if err != nil {
		return err
	}
	if n.Cluster != "" {
		_, err := b.asPostgres(ctx, "pg_ctlcluster", "15", n.Cluster, "start")
		return err
	}
	return b.PGCtl(ctx, node, "start")
}

// StopNode stops node's PostgreSQL (fast) the way its flavour does.
func (b *Bed) StopNode(ctx context.Context, node string) error {
	n, err := b.node(node)
	if err != nil {
		return err
	}
	if n.Cluster != "" {
		_, err := b.asPostgres(ctx, "pg_ctlcluster", "--mode", "fast", "15", n.Cluster, "stop")
		return err
	}
	return b.PGCtl(ctx, node, "stop", "-m", "fast", "-w")
}

// WaitStreaming waits until standby shows up as streaming in upstream's
// pg_stat_replication (by application_name) and is in recovery.
func (b *Bed) WaitStreaming(ctx context.Context, upstream, standby string, timeout time.Duration) error {
	q := fmt.Sprintf("select state from pg_stat_replication where application_name = '%s'", standby)
	err := waitFor(ctx, timeout, func() error {
		out, err := b.SQL(ctx, upstream, q)
		if err != nil {
			return err
		}
		if out != "streaming" {
			return fmt.Errorf("%s on %s: state %q", standby, upstream, out)
		}
		return nil
	})
	if err != nil {
		return err
	}
	out, err := b.SQL(ctx, standby, "select pg_is_in_recovery()")
	if err != nil {
		return err
	}
	if out != "t" {
		return fmt.Errorf("%s: pg_is_in_recovery() = %q", standby, out)
	}
	return nil
}

// Node returns the named node or panics.
func (b *Bed) Node(name string) *NodeInfo {
	n, ok := b.Nodes[name]
	if !ok {
		panic("bed: no node " + name)
	}
	return n
}

func (b *Bed) node(name string) (*NodeInfo, error) {
	n, ok := b.Nodes[name]
	if !ok {
		return nil, fmt.Errorf("bed: no node %q (have %s)", name, strings.Join(NodeNames, ", "))
	}
	return n, nil
}

// SQL runs query with psql on node (through its Unix socket, as the
// postgres OS and database user) and returns trimmed stdout.
func (b *Bed) SQL(ctx context.Context, node, query string) (string, error) {
	n, err := b.node(node)
	if err != nil {
		return "", err
	}
	return b.asPostgres(ctx, filepath.Join(BinDir, "psql"), "-XAtq", "-v", "ON_ERROR_STOP=1",
		"-h", n.SocketDir, "-p", strconv.Itoa(n.Port), "-U", "postgres", "-d", "postgres", "-c", query)
}

// PGCtl runs pg_ctl -D <data dir> args... as postgres. For "start" and
// "restart", -w and -l <log file> are added unless given.
func (b *Bed) PGCtl(ctx context.Context, node string, args ...string) error {
	n, err := b.node(node)
	if err != nil {
		return err
	}
	full := []string{"-D", n.DataDir}
	if len(args) > 0 && (args[0] == "start" || args[0] == "restart") {
		has := func(f string) bool {
			for _, a := range args {
				if a == f || strings.HasPrefix(a, f+"=") || (len(f) == 2 && strings.HasPrefix(a, f) && len(a) > 2) {
					return true
				}
			}
			return false
		}
		if !has("-l") && !has("--log") {
			full = append(full, "-l", n.LogFile)
		}
		if !has("-W") && !has("-w") {
			full = append(full, "-w", "-t", "120")
		}
	}
	full = append(full, args...)
	_, err = b.asPostgres(ctx, filepath.Join(BinDir, "pg_ctl"), full...)
	return err
}

// Pgbench runs pgbench args... as postgres against node's socket (database
// postgres unless args end with another one).
func (b *Bed) Pgbench(ctx context.Context, node string, args ...string) error {
	n, err := b.node(node)
	if err != nil {
		return err
	}
	full := append([]string{"-h", n.SocketDir, "-p", strconv.Itoa(n.Port), "-U", "postgres"}, args...)
	out, err := b.asPostgres(ctx, filepath.Join(BinDir, "pgbench"), full...)
	if err == nil && out != "" {
		b.logf("pgbench %s: %s", node, tail(out, 15))
	}
	return err
}

// AsPostgres runs a command as the postgres OS user (cwd Dir) and returns
// its trimmed stdout; the error includes stderr.
func (b *Bed) AsPostgres(ctx context.Context, name string, args ...string) (string, error) {
	return b.asPostgres(ctx, name, args...)
}

func (b *Bed) asPostgres(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	cmd.Dir = b.Dir
	cmd.Env = []string{
		"PATH=" + BinDir + ":/usr/local/bin:/usr/bin:/bin",
		"HOME=/var/lib/postgresql",
		"LANG=C.UTF-8", "LC_ALL=C.UTF-8",
		"PGCONNECT_TIMEOUT=10",
	}
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return strings.TrimSpace(stdout.String()), fmt.Errorf("%s %s: %w: %s", filepath.Base(name),
			strings.Join(args, " "), err, strings.TrimSpace(tail(stderr.String()+stdout.String(), 20)))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// ---------------------------------------------------------------------------
// Config

// ConfigMap returns the bed's sdr config as a generic map (a fresh copy).
func (b *Bed) ConfigMap() map[string]any {
	nodes := func(names ...string) []any {
		var l []any
		for _, name := range names {
			n := b.Nodes[name]
			m := map[string]any{
				"name":       n.Name,
				"host":       n.Host,
				"pg_port":    n.Port,
				"data_dir":   n.DataDir,
				"socket_dir": n.SocketDir,
			}
			if n.ReplicationHost != "" {
				m["replication_host"] = n.ReplicationHost
			}
			if n.ConfigDir != "" {
				// pg_ctlcluster's version and cluster come from config_dir.
				m["config_dir"] = n.ConfigDir
			} else {
				m["log_file"] = n.LogFile
			}
			l = append(l, m)
		}
		return l
	}
	// What every node shares is written once per cluster, as defaults.
	defaults := func(sshPort int) map[string]any {
		d := map[string]any{"ssh_port": sshPort, "ssh_user": b.SSHUser, "bin_dir": BinDir}
		if b.Flavour == FlavourDebian {
			d["service"] = map[string]any{"manager": "pg_ctlcluster"}
		}
		return d
	}
	return map[string]any{
		"name": b.Name,
		"replication": map[string]any{
			"user":          b.ReplicationUser,
			"password_file": b.PasswordFile,
		},
		"postgres": map[string]any{"user": "postgres", "database": "postgres"},
		"ssh": map[string]any{
			"identity_file": b.ClientKey,
			"known_hosts":   b.KnownHosts,
		},
		"timeouts": map[string]any{"connect": "10s", "command": "5m", "wait": "5m"},
		"primary":  ClusterDC1,
		"clusters": map[string]any{
			ClusterDC1: map[string]any{"defaults": defaults(b.SSHPort), "main": DC1A, "nodes": nodes(DC1A, DC1B)},
			ClusterDC2: map[string]any{"defaults": defaults(b.SSHPortDC2), "main": DC2A, "nodes": nodes(DC2A, DC2B)},
		},
	}
}

// sshPortOf is the port of the sshd that serves node's data centre.
func (b *Bed) sshPortOf(node string) int {
	if strings.HasPrefix(node, "dc2") {
		return b.SSHPortDC2
	}
	return b.SSHPort
}

// WriteConfigTo writes the config, changed by mutate (may be nil), to path.
func (b *Bed) WriteConfigTo(path string, mutate func(*map[string]any)) (string, error) {
	m := b.ConfigMap()
	if mutate != nil {
		mutate(&m)
	}
	out, err := yaml.Marshal(orderedYAML(m))
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# sdr config for the test bed in %s\n", b.Dir)
	buf.Write(out)
	return path, os.WriteFile(path, buf.Bytes(), 0o644)
}

// keyOrder is the order in which known config keys are written; others
// follow, sorted.
var keyOrder = []string{"name", "replication", "postgres", "ssh", "timeouts", "primary", "clusters", ClusterDC1, ClusterDC2,
	"user", "password_file", "password_env", "database", "identity_file", "known_hosts",
	"connect", "command", "wait", "defaults", "main", "nodes",
	"host", "replication_host", "ssh_port", "ssh_user", "pg_port", "data_dir", "config_dir", "bin_dir", "socket_dir", "log_file",
	"service", "local"}

// orderedYAML turns maps into yaml.Nodes with keys in keyOrder.
func orderedYAML(v any) any {
	switch v := v.(type) {
	case map[string]any:
		rank := func(k string) int {
			for i, o := range keyOrder {
				if o == k {
					return i
				}
			}
			return len(keyOrder)
		}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool {
			ri, rj := rank(keys[i]), rank(keys[j])
			if ri != rj {
				return ri < rj
			}
			return keys[i] < keys[j]
		})
		n := &yaml.Node{Kind: yaml.MappingNode}
		for _, k := range keys {
			var val yaml.Node
			if err := val.Encode(orderedYAML(v[k])); err != nil {
				panic(err) // only for values yaml cannot encode at all
			}
			n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: k}, &val)
		}
		return n
	case []any:
		l := make([]any, len(v))
		for i, e := range v {
			l[i] = orderedYAML(e)
		}
		return l
	default:
		return v
	}
}

// WriteConfig writes a variant of the config, changed by mutate, to a new
// file sdr-N.yaml in Dir and returns its path.
func (b *Bed) WriteConfig(mutate func(*map[string]any)) (string, error) {
	for i := 1; ; i++ {
		p := filepath.Join(b.Dir, fmt.Sprintf("sdr-%d.yaml", i))
		f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		f.Close()
		return b.WriteConfigTo(p, mutate)
	}
}

// Env returns shell-sourceable lines describing the bed.
func (b *Bed) Env() string {
	return fmt.Sprintf("SDR_BED_DIR=%s\nSDR_CONFIG=%s\nSDR_STATE_PRIMARY=%s\nSDR_STATE_STANDBY=%s\nSDR_LOG_PRIMARY=%s\nSDR_LOG_STANDBY=%s\n",
		b.Dir, b.ConfigPath, b.StateFilePrimary, b.StateFileStandby, b.LogFilePrimary, b.LogFileStandby)
}

// ---------------------------------------------------------------------------
// Logs

// NodeLogs returns the last lines of every node's server log and of the
// sshd log, for printing when a test fails.
func (b *Bed) NodeLogs() string {
	var sb strings.Builder
	show := func(title, path string) {
		data, err := os.ReadFile(path)
		if err != nil {
			return
		}
		fmt.Fprintf(&sb, "===== %s (%s), last lines =====\n%s\n", title, path, tail(string(data), 60))
	}
	for _, n := range NodeNames {
		if ni, ok := b.Nodes[n]; ok {
			show(n, ni.LogFile)
		}
	}
	show("sshd", b.SSHLog)
	show("sshd dc2", b.SSHLogDC2)
	show("sdr primary", b.LogFilePrimary)
	show("sdr standby", b.LogFileStandby)
	return sb.String()
}

// ---------------------------------------------------------------------------
// Close

// Close stops every PostgreSQL server (pg_ctl stop -m immediate, then
// SIGKILL of leftovers), sshd and any process still running as postgres
// from Dir; then removes Dir unless keepLogs.
func (b *Bed) Close(keepLogs bool) error {
	return closeDir(b.Dir, b, keepLogs, b.logf)
}

// CloseDir stops everything of the bed in dir and removes dir (unless
// keepLogs), using bed.json when present; for sdr-bed down.
func CloseDir(dir string, keepLogs bool, logf func(string, ...any)) error {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	b, err := Load(dir)
	if err != nil {
		b = nil
	}
	return closeDir(dir, b, keepLogs, logf)
}

// IsBedDir reports whether dir looks like a bed directory (so that it can
// be removed safely).
func IsBedDir(dir string) bool {
	return exists(filepath.Join(dir, StateFile)) || exists(filepath.Join(dir, "ssh", "sshd_config"))
}

func closeDir(dir string, b *Bed, keepLogs bool, logf func(string, ...any)) error {
	if dir == "" {
		return errors.New("bed: empty dir")
	}
	dir = filepath.Clean(dir)
	if dir == "/" || !filepath.IsAbs(dir) {
		return fmt.Errorf("bed: refusing to close %q", dir)
	}
	var errs []error
	// Everything ours, before we start stopping (children still have
	// their parents, so sshd sessions are found).
	before := bedProcs(dir)

	// PostgreSQL: every data dir with a postmaster.pid under Dir/nodes
	// (sdr renames and creates data dirs next to the original ones).
	dataDirs := map[string]bool{}
	if b != nil {
		for _, n := range b.Nodes {
			dataDirs[n.DataDir] = true
		}
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "nodes", "*", "*", "postmaster.pid")); m != nil {
		for _, p := range m {
			dataDirs[filepath.Dir(p)] = true
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for dd := range dataDirs {
		pidFile := filepath.Join(dd, "postmaster.pid")
		pid, err := readPid(pidFile)
		if err != nil {
			continue // not running
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "runuser", "-u", "postgres", "--", filepath.Join(BinDir, "pg_ctl"),
				"-D", dd, "stop", "-m", "immediate", "-w", "-t", "20")
			cmd.Dir = "/"
			cmd.WaitDelay = 5 * time.Second
			out, err := cmd.CombinedOutput()
			if err != nil {
				logf("bed: pg_ctl stop %s: %v: %s", dd, err, strings.TrimSpace(string(out)))
			}
			if alive(pid) {
				logf("bed: killing postmaster %d of %s", pid, dd)
				_ = syscall.Kill(pid, syscall.SIGKILL)
				if !waitGone([]procID{{pid: pid}}, 10*time.Second) {
					mu.Lock()
					errs = append(errs, fmt.Errorf("postmaster %d of %s does not die", pid, dd))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()

	// Debian clusters of the bed: their configuration in /etc.
	if err := dropDebianClusters(dir, b); err != nil {
		errs = append(errs, err)
	}

	// Each data centre's sshd by its PidFile.
	for _, name := range []string{"sshd.pid", "sshd-dc2.pid"} {
		sshPid := filepath.Join(dir, "ssh", name)
		if pid, err := readPid(sshPid); err == nil && alive(pid) && isOurSSHD(pid, dir) {
			_ = syscall.Kill(pid, syscall.SIGTERM)
			if !waitGone([]procID{{pid: pid}}, 5*time.Second) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}

	// Leftovers: whatever was ours before, or is ours now.
	left := map[int]procID{}
	for _, p := range before {
		left[p.pid] = p
	}
	for _, p := range bedProcs(dir) {
		left[p.pid] = p
	}
	var kill []procID
	for _, p := range left {
		if p.same() {
			kill = append(kill, p)
		}
	}
	if len(kill) > 0 {
		logf("bed: killing %d leftover processes", len(kill))
		for _, p := range kill {
			_ = syscall.Kill(p.pid, syscall.SIGKILL)
		}
		if !waitGone(kill, 10*time.Second) {
			errs = append(errs, fmt.Errorf("processes of %s survive SIGKILL", dir))
		}
	}

	if keepLogs {
		logf("bed: kept %s (server logs in %s, sshd log %s)", dir, filepath.Join(dir, "logs"), filepath.Join(dir, "ssh", "sshd.log"))
		fmt.Fprintf(os.Stderr, "sdr test bed kept in %s: server logs %s/logs/*.log, sshd log %s/ssh/sshd.log\n", dir, dir, dir)
	} else if exists(dir) {
		if !IsBedDir(dir) && b == nil {
			errs = append(errs, fmt.Errorf("bed: %s does not look like a bed dir; not removed", dir))
		} else if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Leftovers lists the pids of processes that belong to the bed in dir:
// processes of the postgres OS user with an argument under dir, the bed's
// sshd, and their descendants. After Close it should be empty.
func Leftovers(dir string) []int {
	var pids []int
	for _, p := range bedProcs(filepath.Clean(dir)) {
		pids = append(pids, p.pid)
	}
	return pids
}

// ---------------------------------------------------------------------------
// helpers

type portPicker struct {
	used map[int]bool
}

// pick returns a free loopback port in [20000, 32000) (below Linux's
// ephemeral range, so outgoing connections do not take it meanwhile).
// portsTaken are the ports handed out in this process, so that beds built
// at the same time never pick the same port.
var portsTaken = struct {
	sync.Mutex
	m map[int]bool
}{m: map[int]bool{}}

func (pp *portPicker) pick() (int, error) {
	portsTaken.Lock()
	defer portsTaken.Unlock()
	for i := 0; i < 500; i++ {
		k, err := rand.Int(rand.Reader, big.NewInt(12000))
		if err != nil {
			return 0, err
		}
		p := 20000 + int(k.Int64())
		if pp.used[p] || portsTaken.m[p] {
			continue
		}
		l, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		l.Close()
		pp.used[p] = true
		portsTaken.m[p] = true
		return p, nil
	}
	return 0, errors.New("bed: no free port")
}

func waitFor(ctx context.Context, timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if last = f(); last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timeout after %s: %w", timeout, last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func postgresIDs() (int, int, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return 0, 0, err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid, nil
}

func chownPostgres(path string) error {
	uid, gid, err := postgresIDs()
	if err != nil {
		return err
	}
	return os.Chown(path, uid, gid)
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func readPid(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0, fmt.Errorf("%s: empty", path)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(sc.Text()))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s: bad pid %q", path, sc.Text())
	}
	return pid, nil
}

func tail(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
