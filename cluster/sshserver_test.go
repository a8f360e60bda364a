package cluster

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// testSSHServer is an in-process SSH server for tests. It accepts one
// client key, runs "exec" requests with /bin/sh -c on this machine, and
// serves direct-tcpip and direct-streamlocal@openssh.com channels.
//
// Like OpenSSH, when a session's channel or the whole connection goes away
// it closes the command's stdin, stdout and stderr but does not kill it; a
// "signal" request kills the command's process group. Commands still
// running when the test ends are killed then. (OpenSSH too answers a
// "signal" request with killpg of the session.)
type testSSHServer struct {
	// RCJunk, when set before the first session, is printed on the
	// session's stdout and stderr before each command runs, as a login
	// shell whose startup files echo would.
	RCJunk string
	// Mangle, when set, rewrites each command before /bin/sh runs it, as
	// a login shell that reads quotes otherwise (fish, csh) would.
	Mangle func(string) string
	// MaxSessions, when set, refuses a session while that many of the
	// connection's sessions are open, as OpenSSH's sshd does past its
	// MaxSessions.
	MaxSessions int
	// Silent, when set, leaves global requests (keepalives) unanswered,
	// as a frozen sshd or a link that drops packets would.
	Silent atomic.Bool

	Addr         string // 127.0.0.1:port
	Host         string
	Port         int
	HostKey      ssh.PublicKey
	IdentityFile string // the accepted client key (OpenSSH PEM)
	KnownHosts   string // a known_hosts file trusting HostKey

	ln net.Listener
	wg sync.WaitGroup

	mu      sync.Mutex
	running map[*exec.Cmd]bool // commands not yet ended
}

func newTestKey(t *testing.T) (ssh.Signer, ed25519.PrivateKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s, priv
}

func writeIdentity(t *testing.T, priv ed25519.PrivateKey, file string) {
	t.Helper()
	blk, err := ssh.MarshalPrivateKey(priv, "sdr test")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
}

func startTestSSHServer(t *testing.T) *testSSHServer {
	t.Helper()
	return startTestSSHServerOn(t, "127.0.0.1:0")
}

// startTestSSHServerOn is startTestSSHServer listening on listen ("[::1]:0").
func startTestSSHServerOn(t *testing.T, listen string) *testSSHServer {
	t.Helper()
	dir := t.TempDir()
	hostSigner, _ := newTestKey(t)
	clientSigner, clientPriv := newTestKey(t)
	s := &testSSHServer{
		running:      map[*exec.Cmd]bool{},
		HostKey:      hostSigner.PublicKey(),
		IdentityFile: filepath.Join(dir, "id_ed25519"),
		KnownHosts:   filepath.Join(dir, "known_hosts"),
	}
	writeIdentity(t, clientPriv, s.IdentityFile)

	allowed := string(clientSigner.PublicKey().Marshal())
	conf := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if string(key.Marshal()) == allowed {
				return nil, nil
			}
			return nil, errors.New("key not allowed")
		},
	}
	conf.AddHostKey(hostSigner)

	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	s.ln = ln
	s.Addr = ln.Addr().String()
	host, port, _ := net.SplitHostPort(s.Addr)
	s.Host = host
	s.Port, _ = strconv.Atoi(port)
	line := knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, s.HostKey)
	if err := os.WriteFile(s.KnownHosts, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var conns []net.Conn
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serveConn(c, conf)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		s.mu.Lock()
		for c := range s.running {
			syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *testSSHServer) serveConn(c net.Conn, conf *ssh.ServerConfig) {
	sc, chans, reqs, err := ssh.NewServerConn(c, conf)
	if err != nil {
		c.Close()
		return
	}
	defer sc.Close()
	go s.serveGlobal(sc, reqs)
	var open atomic.Int32 // sessions of this connection
	for nc := range chans {
		switch nc.ChannelType() {
		case "session":
			if s.MaxSessions > 0 && open.Load() >= int32(s.MaxSessions) {
				nc.Reject(ssh.ConnectionFailed, "open failed")
				continue
			}
			ch, creqs, err := nc.Accept()
			if err != nil {
				continue
			}
			open.Add(1)
			s.wg.Add(1)
			go func() { defer s.wg.Done(); defer open.Add(-1); s.serveSession(ch, creqs) }()
		case "direct-tcpip":
			var p struct {
				Host       string
				Port       uint32
				OriginHost string
				OriginPort uint32
			}
			if err := ssh.Unmarshal(nc.ExtraData(), &p); err != nil {
				nc.Reject(ssh.ConnectionFailed, err.Error())
				continue
			}
			forward(nc, "tcp", net.JoinHostPort(p.Host, strconv.Itoa(int(p.Port))))
		case "direct-streamlocal@openssh.com":
			var p struct {
				Path      string
				Reserved0 string
				Reserved1 uint32
			}
			if err := ssh.Unmarshal(nc.ExtraData(), &p); err != nil {
				nc.Reject(ssh.ConnectionFailed, err.Error())
				continue
			}
			forward(nc, "unix", p.Path)
		default:
			nc.Reject(ssh.UnknownChannelType, "not supported")
		}
	}
}

func forward(nc ssh.NewChannel, network, addr string) {
	c, err := net.Dial(network, addr)
	if err != nil {
		nc.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		c.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	pipeConn(ch, c)
}

// pipeConn copies both ways between an SSH channel and a connection, then
// closes both.
func pipeConn(ch ssh.Channel, c net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		io.Copy(ch, c)
		ch.CloseWrite()
	}()
	go func() {
		defer wg.Done()
		io.Copy(c, ch)
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}()
	go func() {
		wg.Wait()
		ch.Close()
		c.Close()
	}()
}

// serveGlobal answers the connection's global requests: remote Unix socket
// forwarding (streamlocal-forward@openssh.com and its cancel) as OpenSSH
// does, refusing a socket file that exists (StreamLocalBindUnlink no) and
// leaving the file behind when the forwarding ends. Each connection to the
// socket is passed to the client in a forwarded-streamlocal@openssh.com
// channel. Any other request is refused.
func (s *testSSHServer) serveGlobal(sc *ssh.ServerConn, reqs <-chan *ssh.Request) {
	listeners := map[string]net.Listener{}
	defer func() {
		for _, ln := range listeners {
			ln.Close()
		}
	}()
	for req := range reqs {
		var p struct{ Path string }
		switch req.Type {
		case "streamlocal-forward@openssh.com":
			if err := ssh.Unmarshal(req.Payload, &p); err != nil || listeners[p.Path] != nil {
				req.Reply(false, nil)
				continue
			}
			ln, err := net.Listen("unix", p.Path)
			if err != nil {
				req.Reply(false, nil)
				continue
			}
			ln.(*net.UnixListener).SetUnlinkOnClose(false)
			listeners[p.Path] = ln
			req.Reply(true, nil)
			s.wg.Add(1)
			go func(path string) {
				defer s.wg.Done()
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() {
						ch, creqs, err := sc.OpenChannel("forwarded-streamlocal@openssh.com",
							ssh.Marshal(struct{ Path, Reserved string }{path, ""}))
						if err != nil {
							c.Close()
							return
						}
						go ssh.DiscardRequests(creqs)
						pipeConn(ch, c)
					}()
				}
			}(p.Path)
		case "cancel-streamlocal-forward@openssh.com":
			if err := ssh.Unmarshal(req.Payload, &p); err != nil || listeners[p.Path] == nil {
				req.Reply(false, nil)
				continue
			}
			ln := listeners[p.Path]
			delete(listeners, p.Path)
			ln.Close()
			req.Reply(true, nil)
		default:
			if req.WantReply && !s.Silent.Load() {
				req.Reply(false, nil)
			}
		}
	}
}

