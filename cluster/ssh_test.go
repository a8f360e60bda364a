package cluster

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh/knownhosts"
)

func TestDialSSHErrors(t *testing.T) {
	srv := startTestSSHServer(t)
	dir := t.TempDir()

	otherHost, _ := newTestKey(t)
	wrongKnownHosts := filepath.Join(dir, "known_hosts_wrong")
	os.WriteFile(wrongKnownHosts, []byte(knownhosts.Line([]string{knownhosts.Normalize(srv.Addr)}, otherHost.PublicKey())+"\n"), 0o600)
	emptyKnownHosts := filepath.Join(dir, "known_hosts_empty")
	os.WriteFile(emptyKnownHosts, nil, 0o600)
	_, otherClient := newTestKey(t)
	wrongIdentity := filepath.Join(dir, "id_wrong")
	writeIdentity(t, otherClient, wrongIdentity)

	cases := []struct {
		name     string
		edit     func(c *Config)
		wantIs   error
		contains []string
	}{
		{"changed host key", func(c *Config) { c.SSH.KnownHosts = wrongKnownHosts }, ErrHostKey,
			[]string{"ssh dc1-a (" + srv.Addr + "): host key not in " + wrongKnownHosts + " (or changed"}},
		{"unknown host key", func(c *Config) { c.SSH.KnownHosts = emptyKnownHosts }, ErrHostKey,
			[]string{"host key not in " + emptyKnownHosts, "the entry must be named " + knownhosts.Normalize(srv.Addr)}},
		{"wrong client key", func(c *Config) { c.SSH.IdentityFile = wrongIdentity }, ErrSSHAuth,
			[]string{"ssh dc1-a (" + srv.Addr + "): authentication as postgres failed"}},
		{"missing identity file", func(c *Config) { c.SSH.IdentityFile = filepath.Join(dir, "nope") }, os.ErrNotExist,
			[]string{"ssh.identity_file"}},
		{"insecure skips host key check", func(c *Config) {
			c.SSH.KnownHosts = wrongKnownHosts
			c.SSH.InsecureIgnoreHostKey = true
		}, nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(srv)
			tc.edit(cfg)
			n, _ := cfg.Node("dc1-a")
			a, err := DialSSH(context.Background(), cfg, n)
			if tc.wantIs == nil {
				if err != nil {
					t.Fatal(err)
				}
				a.Close()
				return
			}
			if err == nil {
				a.Close()
				t.Fatal("want error")
			}
			if !errors.Is(err, tc.wantIs) {
				t.Fatalf("want errors.Is %v, got %v", tc.wantIs, err)
			}
			for _, s := range tc.contains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

func TestDialSSHTimeout(t *testing.T) {
	// A listener that never answers the SSH handshake.
	srv := startTestSSHServer(t)
	cfg := testConfig(srv)
	cfg.Timeouts.Connect.Duration = 300 * time.Millisecond
	ln := mustListen(t)
	n, _ := cfg.Node("dc1-a")
	n.Host, n.SSHPort = splitAddr(t, ln.Addr().String())
	start := time.Now()
	_, err := DialSSH(context.Background(), cfg, n)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want deadline error, got %v", err)
	}
	if time.Since(start) > 3*time.Second {
		t.Fatalf("took %v", time.Since(start))
	}
}

func TestPool(t *testing.T) {
	srv := startTestSSHServer(t)
	cfg := testConfig(srv)
	cfg.Standby.Nodes[0].Local = true
	p := Open(context.Background(), cfg, nil)
	defer p.Close()

	var wg sync.WaitGroup
	got := make([]Access, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := p.Get(context.Background(), "dc1-a")
			if err != nil {
				t.Error(err)
			}
			got[i] = a
		}()
	}
	wg.Wait()
	for _, a := range got[1:] {
		if a != got[0] {
			t.Fatal("Get returned different Access values for one node")
		}
	}
	if _, ok := got[0].(*SSH); !ok {
		t.Fatalf("dc1-a: got %T, want *SSH", got[0])
	}
	local, err := p.Get(context.Background(), "dc2-a")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := local.(*Local); !ok {
		t.Fatalf("dc2-a: got %T, want *Local", local)
	}
	if _, err := p.Get(context.Background(), "dc9"); err == nil {
		t.Fatal("unknown node: want error")
	}

	// A lost connection is opened again.
	got[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for !got[0].(*SSH).Dead() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	again, err := p.Get(context.Background(), "dc1-a")
	if err != nil || again == got[0] {
		t.Fatalf("after close: %v, same=%v", err, again == got[0])
	}
	if _, err := again.Run(context.Background(), "true", RunOpts{}); err != nil {
		t.Fatal(err)
	}

	p.Close()
	if _, err := p.Get(context.Background(), "dc1-a"); !errors.Is(err, ErrPoolClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

// TestDialSSHAddressForms reaches the node by an IPv6 address and by a
// name, with known_hosts entries in OpenSSH's "[host]:port" form.
func TestDialSSHAddressForms(t *testing.T) {
	cases := []struct {
		name   string
		listen string
		host   string
	}{
		{"IPv6 loopback", "[::1]:0", "::1"},
		{"host name", "127.0.0.1:0", "localhost"},
		{"IPv4", "127.0.0.1:0", "127.0.0.1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if ln, err := net.Listen("tcp", tc.listen); err != nil {
				t.Skipf("no %s on this machine: %v", tc.listen, err)
			} else {
				ln.Close()
			}
			srv := startTestSSHServerOn(t, tc.listen)
			line := knownhosts.Line([]string{KnownHostsName(tc.host, srv.Port)}, srv.HostKey)
			if err := os.WriteFile(srv.KnownHosts, []byte(line+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := testConfig(srv)
			n, _ := cfg.Node("dc1-a")
			n.Host = tc.host
			a, err := DialSSH(context.Background(), cfg, n)
			if err != nil {
				t.Fatalf("DialSSH %s: %v", SSHAddress(tc.host, srv.Port), err)
			}
			defer a.Close()
			out, err := a.Run(context.Background(), "echo ok", RunOpts{})
			if err != nil || strings.TrimSpace(string(out)) != "ok" {
				t.Fatalf("Run: %q, %v", out, err)
			}
		})
	}
}
