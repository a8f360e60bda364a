package steps

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// The replication role.
//
// replication.user gets LOGIN REPLICATION and nothing more. sdr marks the
// role it creates with a comment naming the pair, and:
//
//   - refuses a superuser, and a role that is a member of other roles
//     (their privileges would come with it), whoever created it;
//   - on a role it created, takes away CREATEDB, CREATEROLE, BYPASSRLS and
//     adds LOGIN, REPLICATION, and sets the password when it differs;
//   - on a role it did not create, changes nothing: other privileges or a
//     missing LOGIN/REPLICATION are refused with the statement to run, and
//     a different password is refused unless the operator passes
//     --reset-replication-password. A role sdr created for another DR pair
//     is treated the same way for its password, since that pair's
//     standbys log in with it.

// roleCommentPrefix starts the comment sdr puts on the roles it creates.
const roleCommentPrefix = "created by sdr for DR pair "

func roleComment(pair string) string { return roleCommentPrefix + pair }

// roleObs is what the primary says about replication.user.
type roleObs struct {
	Exists          bool
	Super           bool
	CreateDB        bool
	CreateRole      bool
	BypassRLS       bool
	Replication     bool
	Login           bool
	Comment         string   // COMMENT ON ROLE, "" when none
	PasswordMatches bool     // the stored SCRAM verifier is one of the configured password
	MemberOf        []string // roles it is a member of
}

// roleAction is what 3_prepare_replication does to the role.
type roleAction struct {
	Create      bool // CREATE ROLE with LOGIN REPLICATION, the password and sdr's comment
	SetAttrs    bool // ALTER ROLE to LOGIN REPLICATION NOCREATEDB NOCREATEROLE NOBYPASSRLS
	SetPassword bool
}

func (a roleAction) none() bool { return !a.Create && !a.SetAttrs && !a.SetPassword }

// roleAttrs is what sdr gives the role, spelled out.
const roleAttrs = "LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS"

// extraPrivileges lists what the role has beyond LOGIN REPLICATION.
func (o roleObs) extraPrivileges() []string {
	var out []string
	for _, p := range []struct {
		has  bool
		name string
	}{{o.Super, "SUPERUSER"}, {o.CreateDB, "CREATEDB"}, {o.CreateRole, "CREATEROLE"}, {o.BypassRLS, "BYPASSRLS"}} {
		if p.has {
			out = append(out, p.name)
		}
	}
	return out
}

func (o roleObs) missingPrivileges() []string {
	var out []string
	if !o.Login {
		out = append(out, "LOGIN")
	}
	if !o.Replication {
		out = append(out, "REPLICATION")
	}
	return out
}

// decideRole decides what to do with replication.user on the primary, or
// refuses. resetPassword is the operator's --reset-replication-password.
func decideRole(user, pair string, o roleObs, resetPassword bool) (roleAction, error) {
	if !o.Exists {
		return roleAction{Create: true}, nil
	}
	if o.Super {
		return roleAction{}, permanent(fmt.Errorf("replication.user %s is a superuser on the primary: the standby cluster must stream as a role "+
			"with LOGIN REPLICATION and nothing more. Name another role in replication.user (sdr creates it), "+
			"or, if nothing else needs it, ALTER ROLE %s NOSUPERUSER", user, pgIdent(user)))
	}
	if len(o.MemberOf) > 0 {
		return roleAction{}, permanent(fmt.Errorf("replication.user %s is a member of %s on the primary, and would hold their privileges: "+
			"REVOKE %s FROM %s, or name another role in replication.user",
			user, strings.Join(o.MemberOf, ", "), strings.Join(quoteIdents(o.MemberOf), ", "), pgIdent(user)))
	}
	ours := o.Comment == roleComment(pair)
	bySdr := strings.HasPrefix(o.Comment, roleCommentPrefix)
	var a roleAction
	if extra, missing := o.extraPrivileges(), o.missingPrivileges(); len(extra) > 0 || len(missing) > 0 {
		if !bySdr {
			var what []string
			if len(extra) > 0 {
				what = append(what, "has "+strings.Join(extra, ", "))
			}
			if len(missing) > 0 {
				what = append(what, "lacks "+strings.Join(missing, ", "))
			}
			return roleAction{}, permanent(fmt.Errorf("replication.user %s %s on the primary; it was not created by sdr, which does not change "+
				"the privileges of a role it did not make: ALTER ROLE %s WITH LOGIN REPLICATION NOCREATEDB NOCREATEROLE NOBYPASSRLS, "+
				"or name a new role in replication.user (sdr creates it)", user, strings.Join(what, " and "), pgIdent(user)))
		}
		a.SetAttrs = true
	}
	if !o.PasswordMatches {
		switch {
		case ours || resetPassword:
			a.SetPassword = true
		case bySdr:
			return roleAction{}, permanent(fmt.Errorf("replication.user %s was created by sdr for DR pair %q and has another password on the primary; "+
				"that pair's standbys log in with it. Give this pair the same password, or rerun with --reset-replication-password "+
				"(then update the password of pair %q too)", user, strings.TrimPrefix(o.Comment, roleCommentPrefix),
				strings.TrimPrefix(o.Comment, roleCommentPrefix)))
		default:
			return roleAction{}, permanent(fmt.Errorf("replication.user %s exists on the primary, was not created by sdr, and its password is not "+
				"the one in replication.password_*: sdr does not change the password of a role it did not create. "+
				"Give sdr that role's password, or rerun with --reset-replication-password to set it", user))
		}
	}
	return a, nil
}

