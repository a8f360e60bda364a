package cluster

import (
	"context"
	"encoding/base64"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// ReadFiles reads several files on the node in one remote action. A file
// that does not exist is left out of the map; one that cannot be read (a
// directory, no permission, a dangling symlink) is an error naming it.
func ReadFiles(ctx context.Context, a Access, paths ...string) (map[string][]byte, error) {
	return readFiles(ctx, a, "", paths)
}

// ReadFilesAfter runs the shell command before on the node and, once it
// succeeded, reads paths as ReadFiles does, in the same remote action:
// files that before prepares are read as it left them. It changes the
// node when before does, so a ReadOnly access refuses it.
func ReadFilesAfter(ctx context.Context, a Access, before string, paths ...string) (map[string][]byte, error) {
	if strings.TrimSpace(before) == "" {
		return nil, fmt.Errorf("on %s: reading files after a command: no command", a.Node().Name)
	}
	return readFiles(ctx, a, before, paths)
}

func readFiles(ctx context.Context, a Access, before string, paths []string) (map[string][]byte, error) {
	node := a.Node().Name
	if err := checkPaths(paths...); err != nil {
		return nil, fmt.Errorf("on %s: reading files: %w", node, err)
	}
	var b strings.Builder
	if before != "" {
		// A failure of before ends the script with its exit code.
		fmt.Fprintf(&b, "{ %s\n} || exit $?\n", before)
	}
	b.WriteString(`sdr_read() {
	if [ -e "$2" ] || [ -L "$2" ]; then
		printf 'f%s=' "$1"
		base64 -w0 <"$2" || { printf '%s\n' "cannot read $2" >&2; exit 1; }
		printf '\0'
	fi
}
`)
	for i, p := range paths {
		fmt.Fprintf(&b, "sdr_read %d %s\n", i, ShellQuote(p))
	}
	what := "reading " + strings.Join(paths, ", ")
	var out []byte
	var err error
	if before == "" {
		out, err = runReadScript(ctx, a, what, b.String())
	} else {
		out, err = runScript(ctx, a, what+" after "+shorten(before, 200), b.String())
	}
	if err != nil {
		return nil, err // names the node
	}
	recs, err := parseRecords(out)
	if err != nil {
		return nil, fmt.Errorf("on %s: reading files: %w", node, err)
	}
	files := map[string][]byte{}
	for _, r := range recs {
		i, err := strconv.Atoi(strings.TrimPrefix(r.key, "f"))
		if !strings.HasPrefix(r.key, "f") || err != nil || i < 0 || i >= len(paths) {
			return nil, fmt.Errorf("on %s: reading files: unexpected record %q", node, r.key)
		}
		data, err := base64.StdEncoding.DecodeString(r.val)
		if err != nil {
			return nil, fmt.Errorf("on %s: reading %s: %w", node, paths[i], err)
		}
		files[paths[i]] = data
	}
	return files, nil
}

// FileWrite is one file for WriteFiles.
type FileWrite struct {
	Path string
	Data []byte
	Mode fs.FileMode // for a new file; an existing one keeps its owner and mode
}

// WriteFiles writes several files on the node in one remote action, each
// as Access.WriteFile does (a temporary file beside it, or beside the file
// a symlink points to, with the existing file's owner and mode, synced and
// renamed over it), in order. The contents go through the session's stdin,
// never on a command line (one base64 line per file, which the node's shell
// reads a byte at a time: it is meant for configuration-sized files). It
// stops at the first file it cannot write and says which.
func WriteFiles(ctx context.Context, a Access, files []FileWrite) error {
	if len(files) == 0 {
		return nil
	}
	node := a.Node().Name
	var script, in strings.Builder
	script.WriteString(writeFileFunc)
	names := make([]string, len(files))
	for i, f := range files {
		if err := checkPaths(f.Path); err != nil {
			return fmt.Errorf("on %s: writing files: %w", node, err)
		}
		names[i] = f.Path
		// One line of base64 per file on stdin: the shell's read takes
		// exactly one line, whatever the file holds.
		in.WriteString(base64.StdEncoding.EncodeToString(f.Data))
		in.WriteByte('\n')
		fmt.Fprintf(&script, "IFS= read -r sdr_l || { echo 'input ended early' >&2; exit 1; }\n"+
			"printf %%s \"$sdr_l\" | base64 -d | sdr_write %s %04o || { printf '%%s\\n' %s >&2; exit 1; }\n",
			ShellQuote(f.Path), f.Mode.Perm(), ShellQuote("could not write "+f.Path))
	}
	if _, err := runScriptIn(ctx, a, "writing "+strings.Join(names, ", "), script.String()+"exit 0\n", strings.NewReader(in.String())); err != nil {
		return err // names the node
	}
	return nil
}
