package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// SocketPath is the node's PostgreSQL Unix socket: <socket_dir>/.s.PGSQL.<pg_port>.
func SocketPath(n *Node) string {
	return path.Join(n.SocketDir, ".s.PGSQL."+strconv.Itoa(n.PGPort))
}

// ConnectAdmin connects as postgres.user to postgres.database on the node's
// Unix socket, dialled through a (so over SSH for remote nodes). PostgreSQL
// sees a local connection from the SSH user and applies peer authentication.
func ConnectAdmin(ctx context.Context, cfg *Config, a Access) (*pgx.Conn, error) {
	n := a.Node()
	sock := SocketPath(n)
	cc, err := pgx.ParseConfig("sslmode=disable host=" + dsnQuote(n.SocketDir) + " port=" + strconv.Itoa(n.PGPort))
	if err != nil {
		return nil, fmt.Errorf("on %s: building connection config: %w", n.Name, err)
	}
	cc.User = cfg.Postgres.User
	cc.Database = cfg.Postgres.Database
	cc.Password = ""
	// synchronous_commit local: sdr's own changes on a primary (its
	// replication role, say) do not wait for synchronous standbys, one of
	// which may be the DR standby that sdr is rebuilding or stopping and
	// that cannot confirm anything until sdr's change is made.
	cc.RuntimeParams = map[string]string{"application_name": "sdr", "synchronous_commit": "local"}
	readOnlySession(cc, a)
	setDial(cc, cfg, a)

	conn, err := connect(ctx, cfg, cc)
	if err != nil {
		return nil, fmt.Errorf("on %s: connecting to PostgreSQL at %s as %s: %w", n.Name, sock, cc.User, err)
	}
	return conn, nil
}

// ConnectReplUser connects over TCP to host:port as replication.user with
// password, to database, dialling through via, so that the check sees what
// via's node sees (network path, pg_hba.conf rules for its address). A
// wrong password is reported wrapping ErrPasswordAuth.
func ConnectReplUser(ctx context.Context, cfg *Config, via Access, host string, port int, password, database string) (*pgx.Conn, error) {
	hostport := net.JoinHostPort(host, strconv.Itoa(port))
	where := fmt.Sprintf("connecting from %s to PostgreSQL at %s as %s", via.Node().Name, hostport, cfg.Replication.User)
	cc, err := pgx.ParseConfig("sslmode=prefer host=" + dsnQuote(host) + " port=" + strconv.Itoa(port))
	if err != nil {
		return nil, fmt.Errorf("%s: building connection config: %w", where, err)
	}
	cc.User = cfg.Replication.User
	cc.Database = database
	cc.Password = password // only ever in this struct, never in a DSN or log
	cc.RuntimeParams = map[string]string{"application_name": "sdr_check"}
	readOnlySession(cc, via)
	setDial(cc, cfg, via)

	conn, err := connect(ctx, cfg, cc)
	if err != nil {
		if IsPasswordAuthError(err) {
			return nil, fmt.Errorf("%s: %w: %w", where, ErrPasswordAuth, err)
		}
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return conn, nil
}

// ConnectReplication opens a physical replication connection
// (replication=true in the startup packet) to host:port as
// replication.user with password, dialling through via, the way a
// standby's walreceiver and pg_basebackup connect: the pg_hba.conf line
// for "replication" applies. The connection accepts replication commands
// such as IDENTIFY_SYSTEM, not SQL. A wrong password wraps ErrPasswordAuth;
// a login refused by pg_hba.conf (or of a missing role) wraps ErrLoginRefused.
func ConnectReplication(ctx context.Context, cfg *Config, via Access, host string, port int, password string) (*pgconn.PgConn, error) {
	hostport := net.JoinHostPort(host, strconv.Itoa(port))
	where := fmt.Sprintf("opening a replication connection from %s to %s as %s", via.Node().Name, hostport, cfg.Replication.User)
	pc, err := pgconn.ParseConfig("sslmode=prefer host=" + dsnQuote(host) + " port=" + strconv.Itoa(port))
	if err != nil {
		return nil, fmt.Errorf("%s: building connection config: %w", where, err)
	}
	pc.User = cfg.Replication.User
	pc.Password = password // only ever in this struct, never in a DSN or log
	pc.RuntimeParams = map[string]string{"application_name": "sdr_check", "replication": "true"}
	pc.ConnectTimeout = cfg.Timeouts.Connect.Duration
	pc.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) { return via.Dial(ctx, network, addr) }
	pc.LookupFunc = func(ctx context.Context, host string) ([]string, error) { return []string{host}, nil }
	if t := cfg.Timeouts.Connect.Duration; t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	conn, err := pgconn.ConnectConfig(ctx, pc)
	if err != nil {
		switch {
		case IsPasswordAuthError(err):
			return nil, fmt.Errorf("%s: %w: %w", where, ErrPasswordAuth, err)
		case IsLoginRefusedError(err):
			return nil, fmt.Errorf("%s: %w: %w", where, ErrLoginRefused, err)
		}
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return conn, nil
}

// IsLoginRefusedError reports whether err is PostgreSQL refusing a login
// before any password: no pg_hba.conf line, a reject line, or a missing
// role (SQLSTATE 28000, invalid_authorization_specification).
func IsLoginRefusedError(err error) bool {
	if errors.Is(err, ErrLoginRefused) {
		return true
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "28000"
}

// IsPasswordAuthError reports whether err is PostgreSQL refusing a password
// (SQLSTATE 28P01, invalid_password).
func IsPasswordAuthError(err error) bool {
	if errors.Is(err, ErrPasswordAuth) {
		return true
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "28P01"
}

// IsCannotConnectNow reports whether err is PostgreSQL refusing sessions
// because it is starting up or shutting down (SQLSTATE 57P03,
// cannot_connect_now): the server is there, but cannot be asked yet.
func IsCannotConnectNow(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "57P03"
}

// readOnlySession makes a session opened through a ReadOnly Access read
// only (default_transaction_read_only), named sdr_plan in pg_stat_activity.
func readOnlySession(cc *pgx.ConnConfig, a Access) {
	if IsReadOnly(a) {
		cc.RuntimeParams["default_transaction_read_only"] = "on"
		cc.RuntimeParams["application_name"] = "sdr_plan"
	}
}

// setDial makes pgx dial through a and never resolve names itself: the node
// at the other end of a resolves them.
func setDial(cc *pgx.ConnConfig, cfg *Config, a Access) {
	cc.ConnectTimeout = cfg.Timeouts.Connect.Duration
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		return a.Dial(ctx, network, addr)
	}
	lookup := func(ctx context.Context, host string) ([]string, error) { return []string{host}, nil }
	cc.DialFunc = dial
	cc.LookupFunc = lookup
}

func connect(ctx context.Context, cfg *Config, cc *pgx.ConnConfig) (*pgx.Conn, error) {
	if t := cfg.Timeouts.Connect.Duration; t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	return pgx.ConnectConfig(ctx, cc)
}

// dsnQuote quotes a value for a key=value connection string.
func dsnQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	return "'" + r.Replace(s) + "'"
}
