package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	for _, tc := range []struct {
		name  string
		write func(string, []byte, os.FileMode) error
	}{{"Write", Write}, {"Replace", Replace}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "state.json")
			for _, content := range []string{"one", "two, longer", ""} {
				if err := tc.write(p, []byte(content), 0o640); err != nil {
					t.Fatal(err)
				}
				got, err := os.ReadFile(p)
				if err != nil || string(got) != content {
					t.Fatalf("read back %q, %v; want %q", got, err, content)
				}
			}
			st, _ := os.Stat(p)
			if st.Mode().Perm() != 0o640 {
				t.Fatalf("mode = %v", st.Mode().Perm())
			}
			ents, _ := os.ReadDir(dir)
			if len(ents) != 1 {
				t.Fatalf("temporary files left behind: %v", ents)
			}
			if err := tc.write(filepath.Join(dir, "missing", "x"), nil, 0o600); err == nil {
				t.Fatal("writing into a missing directory succeeded")
			}
			// A target that cannot be replaced (a non-empty directory)
			// fails and leaves no temporary file.
			sub := filepath.Join(dir, "sub")
			if err := os.MkdirAll(filepath.Join(sub, "x"), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := tc.write(sub, []byte("x"), 0o600); err == nil {
				t.Fatal("replacing a directory succeeded")
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 2 {
				t.Fatalf("temporary files left behind after a failed rename: %v", ents)
			}
		})
	}
}
