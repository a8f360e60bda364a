package steps

import (
	"fmt"
	"net"
	"strings"
)

// Where sdr's pg_hba.conf block goes on a primary-cluster node.
//
// PostgreSQL uses the first pg_hba.conf line that matches a connection.
// sdr's lines are narrow: replication, and one database, for one user,
// from the standby nodes' exact addresses, with scram-sha-256. So:
//
//   - a line that could match one of those connections and lets the same
//     password in the same way (scram-sha-256 or md5, which uses SCRAM for
//     a SCRAM verifier, without clientcert) may stay before sdr's block;
//   - any other line that could match (reject, trust, cert, ldap, a
//     clientcert option, an include whose content sdr does not read) is a
//     "shadowing" line. A new block is placed before the first one, where
//     it takes effect. An existing block stays where it is (the operator
//     may have moved it), and a shadowing line before it is refused,
//     naming the file, line number and text;
//   - a shadowing line that names replication.user itself is a rule
//     somebody wrote for that user: sdr refuses rather than override it,
//     wherever it is.
//
// "Could match" is decided from the text: a CIDR against an IP address,
// keywords (all, replication, sameuser, +role), and as "may match" what
// cannot be known from the file (a host name against an IP address, an
// address against a host name, samehost, samenet, @file, regular
// expressions, include directives).

// hbaSyntax is what a PostgreSQL version reads in pg_hba.conf beyond the
// records every supported version reads (pgFeatures.hbaSyntax).
type hbaSyntax struct {
	Includes     bool // include, include_if_exists and include_dir lines (16)
	Regex        bool // "/..." in the database and user fields is a regular expression (16)
	Continuation bool // a line ending in "\" continues on the next (16)
}

// hbaToken is one item of a pg_hba.conf field.
type hbaToken struct {
	Value  string
	Quoted bool
}

// keyword reports whether t is the unquoted keyword k.
func (t hbaToken) keyword(k string) bool { return !t.Quoted && t.Value == k }

// hbaRule is one record of pg_hba.conf.
type hbaRule struct {
	Line    int    // 1-based number of the record's first physical line
	Text    string // the record as written (continuations joined)
	Fields  [][]hbaToken
	InBlock bool // inside sdr's own block for this pair
	Syn     hbaSyntax
}

