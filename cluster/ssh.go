package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSH reaches a node over one SSH connection: commands run in sessions,
// files move through sessions' stdin/stdout, and Dial tunnels TCP and Unix
// socket connections (direct-tcpip, direct-streamlocal) from the node.
type SSH struct {
	node   Node
	addr   string
	client *ssh.Client
	dead   chan struct{} // closed when the connection ends
	// plain: the login shell passes a single-quoted script on unchanged,
	// so commands go as frame.plainCommand. DialSSH asks once, without
	// waiting for the answer (plainWorks); until it is known, commands go
	// base64-framed, which every login shell passes on. plainKnown is
	// closed once plain holds the answer.
	plain      atomic.Bool
	plainKnown chan struct{}
	// lost says why the connection was closed for not answering its
	// keepalives ("" while it answers); commands that fail with it name it.
	lost atomic.Value

	closeOnce sync.Once
	closeErr  error
}

var _ Access = (*SSH)(nil)

// promptAcks: DialSSH acknowledges what arrives at once (ackPromptly);
// BenchmarkDialSSH turns it off to compare.
var promptAcks = true

// DialSSH connects to node n as n.SSHUser with the key in ssh.identity_file,
// checking the host key against ssh.known_hosts unless
// ssh.insecure_ignore_host_key is set. The connect (TCP and handshake) is
// bounded by timeouts.connect and ctx. What arrives is acknowledged at once
// (ackPromptly): that takes the handshake with OpenSSH's sshd from about
// 85 ms to about 40 ms (BenchmarkDialSSH).
func DialSSH(ctx context.Context, cfg *Config, n *Node) (*SSH, error) {
	addr := SSHAddress(n.Host, n.SSHPort)
	where := fmt.Sprintf("ssh %s (%s)", n.Name, addr)

	signer, err := loadIdentity(cfg.SSH.IdentityFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (%w)", where, err, ErrSSHFiles)
	}
	conf := &ssh.ClientConfig{
		User:    n.SSHUser,
		Auth:    []ssh.AuthMethod{ssh.PublicKeys(signer)},
		Timeout: cfg.Timeouts.Connect.Duration,
	}
	if cfg.SSH.InsecureIgnoreHostKey {
		conf.HostKeyCallback = ssh.InsecureIgnoreHostKey() //nolint:gosec // asked for explicitly; the caller warns
	} else {
		cb, err := knownhosts.New(cfg.SSH.KnownHosts)
		if err != nil {
			return nil, fmt.Errorf("%s: reading ssh.known_hosts: %w (%w)", where, err, ErrSSHFiles)
		}
		conf.HostKeyAlgorithms = hostKeyAlgorithms(cb, addr)
		conf.HostKeyCallback = func(hostname string, remote net.Addr, key ssh.PublicKey) error {
			if err := cb(hostname, remote, key); err != nil {
				return &hostKeyError{file: cfg.SSH.KnownHosts, err: err}
			}
			return nil
		}
	}

	timeout := cfg.Timeouts.Connect.Duration
	if timeout <= 0 {
		timeout = DefaultConnectTimeout
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if promptAcks {
		conn = ackPromptly(conn)
	}
	// Bound the handshake by the same deadline and by ctx.
	if dl, ok := dctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(dctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	cc, chans, reqs, err := ssh.NewClientConn(conn, addr, conf)
	stop()
	if err != nil {
		conn.Close()
		var hk *hostKeyError
		switch {
		case errors.As(err, &hk):
			return nil, fmt.Errorf("%s: host key not in %s (or changed; the entry must be named %s): %w",
				where, hk.file, KnownHostsName(n.Host, n.SSHPort), errors.Join(ErrHostKey, hk.err))
		case strings.Contains(err.Error(), "unable to authenticate"):
			return nil, fmt.Errorf("%s: authentication as %s failed (is the public key of %s in ~%s/.ssh/authorized_keys?): %w",
				where, n.SSHUser, cfg.SSH.IdentityFile, n.SSHUser, ErrSSHAuth)
		case ctx.Err() != nil:
			return nil, fmt.Errorf("%s: %w", where, context.Cause(ctx))
		case dctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded):
			return nil, fmt.Errorf("%s: ssh handshake did not finish within %s: %w", where, timeout, context.DeadlineExceeded)
		}
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	_ = conn.SetDeadline(time.Time{})
	s := &SSH{node: *n, addr: addr, client: ssh.NewClient(cc, chans, reqs), dead: make(chan struct{}), plainKnown: make(chan struct{})}
	go func() {
		_ = s.client.Wait()
		close(s.dead)
	}()
	if ka := cfg.Timeouts.Keepalive.Duration; ka > 0 {
		go s.keepAlive(ka, KeepaliveMisses)
	}
	// The first commands need not wait for the login shell's answer: they
	// go base64-framed meanwhile. The question is bounded by the connect
	// timeout, and ends with the connection.
	go func() {
		defer close(s.plainKnown)
		pctx, pcancel := context.WithTimeout(context.Background(), timeout)
		defer pcancel()
		s.plain.Store(s.plainWorks(pctx))
	}()
	return s, nil
}

// keepAlive asks the server every interval whether the connection still
// answers (keepalive@openssh.com; any reply counts, a refusal too), one
// ask at a time, and closes the connection when an ask gets no reply
// within misses intervals: a node or link that stopped answering (a
// frozen sshd, a cut link that drops packets) then fails what runs
// through it at once, instead of at --timeout.
func (s *SSH) keepAlive(interval time.Duration, misses int) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.dead:
			return
		case <-t.C:
		}
		reply := make(chan error, 1)
		go func() {
			_, _, err := s.client.SendRequest("keepalive@openssh.com", true, nil)
			reply <- err
		}()
		wait := time.Duration(misses) * interval
		select {
		case err := <-reply:
			if err != nil {
				return // the connection is gone already
			}
			continue
		case <-time.After(wait):
		case <-s.dead:
			return
		}
		s.lost.Store(fmt.Sprintf("the SSH connection to %s (%s) stopped answering: no reply to a keepalive in %s (timeouts.keepalive %s, %d times)",
			s.node.Name, s.addr, wait, interval, misses))
		_ = s.client.Close()
		return
	}
}

