package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pgsdr/sdr/cluster"
	"github.com/pgsdr/sdr/e2e/bed"
)

// The rate-limited link (-link-rate) puts the link between the primary and
// the DR data centre behind a token bucket, without moving PostgreSQL out
// of the root network namespace:
//
//	DR node ──▶ linkNSAddr:<primary port> ──(veth)──▶ relay in netns linkNS ──(veth)──▶ primary on linkRootAddr:<port>
//
// A network namespace linkNS is joined to the root namespace by a veth
// pair (linkRootAddr on the root side, linkNSAddr inside). A TCP relay,
// this program's "relay" subcommand run inside the namespace, listens on
// linkNSAddr at the primary's port and forwards to the primary, which also
// listens on linkRootAddr. The primary's replication_host in sdr's config,
// and the host of the floor's pg_basebackup and primary_conninfo, is
// linkNSAddr: every connection to the primary for replication then crosses
// the namespace, and tc's tbf on the namespace side of the veth limits
// what leaves the namespace towards the root namespace, that is the data
// going from the primary to the DR nodes. SSH and the DR data centre's own
// traffic (the cascade from the main standby) stay on loopback.
const (
	linkNS       = "sdrwan"
	linkVethRoot = "sdrwan0"
	linkVethNS   = "sdrwan1"
	linkRootAddr = "10.213.77.1"
	linkNSAddr   = "10.213.77.2"
	linkPrefix   = 24
	linkSubnet   = "10.213.77.0/24"
	// linkRelayLife bounds the relay's life, whatever happens to the
	// benchmark (it is also killed when the benchmark ends).
	linkRelayLife = 12 * time.Hour
	// linkRelayConns bounds the relay's concurrent connections.
	linkRelayConns = 64
)

// linkRateRE is -link-rate: tc's rate syntax for bits per second.
var linkRateRE = regexp.MustCompile(`^([0-9]+)(bit|kbit|mbit|gbit)$`)

