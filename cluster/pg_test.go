package cluster

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// fakePGAccess answers Dial with an in-memory connection to a tiny
// PostgreSQL server that asks for a cleartext password.
type fakePGAccess struct {
	Access // unused methods panic
	node   Node

	mu       sync.Mutex
	network  string
	addr     string
	user     string
	database string
	password string // what the client sent
	accept   string // the password the server accepts; "" means trust
}

func (f *fakePGAccess) Node() *Node { return &f.node }

func (f *fakePGAccess) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	f.mu.Lock()
	f.network, f.addr = network, addr
	f.mu.Unlock()
	client, server := net.Pipe()
	go f.serve(server)
	return client, nil
}

func (f *fakePGAccess) serve(c net.Conn) {
	defer c.Close()
	be := pgproto3.NewBackend(c, c)
	msg, err := be.ReceiveStartupMessage()
	if err != nil {
		return
	}
	if _, ok := msg.(*pgproto3.SSLRequest); ok {
		if _, err := c.Write([]byte("N")); err != nil {
			return
		}
		if msg, err = be.ReceiveStartupMessage(); err != nil {
			return
		}
	}
	sm, ok := msg.(*pgproto3.StartupMessage)
	if !ok {
		return
	}
	f.mu.Lock()
	f.user, f.database = sm.Parameters["user"], sm.Parameters["database"]
	accept := f.accept
	f.mu.Unlock()
	if accept != "" {
		be.Send(&pgproto3.AuthenticationCleartextPassword{})
		be.Flush()
		be.SetAuthType(pgproto3.AuthTypeCleartextPassword)
		m, err := be.Receive()
		if err != nil {
			return
		}
		pm, ok := m.(*pgproto3.PasswordMessage)
		if !ok {
			return
		}
		f.mu.Lock()
		f.password = pm.Password
		f.mu.Unlock()
		if pm.Password != accept {
			be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: "28P01", Message: `password authentication failed for user "` + sm.Parameters["user"] + `"`})
			be.Flush()
			return
		}
	}
	be.Send(&pgproto3.AuthenticationOk{})
	be.Send(&pgproto3.ParameterStatus{Name: "server_version", Value: "15.0"})
	be.Send(&pgproto3.BackendKeyData{ProcessID: 1, SecretKey: []byte{0, 0, 0, 1}})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	be.Flush()
	// Wait for Terminate.
	for {
		if m, err := be.Receive(); err != nil {
			return
		} else if _, ok := m.(*pgproto3.Terminate); ok {
			return
		}
	}
}

func pgTestConfig() *Config {
	c := &Config{
		Name:        "pair1",
		Replication: Replication{User: "repl", PasswordEnv: "X"},
		Primary:     ClusterSpec{Nodes: []Node{{Name: "dc1-a", Host: "10.0.1.10", DataDir: "/pg"}}},
		Standby:     ClusterSpec{Main: "dc2-a", Nodes: []Node{{Name: "dc2-a", Host: "10.0.2.10", DataDir: "/pg"}}},
	}
	c.SetDefaults()
	return c
}

func TestConnectAdmin(t *testing.T) {
	cfg := pgTestConfig()
	f := &fakePGAccess{node: cfg.Standby.Nodes[0]}
	conn, err := ConnectAdmin(context.Background(), cfg, f)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close(context.Background())
	if f.network != "unix" || f.addr != "/var/run/postgresql/.s.PGSQL.5432" {
		t.Errorf("dialled %s %s", f.network, f.addr)
	}
	if f.user != "postgres" || f.database != "postgres" {
		t.Errorf("connected as %s to %s", f.user, f.database)
	}
}

func TestConnectReplUser(t *testing.T) {
	cases := []struct {
		name       string
		password   string
		wantPWAuth bool
	}{
		{"right password", "s3cret:'x", false},
		{"wrong password", "nope", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := pgTestConfig()
			f := &fakePGAccess{node: cfg.Standby.Nodes[0], accept: "s3cret:'x"}
			conn, err := ConnectReplUser(context.Background(), cfg, f, "10.0.1.10", 5432, tc.password, "postgres")
			if f.network != "tcp" || f.addr != "10.0.1.10:5432" {
				t.Errorf("dialled %s %s", f.network, f.addr)
			}
			if f.user != "repl" || f.password != tc.password {
				t.Errorf("sent user %q password %q", f.user, f.password)
			}
			if !tc.wantPWAuth {
				if err != nil {
					t.Fatal(err)
				}
				conn.Close(context.Background())
				return
			}
			if err == nil {
				t.Fatal("want error")
			}
			if !errors.Is(err, ErrPasswordAuth) || !IsPasswordAuthError(err) {
				t.Fatalf("want ErrPasswordAuth, got %v", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, "10.0.1.10:5432") || !strings.Contains(msg, "password authentication failed") || !strings.Contains(msg, "dc2-a") {
				t.Fatalf("message: %s", msg)
			}
			if strings.Contains(msg, tc.password) {
				t.Fatalf("message holds the password: %s", msg)
			}
		})
	}
}

func TestConnectAdminThroughSSH(t *testing.T) {
	// The admin connection reaches a Unix socket through the SSH tunnel.
	srv := startTestSSHServer(t)
	cfg := testConfig(srv)
	n, _ := cfg.Node("dc1-a")
	a, err := DialSSH(context.Background(), cfg, n)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	sockDir, err := shortTempDir(t)
	if err != nil {
		t.Fatal(err)
	}
	a.node.SocketDir = sockDir
	ln, err := net.Listen("unix", SocketPath(&a.node))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f := &fakePGAccess{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go f.serve(c)
		}
	}()
	conn, err := ConnectAdmin(context.Background(), cfg, a)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close(context.Background())
	if f.user != "postgres" {
		t.Fatalf("user %q", f.user)
	}
}