// parseHBA splits pg_hba.conf content into records. Comments and blank
// lines are dropped; a line ending in a backslash continues on the next
// when syn says so (PostgreSQL 16). Lines between "# BEGIN sdr <marker>"
// and its END are marked InBlock.
func parseHBA(content, marker string, syn hbaSyntax) []hbaRule {
	var rules []hbaRule
	lines := hbaLinesOf(content)
	spans := hbaBlockSpans(lines, marker)
	inBlock := func(i int) bool {
		for _, sp := range spans {
			if i >= sp[0] && i <= sp[1] {
				return true
			}
		}
		return false
	}
	for i := 0; i < len(lines); i++ {
		start := i
		text := lines[i]
		for syn.Continuation && strings.HasSuffix(text, `\`) && i+1 < len(lines) {
			i++
			text = strings.TrimSuffix(text, `\`) + lines[i]
		}
		fields := hbaFields(text)
		if len(fields) == 0 {
			continue
		}
		rules = append(rules, hbaRule{Line: start + 1, Text: strings.TrimSpace(text), Fields: fields, InBlock: inBlock(start), Syn: syn})
	}
	return rules
}

func hbaLinesOf(content string) []string {
	return strings.Split(strings.ReplaceAll(content, "\r\n", "\n"), "\n")
}

// hbaBlockSpans returns the complete blocks for marker as 0-based
// [begin, end] line pairs, the way cluster.ReplaceBlock finds them: a
// BEGIN followed by another BEGIN before its END is not a block.
func hbaBlockSpans(lines []string, marker string) [][2]int {
	begin, end := "# BEGIN sdr "+marker, "# END sdr "+marker
	var spans [][2]int
	open := -1
	for i, l := range lines {
		switch strings.TrimSpace(l) {
		case begin:
			open = i
		case end:
			if open >= 0 {
				spans = append(spans, [2]int{open, i})
				open = -1
			}
		}
	}
	return spans
}

// hbaFields splits one record into fields of comma-separated tokens, the
// way PostgreSQL's tokenizer does: whitespace ends a field unless the
// token before it ended in a comma; double quotes protect spaces, commas
// and "#"; an unquoted "#" starts a comment.
func hbaFields(line string) [][]hbaToken {
	var fields [][]hbaToken
	var field []hbaToken
	i := 0
	for {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
		if i >= len(line) || line[i] == '#' {
			break
		}
		var b strings.Builder
		quoted, inQuote := false, false
		comma := false
		for ; i < len(line); i++ {
			c := line[i]
			if c == '"' {
				inQuote, quoted = !inQuote, true
				continue
			}
			if !inQuote && (c == ' ' || c == '\t' || c == '#') {
				break
			}
			if !inQuote && c == ',' {
				comma = true
				i++
				break
			}
			b.WriteByte(c)
		}
		field = append(field, hbaToken{Value: b.String(), Quoted: quoted})
		if !comma {
			fields = append(fields, field)
			field = nil
		}
	}
	if field != nil {
		fields = append(fields, field)
	}
	return fields
}

// hbaConn is one connection sdr's standby side makes to the primary.
type hbaConn struct {
	Replication bool   // a physical replication connection
	Database    string // for a normal connection
	User        string
	Host        string // the standby node's configured host
}

// match is a three-valued answer.
type match int

const (
	noMatch match = iota
	mayMatch
	isMatch
)

func (m match) or(n match) match { return max(m, n) }

// hbaRuleMatch tells whether rule could be used for conn. explicit is
// true when the rule names conn.User itself in its user field.
func hbaRuleMatch(r hbaRule, conn hbaConn) (m match, explicit bool) {
	f := r.Fields
	if len(f[0]) != 1 {
		return noMatch, false
	}
	switch typ := f[0][0]; {
	case typ.keyword("include"), typ.keyword("include_if_exists"), typ.keyword("include_dir"):
		if !r.Syn.Includes {
			return noMatch, false // before 16 not a record: PostgreSQL refuses the file
		}
		return mayMatch, false // sdr does not read the included files
	case typ.keyword("host"), typ.keyword("hostssl"), typ.keyword("hostnossl"), typ.keyword("hostgssenc"), typ.keyword("hostnogssenc"):
	default:
		return noMatch, false // local, or not a record PostgreSQL accepts
	}
	if len(f) < 4 {
		return noMatch, false
	}
	db := matchList(f[1], func(t hbaToken) match { return dbTokenMatch(t, conn, r.Syn) })
	user := matchList(f[2], func(t hbaToken) match {
		switch {
		case t.keyword("all"):
			return isMatch
		case !t.Quoted && strings.HasPrefix(t.Value, "+"):
			if t.Value[1:] == conn.User {
				return isMatch // a role is a member of itself
			}
			return noMatch // sdr refuses a replication role that is a member of other roles
		case !t.Quoted && (strings.HasPrefix(t.Value, "@") || r.Syn.Regex && strings.HasPrefix(t.Value, "/")):
			return mayMatch // a file or a regular expression
		case t.Value == conn.User:
			explicit = true
			return isMatch
		}
		return noMatch
	})
	addr := addrMatch(f, conn.Host)
	m = min(db, user, addr)
	return m, explicit && m != noMatch
}

func matchList(tokens []hbaToken, one func(hbaToken) match) match {
	m := noMatch
	for _, t := range tokens {
		m = m.or(one(t))
	}
	return m
}

func dbTokenMatch(t hbaToken, conn hbaConn, syn hbaSyntax) match {
	fileOrRegex := !t.Quoted && (strings.HasPrefix(t.Value, "@") || syn.Regex && strings.HasPrefix(t.Value, "/"))
	if conn.Replication {
		switch {
		case t.keyword("replication"):
			return isMatch
		case fileOrRegex:
			return mayMatch
		}
		return noMatch // "all" does not match replication connections
	}
	switch {
	case t.keyword("all"):
		return isMatch
	case t.keyword("sameuser"), t.keyword("samerole"), t.keyword("samegroup"):
		if conn.Database == conn.User {
			return isMatch
		}
		return noMatch
	case t.keyword("replication"):
		return noMatch
	case fileOrRegex:
		return mayMatch
	case t.Value == conn.Database:
		return isMatch
	}
	return noMatch
}

// addrMatch matches the address field (and a separate netmask field) of a
// host record against a configured host.
func addrMatch(f [][]hbaToken, host string) match {
	if len(f[3]) != 1 {
		return mayMatch
	}
	a := f[3][0]
	ip := net.ParseIP(host)
	switch {
	case a.keyword("all"):
		return isMatch
	case a.keyword("samehost"), a.keyword("samenet"):
		return mayMatch
	}
	var n *net.IPNet
	if _, cidr, err := net.ParseCIDR(a.Value); err == nil {
		n = cidr
	} else if aip := net.ParseIP(a.Value); aip != nil && len(f) > 4 && len(f[4]) == 1 {
		if mask := net.ParseIP(f[4][0].Value); mask != nil {
			if aip.To4() != nil {
				mask = mask.To4()
			}
			n = &net.IPNet{IP: aip, Mask: net.IPMask(mask)}
		}
	}
	switch {
	case n != nil && ip != nil:
		if (n.IP.To4() != nil) != (ip.To4() != nil) {
			return noMatch
		}
		if n.Contains(ip) {
			return isMatch
		}
		return noMatch
	case n != nil:
		return mayMatch // a host name resolves to some address
	case ip != nil:
		return mayMatch // PostgreSQL matches a host name by the client's reverse DNS
	case strings.HasPrefix(a.Value, "."):
		if strings.HasSuffix(strings.ToLower(host), strings.ToLower(a.Value)) {
			return isMatch
		}
		return noMatch
	case strings.EqualFold(a.Value, host):
		return isMatch
	}
	return noMatch // host names compared as written
}

// hbaMethod returns the auth method and options of a host record.
func hbaMethod(f [][]hbaToken) (string, []string) {
	i := 4
	if len(f) > 4 && len(f[3]) == 1 && !strings.Contains(f[3][0].Value, "/") && net.ParseIP(f[3][0].Value) != nil {
		i = 5 // address and netmask in two fields
	}
	if i >= len(f) || len(f[i]) != 1 {
		return "", nil
	}
	var opts []string
	for _, o := range f[i+1:] {
		for _, t := range o {
			opts = append(opts, t.Value)
		}
	}
	return f[i][0].Value, opts
}

// hbaCompatible reports whether a matching record lets sdr's connection in
// the way sdr's own line would: the replication password, checked with
// SCRAM, without a client certificate.
func hbaCompatible(r hbaRule) bool {
	if typ := r.Fields[0][0]; typ.keyword("include") || typ.keyword("include_if_exists") || typ.keyword("include_dir") {
		return false
	}
	method, opts := hbaMethod(r.Fields)
	if method != "scram-sha-256" && method != "md5" {
		return false
	}
	for _, o := range opts {
		if strings.HasPrefix(o, "clientcert=") {
			return false
		}
	}
	return true
}

// hbaConns are the connections the standby side makes to the primary:
// replication from every standby node's host (the main standby streams,
// a cascade may become the main standby), and the check database from
// the main standby's host.
func hbaConns(user, database string, hosts []string) []hbaConn {
	var out []hbaConn
	for _, h := range hosts {
		out = append(out, hbaConn{Replication: true, User: user, Host: h}, hbaConn{Database: database, User: user, Host: h})
	}
	return out
}

// hbaPlacement is where sdr's block goes.
type hbaPlacement struct {
	Exists bool // the block is in the file; it is replaced in place
	// Before is the 1-based line before which a new block is inserted,
	// 0 to append it at the end.
	Before int
}

// placeHBABlock decides where sdr's block goes in a pg_hba.conf, or
// refuses naming the shadowing line. file only names it in errors; syn is
// how the server reads the file.
func placeHBABlock(file, content, marker string, conns []hbaConn, syn hbaSyntax) (hbaPlacement, error) {
	rules := parseHBA(content, marker, syn)
	var p hbaPlacement
	blockLine := 0
	if spans := hbaBlockSpans(hbaLinesOf(content), marker); len(spans) > 0 {
		p.Exists, blockLine = true, spans[0][0]+1
	}
	for _, r := range rules {
		if r.InBlock {
			continue
		}
		m, explicit := noMatch, false
		var which hbaConn
		for _, c := range conns {
			cm, ce := hbaRuleMatch(r, c)
			if cm > m {
				m, which = cm, c
			}
			explicit = explicit || ce
		}
		if m == noMatch || hbaCompatible(r) {
			continue
		}
		what := describeConn(which)
		if m == mayMatch {
			what = "may match " + what
		} else {
			what = "matches " + what
		}
		method, _ := hbaMethod(r.Fields)
		switch {
		case explicit:
			return hbaPlacement{}, permanent(fmt.Errorf("%s line %d (%s) %s with method %q, a rule written for replication.user %s itself: "+
				"sdr does not override it. Remove or change that line (sdr needs scram-sha-256 for %s from the standby nodes), then rerun",
				file, r.Line, r.Text, what, method, conns[0].User, conns[0].User))
		case p.Exists && r.Line < blockLine:
			return hbaPlacement{}, permanent(fmt.Errorf("%s line %d (%s) comes before sdr's block (# BEGIN sdr %s, line %d) and %s: "+
				"PostgreSQL uses the first matching line, so sdr's lines would never apply. Remove or narrow that line, "+
				"or move sdr's block above it, then rerun", file, r.Line, r.Text, marker, blockLine, what))
		case !p.Exists && p.Before == 0:
			p.Before = r.Line
		}
	}
	return p, nil
}

func describeConn(c hbaConn) string {
	if c.Replication {
		return fmt.Sprintf("replication connections of %s from %s", c.User, c.Host)
	}
	return fmt.Sprintf("connections of %s to database %s from %s", c.User, c.Database, c.Host)
}