func quoteIdents(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = pgIdent(n)
	}
	return out
}

const roleSQL = `SELECT r.rolsuper, r.rolcreatedb, r.rolcreaterole, r.rolbypassrls, r.rolreplication, r.rolcanlogin,
	coalesce(shobj_description(r.oid, 'pg_authid'), ''), a.rolpassword,
	coalesce((SELECT array_agg(g.rolname::text ORDER BY g.rolname) FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
		WHERE m.member = r.oid), '{}')
	FROM pg_roles r JOIN pg_authid a ON a.oid = r.oid WHERE r.rolname = $1`

// observeRole reads replication.user on the primary over the admin connection.
func (e *Env) observeRole(ctx context.Context, c *pgx.Conn, node string) (roleObs, error) {
	user := e.Config.Replication.User
	o := roleObs{Exists: true}
	var stored *string
	err := c.QueryRow(ctx, roleSQL, user).Scan(&o.Super, &o.CreateDB, &o.CreateRole, &o.BypassRLS, &o.Replication, &o.Login,
		&o.Comment, &stored, &o.MemberOf)
	if errors.Is(err, pgx.ErrNoRows) {
		return roleObs{}, nil
	}
	if err != nil {
		return roleObs{}, fmt.Errorf("while looking up role %s on %s: %w", user, node, err)
	}
	o.PasswordMatches = stored != nil && scramMatches(*stored, e.Password)
	return o, nil
}

// checkRole is 2_check_cluster's part: the role is acceptable, or
// refused before sdr changes anything.
func (e *Env) checkRole(ctx context.Context, c *pgx.Conn, node string) (roleAction, error) {
	o, err := e.observeRole(ctx, c, node)
	if err != nil {
		return roleAction{}, err
	}
	return decideRole(e.Config.Replication.User, e.Config.Name, o, e.ResetReplicationPassword)
}

// applyRole carries out a.
func (e *Env) applyRole(ctx context.Context, c *pgx.Conn, node string, a roleAction) error {
	user := pgIdent(e.Config.Replication.User)
	var stmts []string
	var verifier string
	if a.Create || a.SetPassword {
		var err error
		if verifier, err = newScramVerifier(e.Password); err != nil {
			return err
		}
	}
	// The verifier, not the password, is sent; it is not logged.
	switch {
	case a.Create:
		stmts = append(stmts,
			fmt.Sprintf("CREATE ROLE %s WITH %s PASSWORD '%s'", user, roleAttrs, verifier),
			fmt.Sprintf("COMMENT ON ROLE %s IS '%s'", user, strings.ReplaceAll(roleComment(e.Config.Name), "'", "''")))
	default:
		if a.SetAttrs {
			stmts = append(stmts, fmt.Sprintf("ALTER ROLE %s WITH %s", user, roleAttrs))
		}
		if a.SetPassword {
			stmts = append(stmts, fmt.Sprintf("ALTER ROLE %s WITH PASSWORD '%s'", user, verifier))
		}
	}
	// One transaction: a created role always carries sdr's mark.
	err := pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("while changing role %s on %s: %w", e.Config.Replication.User, node, err)
	}
	return nil
}
