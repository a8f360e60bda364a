package cluster

import (
	"regexp"
	"strings"
)

// What CommandError.Error shows of a command's standard error.
const (
	summaryCauses   = 5    // at most this many lines that look like a cause
	summaryLast     = 3    // and the last lines
	summaryLineMax  = 300  // bytes of one line
	summaryTotalMax = 1500 // bytes of the whole summary
)

// causeRE matches a line that explains a failure, as PostgreSQL tools and
// coreutils word it ("pg_basebackup: error: could not connect ...",
// "FATAL:  password authentication failed", "mv: ... Permission denied").
var causeRE = regexp.MustCompile(`(?i:error:|could not|failed|no such|denied|not permitted)|\b(?:FATAL|ERROR|PANIC)\b`)

// progressRE matches a progress report of pg_basebackup -P
// (" 2102/43000 kB (4%), 0/1 tablespace (...)").
var progressRE = regexp.MustCompile(`^\d+/\d+ [kMGT]B \(\d+%\)`)

// summarizeStderr picks the lines of a failed command's standard error
// that explain it: the first lines that look like a cause (up to
// summaryCauses) and the last summaryLast lines, in their order, each once,
// with "..." where lines were left out. Progress reports (pg_basebackup -P,
// including a terminal's \r-overwritten ones) are dropped. The result is
// bounded in length.
func summarizeStderr(s string) string {
	lines := stderrLines(s)
	if len(lines) == 0 {
		return ""
	}
	keep := make([]bool, len(lines))
	causes := 0
	for i, l := range lines {
		if causes == summaryCauses {
			break
		}
		if causeRE.MatchString(l) {
			keep[i] = true
			causes++
		}
	}
	for i := max(0, len(lines)-summaryLast); i < len(lines); i++ {
		keep[i] = true
	}
	var parts []string
	seen := map[string]bool{}
	gap := false
	for i, l := range lines {
		if !keep[i] {
			gap = true
			continue
		}
		if seen[l] {
			continue
		}
		seen[l] = true
		if gap && len(parts) > 0 {
			parts = append(parts, "...")
		}
		gap = false
		parts = append(parts, shorten(l, summaryLineMax))
	}
	return shorten(strings.Join(parts, " | "), summaryTotalMax)
}

// stderrLines splits s into trimmed, non-empty lines. Of a line that holds
// carriage returns only the last non-empty part counts (a terminal shows
// only that); progress reports are dropped.
func stderrLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, "\r") {
			segs := strings.Split(l, "\r")
			l = ""
			for j := len(segs) - 1; j >= 0; j-- {
				if strings.TrimSpace(segs[j]) != "" {
					l = segs[j]
					break
				}
			}
		}
		l = strings.TrimSpace(l)
		if l == "" || progressRE.MatchString(l) {
			continue
		}
		out = append(out, l)
	}
	return out
}
