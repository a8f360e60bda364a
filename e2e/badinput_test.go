package e2e

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/pgsdr/sdr/e2e/bed"
)

// badCase is one operator mistake: what sdr is given, the exit code and
// the words the one-line error must contain.
type badCase struct {
	name   string
	role   string                        // default primary
	mutate func(m cfgMap)                // config change; nil keeps the bed's config
	setup  func(t *testing.T, c *badEnv) // optional: files, a stopped node...
	args   []string                      // replaces "start --role ROLE" when set
	env    []string
	code   int
	want   []string
	// inStep: the mistake is found by a step (1 or 2, which only check):
	// the step's failure is recorded in the state file, the side stays
	// normal and no node is changed; code 2 when a rerun cannot succeed
	// as it is (README, exit codes).
	inStep string
}

// badEnv is the per-case scratch space.
type badEnv struct {
	b      *bed.Bed
	dir    string
	config string // written from mutate unless setup sets it
	state  string
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestBadInput gives sdr at least 25 distinct mistakes. Each gets a clear
// one-line error naming what is wrong, exit code 2 (or 1 for a step that
// found the problem on a node), and no state change. They share one bed.
func TestBadInput(t *testing.T) {
	t.Parallel() // each test has its own bed; make e2e runs two at a time (-parallel 2)
	b := newBed(t)
	ctx := context.Background()
	// The primary side's role exists, so standby-side cases reach the
	// replication checks: a primary run that times out waiting.
	prep := side{"primary", filepath.Join(b.Dir, "prep-primary.db"), filepath.Join(b.Dir, "prep.log")}
	if r := start(t, b, prep, "--timeout", "2s"); r.Code != 1 {
		t.Fatalf("preparing the primary side: %s", r)
	}
	dc1a := b.Node(bed.DC1A)

	cases := []badCase{
		{name: "missing config file", setup: func(t *testing.T, c *badEnv) { c.config = filepath.Join(c.dir, "nope.yaml") }, code: 2, want: []string{"nope.yaml"}},
		{name: "config is not YAML", setup: func(t *testing.T, c *badEnv) { writeFile(t, c.config, "name: [unclosed\n") }, code: 2, want: []string{"config"}},
		{name: "unknown top-level field", mutate: func(m cfgMap) { m["colour"] = "blue" }, code: 2, want: []string{"colour"}},
		{name: "unknown node field", mutate: func(m cfgMap) { nodeMap(m, "primary", 0)["datadir"] = "/x" }, code: 2, want: []string{"datadir"}},
		{name: "port of the wrong type", mutate: func(m cfgMap) { nodeMap(m, "primary", 1)["pg_port"] = "five" }, code: 2, want: []string{"pg_port"}},
		{name: "port out of range", mutate: func(m cfgMap) { nodeMap(m, "standby", 1)["pg_port"] = 70000 }, code: 2, want: []string{"clusters.dc2.nodes[1].pg_port"}},
		{name: "missing name", mutate: func(m cfgMap) { delete(m, "name") }, code: 2, want: []string{"name"}},
		{name: "missing replication user", mutate: func(m cfgMap) { delete(sub(m, "replication"), "user") }, code: 2, want: []string{"replication.user"}},
		{name: "replication user is the admin user", mutate: func(m cfgMap) { sub(m, "replication")["user"] = "postgres" }, code: 2, want: []string{"replication.user", "postgres.user"}},
		{name: "pg_hba keyword as a host", mutate: func(m cfgMap) { nodeMap(m, "standby", 1)["host"] = "samenet" }, code: 2, want: []string{"clusters.dc2.nodes[1].host", "samenet"}},
		{name: "two password sources", mutate: func(m cfgMap) { sub(m, "replication")["password_env"] = "SDR_PW" }, code: 2, want: []string{"password"}},
		{name: "no password source", mutate: func(m cfgMap) { delete(sub(m, "replication"), "password_file") }, code: 2, want: []string{"password"}},
		{name: "duplicate node names", mutate: func(m cfgMap) { nodeMap(m, "standby", 1)["name"] = bed.DC1A }, code: 2, want: []string{"dc1-a"}},
		{name: "main standby not in the standby cluster", mutate: func(m cfgMap) { clusterMap(m, "standby")["main"] = bed.DC1B }, code: 2, want: []string{"clusters.dc2.main", "dc1-b"}},
		{name: "same data directory on both sides", mutate: func(m cfgMap) { nodeMap(m, "standby", 1)["data_dir"] = dc1a.DataDir }, code: 2, want: []string{"data_dir"}},
		{name: "relative data directory", mutate: func(m cfgMap) { nodeMap(m, "standby", 0)["data_dir"] = "pgdata" }, code: 2, want: []string{"clusters.dc2.nodes[0].data_dir"}},
		{name: "same host and port twice", mutate: func(m cfgMap) { nodeMap(m, "standby", 0)["pg_port"] = dc1a.Port }, code: 2, want: []string{"pg_port"}},
		{name: "empty standby cluster", mutate: func(m cfgMap) { clusterMap(m, "standby")["nodes"] = []any{} }, code: 2, want: []string{"clusters.dc2.nodes"}},
		{name: "bad duration", mutate: func(m cfgMap) { sub(m, "timeouts")["connect"] = "soon" }, code: 2, want: []string{"timeouts.connect"}},
		{name: "no known_hosts", mutate: func(m cfgMap) { delete(sub(m, "ssh"), "known_hosts") }, code: 2, want: []string{"ssh.known_hosts"}},
		{name: "unreadable password file", mutate: func(m cfgMap) { sub(m, "replication")["password_file"] = "/nonexistent/repl.pass" }, code: 2, want: []string{"/nonexistent/repl.pass"}},
		{name: "password variable not set", mutate: func(m cfgMap) {
			delete(sub(m, "replication"), "password_file")
			sub(m, "replication")["password_env"] = "SDR_TEST_UNSET_PASSWORD"
		}, code: 2, want: []string{"SDR_TEST_UNSET_PASSWORD"}},
		{name: "unknown role", args: []string{"start", "--role", "witness"}, code: 2, want: []string{"witness"}},
		{name: "no role", args: []string{"start"}, code: 2, want: []string{"role"}},
		{name: "negative timeout", args: []string{"start", "--role", "primary", "--timeout", "-5s"}, code: 2, want: []string{"timeout"}},
		{name: "unknown flag", args: []string{"start", "--role", "primary", "--fast"}, code: 2, want: []string{"fast"}},
		{name: "stop on a side where sdr never ran", role: "standby", args: []string{"stop", "--role", "standby"}, code: 2,
			want: []string{"no state file", "sdr start has not run on this side", "--no-start-record"}},
		{name: "malformed switchover token", role: "standby", args: []string{"switchover", "--role", "standby", "--token", "abc"}, code: 2,
			want: []string{"--token", "not sdr's"}},
		{name: "stop with --promote", role: "standby", args: []string{"stop", "--role", "standby", "--promote"}, code: 2, want: []string{"sdr failover"}},
		{name: "stop --drop-role on the standby side", role: "standby", args: []string{"stop", "--role", "standby", "--drop-role"}, code: 2,
			want: []string{"--drop-role", "primary"}},
		{name: "corrupt state file", setup: func(t *testing.T, c *badEnv) {
			junk := make([]byte, 8192)
			_, _ = rand.Read(junk)
			writeFile(t, c.state, string(junk))
		}, code: 2, want: []string{"corrupt"}},
		{name: "foreign bbolt file", setup: func(t *testing.T, c *badEnv) {
			db, err := bolt.Open(c.state, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			_ = db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("invoices")); return err })
			db.Close()
		}, code: 2, want: []string{"not an sdr state file"}},
		{name: "state file of another DR pair", setup: func(t *testing.T, c *badEnv) {
			r := sdr(t, sdrBinFP, nil, "--state", c.state, "selftest", "--journal", filepath.Join(c.dir, "journal"))
			if r.Code != 0 {
				t.Fatalf("making a state file of pair selftest: %s", r)
			}
		}, code: 2, want: []string{"another DR pair", "selftest"}},
		{name: "state file of the primary side given to the standby side", role: "standby", setup: func(t *testing.T, c *badEnv) {
			raw, err := os.ReadFile(prep.state)
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, c.state, string(raw))
		}, code: 2, want: []string{"other cluster", "belongs to cluster dc1", "--role standby"}},
		{name: "state file of the standby side given to the primary side", setup: func(t *testing.T, c *badEnv) {
			r := sdr(t, sdrBinFP, []string{"SDR_FAILPOINT=1_prepare:before"}, "--config", c.config, "--state", c.state, "start", "--role", "standby")
			if r.Code != 1 {
				t.Fatalf("making a standby-side state file: %s", r)
			}
		}, code: 2, want: []string{"other cluster", "belongs to cluster dc2", "--role primary"}},
		{name: "config changed since the recorded run", setup: func(t *testing.T, c *badEnv) {
			r := sdr(t, sdrBinFP, []string{"SDR_FAILPOINT=1_prepare:before"}, "--config", c.config, "--state", c.state, "start", "--role", "primary")
			if r.Code != 1 {
				t.Fatalf("recording a run: %s", r)
			}
			c.config = writeCfg(t, b, c.dir, func(m cfgMap) { nodeMap(m, "primary", 1)["pg_port"] = freePort(t) })
		}, code: 2, want: []string{"inputs changed", "clusters.dc1.nodes[dc1-b].pg_port", "--restart"}},
		{name: "unknown SSH host key", setup: func(t *testing.T, c *badEnv) {
			pub := newKey(t, c.dir, "otherhost")
			kh := filepath.Join(c.dir, "known_hosts")
			writeFile(t, kh, fmt.Sprintf("[127.0.0.1]:%d %s\n", b.SSHPort, pub))
			c.config = writeCfg(t, b, c.dir, func(m cfgMap) { sub(m, "ssh")["known_hosts"] = kh })
		}, code: 2, inStep: "2_check_cluster", want: []string{"host key", "known_hosts"}},
		{name: "SSH identity file missing", setup: func(t *testing.T, c *badEnv) {
			c.config = writeCfg(t, b, c.dir, func(m cfgMap) { sub(m, "ssh")["identity_file"] = filepath.Join(c.dir, "no-such-key") })
		}, code: 2, inStep: "2_check_cluster", want: []string{"ssh.identity_file", "no-such-key"}},
		{name: "known_hosts file missing", setup: func(t *testing.T, c *badEnv) {
			c.config = writeCfg(t, b, c.dir, func(m cfgMap) { sub(m, "ssh")["known_hosts"] = filepath.Join(c.dir, "no-such-known-hosts") })
		}, code: 2, inStep: "2_check_cluster", want: []string{"known_hosts", "no-such-known-hosts"}},
		{name: "bin_dir without PostgreSQL", role: "standby", args: []string{"start", "--role", "standby", "--timeout", "20s"},
			mutate: func(m cfgMap) { nodeMap(m, "standby", 1)["bin_dir"] = "/usr/lib/postgresql/99/bin" }, code: 2, inStep: "2_check_cluster",
			want: []string{"bin_dir", "postgres --version"}},
		{name: "wrong SSH key", setup: func(t *testing.T, c *badEnv) {
			newKey(t, c.dir, "wrongkey")
			c.config = writeCfg(t, b, c.dir, func(m cfgMap) { sub(m, "ssh")["identity_file"] = filepath.Join(c.dir, "wrongkey") })
		}, code: 2, inStep: "2_check_cluster", want: []string{"authentication", "postgres"}},
		{name: "wrong PostgreSQL port", mutate: func(m cfgMap) { nodeMap(m, "primary", 1)["pg_port"] = freePort(t) }, code: 2, inStep: "2_check_cluster", want: []string{"dc1-b"}},
		{name: "PostgreSQL not running on a primary node", setup: func(t *testing.T, c *badEnv) {
			if err := b.PGCtl(ctx, bed.DC1B, "stop", "-m", "fast", "-w"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := b.PGCtl(ctx, bed.DC1B, "start"); err != nil {
					t.Errorf("restarting dc1-b: %v", err)
				}
			})
		}, code: 2, inStep: "2_check_cluster", want: []string{"dc1-b"}},
		{name: "wrong replication password", role: "standby", args: []string{"start", "--role", "standby", "--timeout", "3s"}, setup: func(t *testing.T, c *badEnv) {
			pw := filepath.Join(c.dir, "wrong.pass")
			writeFile(t, pw, "not-the-password")
			c.config = writeCfg(t, b, c.dir, func(m cfgMap) { sub(m, "replication")["password_file"] = pw })
		}, code: 1, inStep: "2_check_cluster", want: []string{"password authentication failed", "sdr_repl"}},
		{name: "standby node whose data directory is the running primary", role: "standby", args: []string{"start", "--role", "standby", "--timeout", "20s"},
			setup: func(t *testing.T, c *badEnv) {
				link := filepath.Join(b.Dir, "alias-of-dc1-a")
				if err := os.Symlink(dc1a.DataDir, link); err != nil {
					t.Fatal(err)
				}
				// The same machine under another name, so that the config
				// itself looks sound.
				kh, err := os.ReadFile(b.KnownHosts)
				if err != nil {
					t.Fatal(err)
				}
				khPath := filepath.Join(c.dir, "known_hosts")
				writeFile(t, khPath, string(kh)+strings.ReplaceAll(string(kh), "[127.0.0.1]", "[localhost]"))
				c.config = writeCfg(t, b, c.dir, func(m cfgMap) {
					sub(m, "ssh")["known_hosts"] = khPath
					n := nodeMap(m, "standby", 1)
					n["host"], n["data_dir"], n["pg_port"], n["socket_dir"] = "localhost", link, dc1a.Port, dc1a.SocketDir
				})
			}, code: 2, inStep: "2_check_cluster", want: []string{"dc2-b", "primary-cluster node dc1-a", "nothing was stopped"}},
	}
	if len(cases) < 25 {
		t.Fatalf("only %d cases", len(cases))
	}
	pidsBefore := map[string]string{}
	for _, n := range bed.NodeNames {
		pidsBefore[n] = sql(t, b, n, "SELECT pg_postmaster_start_time()")
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &badEnv{b: b, dir: t.TempDir()}
			c.state = filepath.Join(c.dir, "state.db")
			c.config = writeCfg(t, b, c.dir, nil)
			if tc.mutate != nil {
				c.config = writeCfg(t, b, c.dir, tc.mutate)
			}
			if tc.setup != nil {
				tc.setup(t, c)
			}
			role := tc.role
			if role == "" {
				role = "primary"
			}
			args := tc.args
			if args == nil {
				args = []string{"start", "--role", role}
			}
			before := fileDigest(c.state)
			r := sdr(t, sdrBinFP, tc.env, append([]string{"--config", c.config, "--state", c.state}, args...)...)
			if r.Code != tc.code {
				t.Fatalf("exit %d, want %d\n%s", r.Code, tc.code, r)
			}
			msg := errorLine(r.Stderr)
			if msg == "" {
				t.Fatalf("no error line (\"sdr: ...\"):\n%s", r)
			}
			t.Logf("exit %d: %s", r.Code, msg)
			for _, w := range tc.want {
				if !strings.Contains(strings.ToLower(msg), strings.ToLower(w)) {
					t.Errorf("error %q does not name %q", msg, w)
				}
			}
			if strings.Contains(msg, b.Password) {
				t.Errorf("error shows the password")
			}
			// No state change: a run refused before any step leaves the
			// state file as it was; a check step that found the mistake is
			// recorded as failed and leaves the side in normal.
			switch {
			case tc.inStep == "" && tc.code == 2:
				if after := fileDigest(c.state); after != before {
					t.Errorf("state file changed: %s -> %s", before, after)
				}
			case tc.inStep == "":
				t.Fatalf("case %q: exit %d needs inStep", tc.name, tc.code)
			default:
				d := status(t, "", side{role: role, state: c.state})
				if got := d.state(role); got != "normal" {
					t.Errorf("side state %q after a failed check, want normal", got)
				}
				if rec := findStep(d, tc.inStep); rec == nil || rec.Status != "failed" {
					t.Errorf("%s recorded as %+v, want failed", tc.inStep, rec)
				}
				wantOut := map[int]string{1: "failed at " + tc.inStep, 2: "refused at " + tc.inStep + " before changing anything"}[tc.code]
				if !strings.Contains(r.Stdout, wantOut) {
					t.Errorf("stdout does not say %q:\n%s", wantOut, r.Stdout)
				}
			}
		})
	}
	// Nothing was restarted or taken over by any of the mistakes.
	for _, n := range bed.NodeNames {
		if got := sql(t, b, n, "SELECT pg_postmaster_start_time()"); got != pidsBefore[n] && n != bed.DC1B {
			t.Errorf("%s was restarted by a bad-input run", n)
		}
	}
	if got := sql(t, b, bed.DC2A, "SELECT pg_is_in_recovery()"); got != "f" {
		t.Errorf("dc2-a changed role")
	}
}

// errorLine is the "sdr: ..." line a failed run prints.
func errorLine(stderr string) string {
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "sdr: ") {
			return l
		}
	}
	return ""
}

func fileDigest(p string) string {
	raw, err := os.ReadFile(p)
	if err != nil {
		return "missing"
	}
	return fmt.Sprintf("%d bytes %x", len(raw), raw[:min(len(raw), 64)])
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

var cfgSeq int

func writeCfg(t *testing.T, b *bed.Bed, dir string, mutate func(m cfgMap)) string {
	t.Helper()
	cfgSeq++
	p := filepath.Join(dir, fmt.Sprintf("sdr-%d.yaml", cfgSeq))
	_, err := b.WriteConfigTo(p, func(m *map[string]any) {
		if mutate != nil {
			mutate(*m)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// newKey makes an ed25519 key pair in dir and returns the public key line.
func newKey(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", p).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v %s", err, out)
	}
	pub, err := os.ReadFile(p + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(pub))
	return f[0] + " " + f[1]
}
