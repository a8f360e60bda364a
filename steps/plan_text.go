package steps

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/pgsdr/sdr/workflow"
)

// Pure helpers of the plans: reading settings out of configuration
// files, and estimating how long a copy takes.

// confSetting reads one postgresql.conf line: the parameter (lower case)
// and its value, unquoted, as PostgreSQL reads it ("name = value" or
// "name value", a quoted value in which a doubled or backslashed quote
// stands for a quote, a comment after "#"). ok is false for a blank line,
// a comment, or an include.
func confSetting(line string) (name, value string, ok bool) {
	l := strings.TrimSpace(line)
	if l == "" || strings.HasPrefix(l, "#") {
		return "", "", false
	}
	end := strings.IndexAny(l, " \t=")
	if end < 0 {
		return "", "", false
	}
	name = strings.ToLower(l[:end])
	if strings.HasPrefix(name, "include") {
		return "", "", false
	}
	rest := strings.TrimLeft(l[end:], " \t")
	rest = strings.TrimLeft(strings.TrimPrefix(rest, "="), " \t")
	if !strings.HasPrefix(rest, "'") {
		if i := strings.IndexByte(rest, '#'); i >= 0 {
			rest = rest[:i]
		}
		return name, strings.TrimSpace(rest), true
	}
	var v strings.Builder
	for i := 1; i < len(rest); i++ {
		switch c := rest[i]; {
		case c == '\\' && i+1 < len(rest):
			v.WriteByte(rest[i+1])
			i++
		case c == '\'' && i+1 < len(rest) && rest[i+1] == '\'':
			v.WriteByte('\'')
			i++
		case c == '\'':
			return name, v.String(), true
		default:
			v.WriteByte(c)
		}
	}
	return name, v.String(), true // an unterminated quote: what there is
}

// confAssignments returns, for each parameter the content sets, the value
// of its last assignment (the one PostgreSQL uses).
func confAssignments(content string) map[string]string {
	out := map[string]string{}
	for _, l := range strings.Split(content, "\n") {
		if name, v, ok := confSetting(l); ok {
			out[name] = v
		}
	}
	return out
}

// passwordRE finds a password in a libpq connection string.
var passwordRE = regexp.MustCompile(`(?i)\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|[^\s']+)`)

// hideSecrets hides a password written into a setting's value (say, a
// primary_conninfo someone set by hand): a plan never shows one.
func hideSecrets(v string) string {
	return passwordRE.ReplaceAllString(v, "password=(hidden)")
}

// notSet is how a plan shows a setting no file sets.
const notSet = "(not set)"

// settingChanges turns the lines sdr would write into setting items:
// each with its value now (the last assignment in files, searched in
// order: later files win, as postgresql.auto.conf wins over
// postgresql.conf) and the value it would have.
func settingChanges(node, where string, lines []string, files ...string) []workflow.PlanItem {
	now := map[string]string{}
	for _, f := range files {
		for k, v := range confAssignments(f) {
			now[k] = v
		}
	}
	var out []workflow.PlanItem
	for _, l := range lines {
		name, v, ok := confSetting(l)
		if !ok {
			continue
		}
		old, set := now[name]
		if !set {
			old = notSet
		}
		it := workflow.PlanItem{Kind: "setting", Action: "set", Node: node, Name: name, Old: hideSecrets(old), New: hideSecrets(v), Where: where}
		if set && old == v {
			it.Action = "keep"
		}
		if v == "" {
			it.New = "''"
		}
		if set && old == "" {
			it.Old = "''"
		}
		it.What = fmt.Sprintf("%s: %s -> %s", name, it.Old, it.New)
		out = append(out, it)
	}
	return out
}

// copyEstimate estimates how long copying bytes takes: at the rate of the
// last copy of the same node recorded in the state file when there is
// one, else at the assumed rate (bytes per second). basis says which, in
// words; secs is 0 when there is no rate at all.
func copyEstimate(bytes int64, last *workflow.Transfer, node string, assumed float64) (secs float64, basis string) {
	if last != nil && last.Rate() > 0 {
		return float64(bytes) / last.Rate(), fmt.Sprintf("the rate of the last copy of %s recorded in the state file: %s in %s (%s/s), ended %s, run %s",
			node, sizeText(last.Bytes), durationText(last.Seconds), sizeText(int64(last.Rate())), last.Ended.UTC().Format(time.RFC3339), orNone(last.RunID))
	}
	if assumed <= 0 {
		return 0, "no rate: no copy of " + node + " is recorded in the state file and no rate is assumed"
	}
	return float64(bytes) / assumed, fmt.Sprintf("an assumed rate of %s/s (sdr plan --copy-rate): no copy of %s is recorded in the state file", sizeText(int64(assumed)), node)
}

// sizeText prints a byte count in B, KiB, MiB, GiB or TiB.
func sizeText(n int64) string {
	const k = 1024
	switch {
	case n < k:
		return fmt.Sprintf("%d B", n)
	case n < k*k:
		return fmt.Sprintf("%.1f KiB", float64(n)/k)
	case n < k*k*k:
		return fmt.Sprintf("%.1f MiB", float64(n)/(k*k))
	case n < k*k*k*k:
		return fmt.Sprintf("%.1f GiB", float64(n)/(k*k*k))
	}
	return fmt.Sprintf("%.1f TiB", float64(n)/(k*k*k*k))
}

// durationText prints seconds the way people read them.
func durationText(secs float64) string {
	if secs < 60 {
		return fmt.Sprintf("%.1fs", secs)
	}
	return time.Duration(secs * float64(time.Second)).Round(time.Second).String()
}