// parseLinkRate reads -link-rate ("200mbit") and returns bits per second.
// The units are tc's, decimal: kbit is 1000 bit/s.
func parseLinkRate(s string) (int64, error) {
	m := linkRateRE.FindStringSubmatch(strings.ToLower(strings.TrimSpace(s)))
	if m == nil {
		return 0, fmt.Errorf("-link-rate %q: want a number with bit, kbit, mbit or gbit (tc's units), like 200mbit", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("-link-rate %q: %w", s, err)
	}
	mult := map[string]int64{"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9}[m[2]]
	bits := n * mult
	if bits < 1e6 || bits > 10e9 || bits/mult != n {
		return 0, fmt.Errorf("-link-rate %q: must be 1mbit to 10gbit", s)
	}
	return bits, nil
}

// parseMaxRate checks -max-rate (copy.max_rate's syntax: kB/s, or with a
// k or M suffix) and returns it in bytes per second.
func parseMaxRate(s string) (int64, error) {
	kb := cluster.CopyOptions{MaxRate: s}.MaxRateKB()
	if kb < 32 || kb > 1024*1024 {
		return 0, fmt.Errorf("-max-rate %q: want copy.max_rate's syntax, 32k to 1024M (kB/s; M is 1024 kB/s), like 12M", s)
	}
	return int64(kb) * 1024, nil
}

// tbfArgs are the arguments of tc that limit dev to bits per second: a
// bucket of 10 ms of the rate (at least 32 KiB, so that a full-sized
// segment passes) and at most 100 ms of queue.
func tbfArgs(dev string, bits int64) []string {
	burst := max(bits/8/100, 32<<10)
	return []string{"qdisc", "replace", "dev", dev, "root", "tbf",
		"rate", strconv.FormatInt(bits, 10) + "bit", "burst", strconv.FormatInt(burst, 10), "latency", "100ms"}
}

// linkHBALine is the primary's pg_hba.conf line for the relay's
// connections (they come from linkNSAddr): replication, and database
// (the bed's config's postgres.database) for the standby side's checks, as
// sdr's own block allows them from the DR nodes.
func linkHBALine(user, database string) string {
	return fmt.Sprintf("host    replication,%s    %s    %s    scram-sha-256 # sdr-bench link", database, user, linkSubnet)
}

// withLinkHBA puts line first in a pg_hba.conf's content, so that no line
// of the file can shadow it; a line already there is not added again.
func withLinkHBA(content, line string) string {
	for _, l := range strings.Split(content, "\n") {
		if l == line {
			return content
		}
	}
	return line + "\n" + content
}

// linkConfig sets, in the bed's config m, the replication_host of the
// node named primary to addr.
func linkConfig(m map[string]any, primary, addr string) error {
	for _, c := range m["clusters"].(map[string]any) {
		for _, n := range c.(map[string]any)["nodes"].([]any) {
			nm := n.(map[string]any)
			if nm["name"] == primary {
				nm["replication_host"] = addr
				return nil
			}
		}
	}
	return fmt.Errorf("config: no node %s", primary)
}

// link is a running rate-limited link.
type link struct {
	bits   int64
	port   int
	relay  *exec.Cmd
	logged bool
}

// ipCmd runs ip or tc (in the root namespace, or inside linkNS with
// "ip netns exec") and returns the error with its output.
func ipCmd(ctx context.Context, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// removeLink removes the namespace and the veth pair, ending the relay (or
// any process) left in the namespace by an earlier benchmark. Missing
// parts are no error.
func removeLink(ctx context.Context) {
	if out, err := exec.CommandContext(ctx, "ip", "netns", "pids", linkNS).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	_ = ipCmd(ctx, "ip", "netns", "del", linkNS) // takes the namespace's end of the veth pair, and so the pair
	_ = ipCmd(ctx, "ip", "link", "del", linkVethRoot)
}

// startLink builds the link for a primary listening on port, and starts
// the relay (self is this program). Close removes it all.
func startLink(ctx context.Context, self string, bits int64, port int) (*link, error) {
	removeLink(ctx)
	if out, err := exec.CommandContext(ctx, "ip", "-o", "addr", "show", "to", linkSubnet).Output(); err != nil {
		return nil, fmt.Errorf("ip addr: %w", err)
	} else if strings.TrimSpace(string(out)) != "" {
		return nil, fmt.Errorf("the link's subnet %s is already in use here: %s", linkSubnet, strings.TrimSpace(string(out)))
	}
	l := &link{bits: bits, port: port}
	steps := [][]string{
		{"ip", "netns", "add", linkNS},
		{"ip", "link", "add", linkVethRoot, "type", "veth", "peer", "name", linkVethNS},
		{"ip", "link", "set", linkVethNS, "netns", linkNS},
		{"ip", "addr", "add", fmt.Sprintf("%s/%d", linkRootAddr, linkPrefix), "dev", linkVethRoot},
		{"ip", "link", "set", linkVethRoot, "up"},
		{"ip", "netns", "exec", linkNS, "ip", "addr", "add", fmt.Sprintf("%s/%d", linkNSAddr, linkPrefix), "dev", linkVethNS},
		{"ip", "netns", "exec", linkNS, "ip", "link", "set", linkVethNS, "up"},
		{"ip", "netns", "exec", linkNS, "ip", "link", "set", "lo", "up"},
		append([]string{"ip", "netns", "exec", linkNS, "tc"}, tbfArgs(linkVethNS, bits)...),
	}
	for _, s := range steps {
		if err := ipCmd(ctx, s[0], s[1:]...); err != nil {
			removeLink(context.Background())
			return nil, err
		}
	}
	addr := net.JoinHostPort(linkNSAddr, strconv.Itoa(port))
	to := net.JoinHostPort(linkRootAddr, strconv.Itoa(port))
	l.relay = exec.Command("ip", "netns", "exec", linkNS, self, "relay", "-listen", addr, "-to", to, "-life", linkRelayLife.String())
	l.relay.Stdout, l.relay.Stderr = os.Stderr, os.Stderr
	// ip netns exec execs the relay in its own process: it dies with us.
	l.relay.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := l.relay.Start(); err != nil {
		removeLink(context.Background())
		return nil, err
	}
	// Wait (bounded) until the relay accepts connections.
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			l.Close()
			return nil, fmt.Errorf("the link's relay does not accept connections on %s: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return l, nil
}

// Close ends the relay and removes the namespace and the veth pair.
func (l *link) Close() {
	if l.relay != nil && l.relay.Process != nil {
		_ = l.relay.Process.Kill()
		_ = l.relay.Wait()
	}
	removeLink(context.Background())
}

// rxBytes is what the root namespace's end of the veth pair has received:
// the bytes that crossed the link from the primary towards the DR nodes.
func rxBytes() (int64, error) {
	data, err := os.ReadFile("/sys/class/net/" + linkVethRoot + "/statistics/rx_bytes")
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
}

// setupLink starts the link, then makes the primary listen on
// linkRootAddr as well (the address must exist first) and lets the
// relay's connections in for replication.
func (bm *bench) setupLink(ctx context.Context) error {
	b := bm.bed
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logf("link: netns %s, veth %s (%s) / %s (%s), tbf %d Mbit/s from the primary to the DR data centre, relay on %s:%d",
		linkNS, linkVethRoot, linkRootAddr, linkVethNS, linkNSAddr, bm.o.linkBits/1e6, linkNSAddr, b.Node(bed.DC1A).Port)
	if bm.link, err = startLink(ctx, self, bm.o.linkBits, b.Node(bed.DC1A).Port); err != nil {
		return err
	}
	hba := b.HBAFile(bed.DC1A)
	data, err := os.ReadFile(hba)
	if err != nil {
		return err
	}
	if err := os.WriteFile(hba, []byte(withLinkHBA(string(data), linkHBALine(b.ReplicationUser, "postgres"))), 0o600); err != nil {
		return err
	}
	// On the command line (postmaster.opts), not in a file that the copies
	// of the primary would take with them.
	logf("link: %s listens on %s too; restarting it", bed.DC1A, linkRootAddr)
	if err := b.PGCtl(ctx, bed.DC1A, "restart", "-m", "fast", "-o", "-c listen_addresses=127.0.0.1,"+linkRootAddr); err != nil {
		return err
	}
	if err := b.WaitStreaming(ctx, bed.DC1A, bed.DC1B, time.Minute); err != nil {
		return err
	}
	// The whole path: a replication login through the relay. Before the
	// first start the role does not exist yet (sdr's primary side creates
	// it): the server's "password authentication failed" shows that the
	// connection got through and matched the line above.
	uid, gid, err := postgresIDs()
	if err != nil {
		return err
	}
	pass, err := writeFloorPassFile(filepath.Join(b.Dir, "link"), b.ReplicationUser, b.Password)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(bed.BinDir, "psql"), "-XAtq", "-d",
		fmt.Sprintf("host=%s port=%d user=%s passfile=%s dbname=postgres replication=true", linkNSAddr, b.Node(bed.DC1A).Port, b.ReplicationUser, pass),
		"-c", "IDENTIFY_SYSTEM")
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	if out, err := cmd.CombinedOutput(); err != nil && !strings.Contains(string(out), "password authentication failed") {
		return fmt.Errorf("a replication login through the link: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// relayMain is the "relay" subcommand: a TCP relay from -listen to -to,
// run inside the link's namespace. It ends after -life, or when killed.
func relayMain(args []string) error {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	listen := fs.String("listen", "", "address to listen on")
	to := fs.String("to", "", "address to forward to")
	life := fs.Duration("life", time.Hour, "end after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *listen == "" || *to == "" || *life <= 0 {
		return errors.New("relay: -listen, -to and a positive -life are needed")
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	time.AfterFunc(*life, func() { ln.Close() })
	slots := make(chan struct{}, linkRelayConns)
	for {
		c, err := ln.Accept()
		if err != nil {
			return nil // closed at the end of its life
		}
		select {
		case slots <- struct{}{}:
		default:
			c.Close() // too many at once
			continue
		}
		go func() {
			defer func() { <-slots }()
			relayConn(c, *to)
		}()
	}
}

// relayConn copies both ways between c and a new connection to to, until
// either side ends.
func relayConn(c net.Conn, to string) {
	defer c.Close()
	u, err := net.DialTimeout("tcp", to, 10*time.Second)
	if err != nil {
		return
	}
	defer u.Close()
	var wg sync.WaitGroup
	wg.Add(2)
	half := func(dst, src net.Conn) {
		defer wg.Done()
		if _, err := io.Copy(dst, src); err != nil {
			// A reset or a failed write: end both ways at once.
			c.Close()
			u.Close()
			return
		}
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}
	go half(u, c)
	go half(c, u)
	wg.Wait()
}