// lostErr adds to err why the connection was closed, when keepAlive
// closed it.
func (s *SSH) lostErr(err error) error {
	if why, _ := s.lost.Load().(string); why != "" && err != nil {
		return fmt.Errorf("%s: %w", why, err)
	}
	return err
}

// plainWorks tells whether the node's login shell runs commands framed
// as frame.plainCommand unchanged: it runs plainProbe so framed and
// compares the output. Any other outcome (a csh or fish login shell that
// reads quotes otherwise, an error) keeps the base64 framing, which every
// shell passes on.
func (s *SSH) plainWorks(ctx context.Context) bool {
	p, err := s.start(ctx, plainProbe, RunOpts{}, true)
	if err != nil {
		return false
	}
	_ = p.Stdin().Close()
	out, err := p.Wait()
	return err == nil && string(out) == plainWant
}

type hostKeyError struct {
	file string
	err  error
}

func (e *hostKeyError) Error() string { return e.err.Error() }
func (e *hostKeyError) Unwrap() error { return e.err }

// hostKeyAlgorithms returns the key types known_hosts holds for addr, so the
// server is asked for a key we can check (otherwise a server offering, say,
// RSA first fails against an ed25519 entry).
func hostKeyAlgorithms(cb ssh.HostKeyCallback, addr string) []string {
	var ke *knownhosts.KeyError
	if err := cb(knownhosts.Normalize(addr), &net.TCPAddr{}, probeKey{}); !errors.As(err, &ke) {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	add := func(a string) {
		if !seen[a] {
			seen[a] = true
			algos = append(algos, a)
		}
	}
	for _, k := range ke.Want {
		t := k.Key.Type()
		if t == ssh.KeyAlgoRSA {
			add(ssh.KeyAlgoRSASHA512)
			add(ssh.KeyAlgoRSASHA256)
		}
		add(t)
	}
	return algos
}

// probeKey is a key no known_hosts entry matches.
type probeKey struct{}

func (probeKey) Type() string                        { return "sdr-probe" }
func (probeKey) Marshal() []byte                     { return []byte("sdr-probe") }
func (probeKey) Verify([]byte, *ssh.Signature) error { return errors.New("probe key") }

func loadIdentity(file string) (ssh.Signer, error) {
	if file == "" {
		return nil, errors.New("ssh.identity_file is not set")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading ssh.identity_file %s: %w", file, unwrapPathError(err))
	}
	signer, err := ssh.ParsePrivateKey(b)
	if err != nil {
		var pe *ssh.PassphraseMissingError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("ssh.identity_file %s is protected by a passphrase; sdr needs a key without one", file)
		}
		return nil, fmt.Errorf("ssh.identity_file %s: %w", file, err)
	}
	return signer, nil
}

// Node is the node this Access reaches.
func (s *SSH) Node() *Node { return &s.node }

// Close closes the SSH connection.
func (s *SSH) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.client.Close() })
	return s.closeErr
}

