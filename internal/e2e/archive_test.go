package e2e

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"testing"

	"github.com/u-root/u-root/pkg/cpio"
)

// archive builds a gzipped newc initramfs with reproducible records.
type archive struct {
	recs []cpio.Record
	dirs map[string]bool
}

func newArchive() *archive { return &archive{dirs: map[string]bool{}} }

func (a *archive) add(r cpio.Record) {
	r = cpio.MakeReproducible(r)
	r.Ino = uint64(len(a.recs) + 1)
	a.recs = append(a.recs, r)
}

// addDirs adds the directories above p not added yet.
func (a *archive) addDirs(p string) {
	var parts []string
	for d := filepath.Dir(p); d != "." && !a.dirs[d]; d = filepath.Dir(d) {
		parts = append(parts, d)
		a.dirs[d] = true
	}
	for i := len(parts) - 1; i >= 0; i-- {
		a.add(cpio.Directory(parts[i], 0o755))
	}
}

func (a *archive) addBytes(name string, b []byte, perm uint64) {
	a.addDirs(name)
	a.add(cpio.StaticRecord(b, cpio.Info{Name: name, Mode: cpio.S_IFREG | perm}))
}

func (a *archive) addFile(t *testing.T, name, src string, perm uint64) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	a.addBytes(name, b, perm)
}

// write writes the archive to out, gzipped.
func (a *archive) write(t *testing.T, out string) {
	t.Helper()
	var raw bytes.Buffer
	w := cpio.Newc.Writer(&raw)
	if err := cpio.WriteRecords(w, a.recs); err != nil {
		t.Fatal(err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	zw.Write(raw.Bytes())
	zw.Close()
	if err := os.WriteFile(out, gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
