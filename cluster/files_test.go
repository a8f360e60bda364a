package cluster

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestReadWriteFilesConformance(t *testing.T) {
	runConformance(t, []conformanceCase{
		{"read several files, missing ones left out", func(t *testing.T, a Access, dir string) {
			plain := filepath.Join(dir, "it's a\nfile")
			empty := filepath.Join(dir, "empty")
			binary := filepath.Join(dir, "bin")
			link := filepath.Join(dir, "link")
			missing := filepath.Join(dir, "missing")
			data := []byte("line 'one'\n$HOME \\ \x00\xff last")
			os.WriteFile(plain, []byte("a\nb\n"), 0o600)
			os.WriteFile(empty, nil, 0o600)
			os.WriteFile(binary, data, 0o600)
			os.Symlink(plain, link)
			got, err := ReadFiles(context.Background(), a, plain, empty, binary, link, missing)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{plain: "a\nb\n", empty: "", binary: string(data), link: "a\nb\n"}
			if len(got) != len(want) {
				t.Fatalf("got %d files, want %d: %q", len(got), len(want), got)
			}
			for p, w := range want {
				if g, ok := got[p]; !ok || string(g) != w {
					t.Errorf("%q: got %q (present %v), want %q", p, g, ok, w)
				}
			}
		}},
		{"read after a command, which a failure stops", func(t *testing.T, a Access, dir string) {
			src, dst := filepath.Join(dir, "saved"), filepath.Join(dir, "copy")
			os.WriteFile(src, []byte("own\n"), 0o600)
			os.WriteFile(dst, []byte("primary's\n"), 0o600)
			before := "cp -p " + ShellQuote(src) + " " + ShellQuote(dst) + " && touch " + ShellQuote(filepath.Join(dir, "signal"))
			got, err := ReadFilesAfter(context.Background(), a, before, dst, filepath.Join(dir, "signal"))
			if err != nil {
				t.Fatal(err)
			}
			if string(got[dst]) != "own\n" || len(got) != 2 {
				t.Fatalf("read %q; want the file as the command left it, and the file it made", got)
			}
			_, err = ReadFilesAfter(context.Background(), a, "echo broken >&2; exit 3", dst)
			var ce *CommandError
			if !errors.As(err, &ce) || ce.ExitCode != 3 || !strings.Contains(err.Error(), "broken") || !strings.Contains(err.Error(), "dc1-a") {
				t.Fatalf("failing command: %v; want its exit code and stderr, naming the node", err)
			}
			if _, err := ReadFilesAfter(context.Background(), ReadOnly(a), before, dst); !errors.Is(err, ErrReadOnly) {
				t.Fatalf("through ReadOnly: %v, want ErrReadOnly", err)
			}
		}},
		{"a file that cannot be read is an error naming it", func(t *testing.T, a Access, dir string) {
			sub := filepath.Join(dir, "a dir")
			os.Mkdir(sub, 0o700)
			dangling := filepath.Join(dir, "dangling")
			os.Symlink(filepath.Join(dir, "nowhere"), dangling)
			for _, p := range []string{sub, dangling} {
				_, err := ReadFiles(context.Background(), a, filepath.Join(dir, "missing"), p)
				if err == nil || !strings.Contains(err.Error(), p) {
					t.Errorf("%s: got %v, want an error naming it", p, err)
				}
			}
		}},
		{"write several files, new and existing, through links", func(t *testing.T, a Access, dir string) {
			existing := filepath.Join(dir, "existing")
			real := filepath.Join(dir, "real")
			link := filepath.Join(dir, "link")
			fresh := filepath.Join(dir, "new 'one'")
			os.WriteFile(existing, []byte("old\n"), 0o640)
			os.WriteFile(real, []byte("old\n"), 0o644)
			os.Symlink(real, link)
			big := strings.Repeat("0123456789abcdef\n", 6000)
			files := []FileWrite{
				{Path: existing, Data: []byte("new\n"), Mode: 0o600},
				{Path: link, Data: []byte(big), Mode: 0o600},
				{Path: fresh, Data: []byte("line\n\x00\xff$HOME 'q'"), Mode: 0o600},
			}
			if err := WriteFiles(context.Background(), a, files); err != nil {
				t.Fatal(err)
			}
			check := func(p, content string, mode os.FileMode) {
				t.Helper()
				b, err := os.ReadFile(p)
				if err != nil || string(b) != content {
					t.Fatalf("%s: got %d bytes (%v), want %d", p, len(b), err, len(content))
				}
				fi, err := os.Lstat(p)
				if err != nil || fi.Mode() != mode {
					t.Errorf("%s: mode %v (%v), want %v", p, fi.Mode(), err, mode)
				}
			}
			check(existing, "new\n", 0o640)
			check(real, big, 0o644)
			check(fresh, "line\n\x00\xff$HOME 'q'", 0o600)
			if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
				t.Errorf("%s is no longer a symlink: %v", link, err)
			}
			left, _ := filepath.Glob(filepath.Join(dir, ".*sdr-tmp*"))
			if len(left) > 0 {
				t.Errorf("temporary files left: %v", left)
			}
		}},
		{"write stops at the first file it cannot write and names it", func(t *testing.T, a Access, dir string) {
			first := filepath.Join(dir, "first")
			bad := filepath.Join(dir, "no", "such", "dir", "f")
			after := filepath.Join(dir, "after")
			err := WriteFiles(context.Background(), a, []FileWrite{
				{Path: first, Data: []byte("1"), Mode: 0o600},
				{Path: bad, Data: []byte("2"), Mode: 0o600},
				{Path: after, Data: []byte("3"), Mode: 0o600},
			})
			if err == nil || !strings.Contains(err.Error(), bad) {
				t.Fatalf("got %v, want an error naming %s", err, bad)
			}
			if b, err := os.ReadFile(first); err != nil || string(b) != "1" {
				t.Errorf("first file: %q %v", b, err)
			}
			if _, err := os.Stat(after); err == nil {
				t.Errorf("%s was written after the failure", after)
			}
		}},
		{"write keeps the owner", func(t *testing.T, a Access, dir string) {
			if os.Geteuid() != 0 {
				t.Skip("needs root to give a file another owner")
			}
			p := filepath.Join(dir, "owned")
			os.WriteFile(p, []byte("old"), 0o644)
			if err := os.Chown(p, 65534, 65533); err != nil {
				t.Skip(err)
			}
			if err := WriteFiles(context.Background(), a, []FileWrite{{Path: p, Data: []byte("new"), Mode: 0o600}}); err != nil {
				t.Fatal(err)
			}
			var st syscall.Stat_t
			if err := syscall.Stat(p, &st); err != nil || st.Uid != 65534 || st.Gid != 65533 || st.Mode&0o777 != 0o644 {
				t.Errorf("owner %d:%d mode %o (%v)", st.Uid, st.Gid, st.Mode&0o777, err)
			}
		}},
	})
}

func TestWriteFilesSecretsStayOffTheCommandLine(t *testing.T) {
	a := &stdinAccess{countingAccess: countingAccess{node: &Node{Name: "dc2-a"}}}
	if err := WriteFiles(context.Background(), a, []FileWrite{{Path: "/x/y", Data: []byte("s3cret-value"), Mode: 0o600}}); err != nil {
		t.Fatal(err)
	}
	if len(a.ran) != 1 || strings.Contains(a.ran[0], "s3cret") || strings.Contains(a.ran[0], "czNjcmV0") {
		t.Errorf("the content is in the command: %q", a.ran)
	}
	if !strings.Contains(a.stdin, "czNjcmV0LXZhbHVl") {
		t.Errorf("stdin %q does not carry the content", a.stdin)
	}
}

// stdinAccess also keeps what Run was fed.
type stdinAccess struct {
	countingAccess
	stdin string
}

func (s *stdinAccess) Run(ctx context.Context, cmd string, opts RunOpts) ([]byte, error) {
	if opts.Stdin != nil {
		b, _ := io.ReadAll(opts.Stdin)
		s.stdin += string(b)
	}
	return s.countingAccess.Run(ctx, cmd, opts)
}
