package cluster

import "strings"

// Marked blocks: sdr's own lines in a file it shares with people
// (pg_hba.conf, postgresql.auto.conf) sit between
//
//	# BEGIN sdr <marker>
//	...
//	# END sdr <marker>
//
// so that sdr can find, replace and remove them and leave every other line
// as it was.

func blockBegin(marker string) string { return "# BEGIN sdr " + marker }
func blockEnd(marker string) string   { return "# END sdr " + marker }

// blockSpan is a complete block: lines [begin, end] (inclusive).
type blockSpan struct{ begin, end int }

// splitLines splits content into lines that keep their "\n".
func splitLines(content string) []string {
	if content == "" {
		return nil
	}
	return strings.SplitAfter(strings.TrimSuffix(content, "\n"), "\n")
}

// findBlocks returns the complete blocks for marker. A BEGIN line followed
// by another BEGIN before its END is not a block and is left alone.
func findBlocks(lines []string, marker string) []blockSpan {
	begin, end := blockBegin(marker), blockEnd(marker)
	var spans []blockSpan
	open := -1
	for i, l := range lines {
		switch strings.TrimSpace(l) {
		case begin:
			open = i
		case end:
			if open >= 0 {
				spans = append(spans, blockSpan{open, i})
				open = -1
			}
		}
	}
	return spans
}

// ReplaceBlock returns content with the block for marker holding lines:
// the first existing block is replaced in place (later duplicates are
// removed), or the block is appended at the end. lines == nil removes the
// block. Every other line is kept byte for byte, and applying the same call
// again changes nothing.
func ReplaceBlock(content, marker string, lines []string) string {
	all := splitLines(content)
	hadNewline := strings.HasSuffix(content, "\n")
	spans := findBlocks(all, marker)

	var block []string
	if lines != nil {
		block = append(block, blockBegin(marker)+"\n")
		for _, l := range lines {
			block = append(block, l+"\n")
		}
		block = append(block, blockEnd(marker)+"\n")
	}

	var b strings.Builder
	if len(spans) == 0 {
		if lines == nil {
			return content
		}
		b.WriteString(content)
		if content != "" && !hadNewline {
			b.WriteString("\n")
		}
		for _, l := range block {
			b.WriteString(l)
		}
		return b.String()
	}

	next := 0
	for i := 0; i < len(all); i++ {
		if next < len(spans) && i == spans[next].begin {
			if next == 0 {
				for _, l := range block {
					b.WriteString(l)
				}
			}
			i = spans[next].end
			next++
			continue
		}
		b.WriteString(all[i])
		if i == len(all)-1 && !strings.HasSuffix(all[i], "\n") && hadNewline {
			b.WriteString("\n")
		}
	}
	return b.String()
}

// InsertBlockBefore returns content with the block for marker holding
// lines. An existing block is replaced in place, as ReplaceBlock does.
// Otherwise the block is inserted before the 1-based line before, or
// appended at the end when before is 0 or past the last line. Every other
// line is kept byte for byte.
func InsertBlockBefore(content, marker string, lines []string, before int) string {
	all := splitLines(content)
	if lines == nil || len(findBlocks(all, marker)) > 0 || before < 1 || before > len(all) {
		return ReplaceBlock(content, marker, lines)
	}
	var b strings.Builder
	for i, l := range all {
		if i == before-1 {
			b.WriteString(blockBegin(marker) + "\n")
			for _, bl := range lines {
				b.WriteString(bl + "\n")
			}
			b.WriteString(blockEnd(marker) + "\n")
		}
		b.WriteString(l)
	}
	if strings.HasSuffix(content, "\n") {
		b.WriteString("\n") // splitLines dropped the last newline
	}
	return b.String()
}

// BlockText is the block for marker holding lines, line by line, as
// ReplaceBlock and InsertBlockBefore write it (without newlines).
func BlockText(marker string, lines []string) []string {
	out := append([]string{blockBegin(marker)}, lines...)
	return append(out, blockEnd(marker))
}

// HasBlock reports whether content holds a complete block for marker.
func HasBlock(content, marker string) bool { return CountBlocks(content, marker) > 0 }

// CountBlocks counts the complete blocks for marker (more than one means
// the file was edited by hand or by a broken tool).
func CountBlocks(content, marker string) int { return len(findBlocks(splitLines(content), marker)) }

// BlockLines returns the lines inside the first block for marker, and
// whether there was one.
func BlockLines(content, marker string) ([]string, bool) {
	all := splitLines(content)
	spans := findBlocks(all, marker)
	if len(spans) == 0 {
		return nil, false
	}
	out := []string{}
	for _, l := range all[spans[0].begin+1 : spans[0].end] {
		out = append(out, strings.TrimRight(l, "\r\n"))
	}
	return out, true
}

// PgpassLine is one ~/.pgpass line (without the newline), with ":" and "\"
// escaped as libpq requires.
func PgpassLine(host, port, db, user, password string) string {
	esc := strings.NewReplacer(`\`, `\\`, `:`, `\:`)
	return esc.Replace(host) + ":" + esc.Replace(port) + ":" + esc.Replace(db) + ":" + esc.Replace(user) + ":" + esc.Replace(password)
}

// RemoveOutside returns content without the lines outside every sdr
// block (of any marker) for which drop returns true (given without "\n"),
// and those lines. Lines inside blocks and every other line are kept byte
// for byte.
func RemoveOutside(content string, drop func(line string) bool) (string, []string) {
	all := splitLines(content)
	inside := make([]bool, len(all))
	open, marker := -1, ""
	for i, l := range all {
		t := strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(t, blockBegin("")):
			open, marker = i, strings.TrimPrefix(t, blockBegin(""))
		case open >= 0 && t == blockEnd(marker):
			for j := open; j <= i; j++ {
				inside[j] = true
			}
			open = -1
		}
	}
	var b strings.Builder
	var dropped []string
	for i, l := range all {
		line := strings.TrimRight(l, "\r\n")
		if !inside[i] && drop(line) {
			dropped = append(dropped, line)
			continue
		}
		b.WriteString(l)
	}
	if len(dropped) == 0 {
		return content, nil
	}
	out := b.String()
	if strings.HasSuffix(content, "\n") && out != "" && !strings.HasSuffix(out, "\n") {
		out += "\n"
	}
	return out, dropped
}