// serveSession handles one session: env is ignored, exec runs the command,
// signal kills its process group. When the channel closes (the client
// closed it or the connection is gone) the command's stdin reads EOF and
// its output goes nowhere, but it keeps running, as under OpenSSH.
func (s *testSSHServer) serveSession(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	var cmd *exec.Cmd
	done := make(chan struct{})
	kill := func() {
		if cmd != nil && cmd.Process != nil {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	}
	for {
		select {
		case req, ok := <-reqs:
			if !ok {
				// The channel is gone. Its reads return EOF, which the
				// stdin copy below passes on; leave the command be.
				ch.Close()
				if cmd != nil {
					<-done
				}
				return
			}
			switch req.Type {
			case "exec":
				if cmd != nil {
					req.Reply(false, nil)
					continue
				}
				var p struct{ Command string }
				if err := ssh.Unmarshal(req.Payload, &p); err != nil {
					req.Reply(false, nil)
					continue
				}
				if s.RCJunk != "" {
					io.WriteString(ch, s.RCJunk)
					io.WriteString(ch.Stderr(), s.RCJunk)
				}
				if s.Mangle != nil {
					p.Command = s.Mangle(p.Command)
				}
				cmd = exec.Command("/bin/sh", "-c", p.Command)
				cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
				cmd.Stdout = ch
				cmd.Stderr = ch.Stderr()
				stdin, err := cmd.StdinPipe()
				if err != nil {
					req.Reply(false, nil)
					return
				}
				if err := cmd.Start(); err != nil {
					req.Reply(false, nil)
					return
				}
				s.mu.Lock()
				s.running[cmd] = true
				s.mu.Unlock()
				req.Reply(true, nil)
				go func() {
					io.Copy(stdin, ch)
					stdin.Close()
				}()
				go func() {
					err := cmd.Wait()
					s.mu.Lock()
					delete(s.running, cmd)
					s.mu.Unlock()
					status := 0
					var ee *exec.ExitError
					if errors.As(err, &ee) {
						status = ee.ExitCode()
						if status < 0 {
							status = 128 + 9
						}
					}
					ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(status)}))
					close(done)
					ch.Close()
				}()
			case "signal":
				kill()
				req.Reply(true, nil)
			default:
				req.Reply(req.Type == "env", nil)
			}
		case <-done:
			return
		}
	}
}