// Dead reports whether the connection has ended (closed, or lost).
func (s *SSH) Dead() bool {
	select {
	case <-s.dead:
		return true
	default:
		return false
	}
}

// Run runs cmd in a new session (see Start). When ctx is done the session
// is sent SIGKILL and closed.
func (s *SSH) Run(ctx context.Context, cmd string, opts RunOpts) ([]byte, error) {
	in := opts.Stdin
	opts.Stdin = nil
	p, err := s.Start(ctx, cmd, opts)
	if err != nil {
		return nil, err
	}
	// Feed stdin without making Wait wait for it: a command that exits
	// without reading it all must not hang the call.
	go func() {
		if in != nil {
			_, _ = io.Copy(p.Stdin(), in)
		}
		_ = p.Stdin().Close()
	}()
	return p.Wait()
}

// Start runs cmd in a new session as /bin/sh -c, whatever the login shell
// is, with its stdout framed (see frame; plainly when the login shell
// allows it) so that only the command's own output is returned.
func (s *SSH) Start(ctx context.Context, cmd string, opts RunOpts) (Proc, error) {
	return s.start(ctx, cmd, opts, s.plain.Load())
}

func (s *SSH) start(ctx context.Context, cmd string, opts RunOpts, plain bool) (Proc, error) {
	if opts.Stdin != nil {
		return nil, fmt.Errorf("on %s: Start takes no RunOpts.Stdin; write to Proc.Stdin", s.node.Name)
	}
	line, err := commandLine(cmd, opts.Env)
	if err != nil {
		return nil, fmt.Errorf("on %s: %w", s.node.Name, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("on %s: %q not started: %w", s.node.Name, shorten(cmd, 200), context.Cause(ctx))
	}
	sess, err := s.client.NewSession()
	if err != nil {
		var oce *ssh.OpenChannelError
		if errors.As(err, &oce) && oce.Reason == ssh.ConnectionFailed {
			// OpenSSH's answer past its MaxSessions.
			return nil, fmt.Errorf("on %s: opening an ssh session: %w (the node's sshd refused one more session on sdr's connection: "+
				"sdr runs a few commands at once on a node; MaxSessions in the node's sshd_config must not be below OpenSSH's default of 10)",
				s.node.Name, err)
		}
		return nil, fmt.Errorf("on %s: opening an ssh session: %w", s.node.Name, s.lostErr(err))
	}
	stdin, err := sess.StdinPipe()
	if err != nil {
		sess.Close()
		return nil, fmt.Errorf("on %s: opening an ssh session's stdin: %w", s.node.Name, err)
	}
	p := &sshProc{s: s, ctx: ctx, cmd: cmd, sess: sess, stdin: stdin, fr: newFrame(), done: make(chan struct{})}
	sess.Stdout = &p.out.stdout
	if opts.Stdout != nil {
		p.stream = newStreamFrame(p.fr, opts.Stdout)
		sess.Stdout = p.stream
	}
	p.stderr = &stderrGate{marker: p.fr.begin, w: p.out.stderrWriter(opts.Stderr)}
	sess.Stderr = p.stderr
	framed := p.fr.command(line)
	if plain {
		framed = p.fr.plainCommand(line)
	}
	if err := sess.Start(framed); err != nil {
		sess.Close()
		return nil, fmt.Errorf("on %s: starting %q: %w", s.node.Name, shorten(cmd, 200), err)
	}
	stop := context.AfterFunc(ctx, func() { _ = p.Kill() })
	go func() {
		p.werr = sess.Wait()
		stop()
		close(p.done)
	}()
	return p, nil
}

// sshProc is a command running in an SSH session.
type sshProc struct {
	s      *SSH
	ctx    context.Context
	cmd    string
	sess   *ssh.Session
	stdin  io.WriteCloser
	fr     frame
	out    commandOutput
	stderr *stderrGate
	stream *streamFrame  // stdout passed on as it arrives (RunOpts.Stdout), or nil
	done   chan struct{} // closed when the session ended; then werr is set
	werr   error

	once sync.Once
	res  []byte
	err  error
}

func (p *sshProc) Stdin() io.WriteCloser { return p.stdin }

func (p *sshProc) Kill() error {
	err := p.sess.Signal(ssh.SIGKILL)
	if cerr := p.sess.Close(); err == nil {
		err = cerr
	}
	return err
}

func (p *sshProc) Wait() ([]byte, error) {
	p.once.Do(func() { p.res, p.err = p.wait() })
	return p.res, p.err
}

func (p *sshProc) wait() ([]byte, error) {
	node := p.s.node.Name
	defer p.sess.Close()
	select {
	case <-p.done:
	case <-p.ctx.Done():
		select {
		case <-p.done:
		default:
			_ = p.Kill()
			// Give the session a moment to end so that its output
			// goroutines stop; do not wait for a peer that is gone.
			select {
			case <-p.done:
			case <-time.After(time.Second):
			}
			return nil, fmt.Errorf("on %s: %q stopped: %w", node, shorten(p.cmd, 200), context.Cause(p.ctx))
		}
	}
	if p.ctx.Err() != nil {
		// Killed for ctx (see Start), or ended just as ctx did.
		return nil, fmt.Errorf("on %s: %q stopped: %w", node, shorten(p.cmd, 200), context.Cause(p.ctx))
	}
	p.stderr.flush()
	stdout, begun, ended := p.fr.strip(p.out.stdout.Bytes())
	var serr error
	if p.stream != nil {
		stdout = nil
		begun, ended, serr = p.stream.result()
	}
	if err := p.werr; err != nil {
		if why, _ := p.s.lost.Load().(string); why != "" {
			return nil, fmt.Errorf("on %s: %q did not finish: %s: %w", node, shorten(p.cmd, 200), why, err)
		}
		var ee *ssh.ExitError
		var me *ssh.ExitMissingError
		switch {
		case errors.As(err, &ee):
			return stdout, &CommandError{Node: node, Cmd: p.cmd, ExitCode: ee.ExitStatus(), Stderr: p.out.stderr.String()}
		case errors.As(err, &me):
			return stdout, &CommandError{Node: node, Cmd: p.cmd, ExitCode: -1, Stderr: p.out.stderr.String()}
		}
		return nil, fmt.Errorf("on %s: running %q: %w", node, shorten(p.cmd, 200), err)
	}
	if serr != nil {
		return nil, fmt.Errorf("on %s: while passing on the output of %q: %w", node, shorten(p.cmd, 200), serr)
	}
	if !begun || !ended {
		return nil, fmt.Errorf("on %s: %q exited 0 but its output is incomplete (the login shell of %s may not run /bin/sh); got %q",
			node, shorten(p.cmd, 200), p.s.node.SSHUser, shorten(p.out.stdout.String(), 200))
	}
	return stdout, nil
}

// ReadFile cats the file over a session.
func (s *SSH) ReadFile(ctx context.Context, path string) ([]byte, error) {
	b, err := s.Run(ctx, readFileCmd(path), RunOpts{})
	var ce *CommandError
	if errors.As(err, &ce) && ce.ExitCode == exitNotExist {
		return nil, fmt.Errorf("on %s: reading %s: %w", s.node.Name, path, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return b, nil
}

// WriteFile sends data on a session's stdin to a temporary file beside path
// and renames it over path.
func (s *SSH) WriteFile(ctx context.Context, path string, data []byte, mode fs.FileMode) error {
	if _, err := s.Run(ctx, writeFileCmd(path, mode), RunOpts{Stdin: bytes.NewReader(data)}); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// Dial opens a TCP (direct-tcpip) or Unix socket (direct-streamlocal)
// connection from the node.
func (s *SSH) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := s.client.DialContext(ctx, network, addr)
	if err != nil {
		var oce *ssh.OpenChannelError
		if network == "unix" && errors.As(err, &oce) && oce.Reason == ssh.ConnectionFailed {
			// sshd could not connect to the socket: most often nothing
			// listens there.
			return nil, fmt.Errorf("on %s: no server answers on the Unix socket %s (PostgreSQL is not running, or socket_dir/pg_port "+
				"do not match it; or the node's sshd forbids socket forwarding): %w", s.node.Name, addr, s.lostErr(err))
		}
		return nil, fmt.Errorf("on %s: dialing %s %s through ssh: %w", s.node.Name, network, addr, s.lostErr(err))
	}
	return withDeadlines(c), nil
}

// ListenUnix asks the node's sshd to listen on the Unix socket path and
// to pass each connection to it back through this connection
// (streamlocal-forward@openssh.com). The request is bounded by ctx.
func (s *SSH) ListenUnix(ctx context.Context, path string) (net.Listener, error) {
	type result struct {
		ln  net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		ln, err := s.client.ListenUnix(path)
		ch <- result{ln, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("on %s: listening on %s through ssh (is AllowStreamLocalForwarding off in its sshd_config, "+
				"or does the socket file exist?): %w", s.node.Name, path, r.err)
		}
		return r.ln, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.ln != nil {
				_ = r.ln.Close()
			}
		}()
		return nil, fmt.Errorf("on %s: listening on %s through ssh: %w", s.node.Name, path, context.Cause(ctx))
	}
}
