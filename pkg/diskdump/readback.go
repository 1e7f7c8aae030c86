package diskdump

import (
	"bytes"
	"fmt"
	"io"
)

// readBack returns a BitmapSource that reads the bitmaps SetBitmaps just
// wrote back from the file, when the file gives back what was written (an
// *os.File opened for reading and writing), so that the source need not
// compute them again while the pages are written; nil otherwise. last is
// the cursor that wrote them, holding the last chunk, to compare. Memory
// stays one chunk however large the bitmaps are.
func (w *Writer) readBack(last *bitCursor) BitmapSource {
	r, ok := w.w.(io.ReaderAt)
	if !ok || !last.loaded {
		return nil
	}
	fb := &fileBitmaps{r: r, l: w.l}
	ram, dump := make([]byte, len(last.ram)), make([]byte, len(last.dump))
	span := last.span()
	if fb.FillBitmaps(last.start, ram, dump) != nil ||
		!bytes.Equal(ram[:span], last.ram[:span]) || !bytes.Equal(dump[:span], last.dump[:span]) {
		return nil
	}
	return fb
}

// fileBitmaps reads the bitmaps of a kdump-compressed file.
type fileBitmaps struct {
	r io.ReaderAt
	l layout
}

func (f *fileBitmaps) FillBitmaps(start uint64, ram, dumpable []byte) error {
	off := int64(start / 8)
	n := min(int64(len(ram)), f.l.bitmapLen-off)
	if n <= 0 {
		return nil
	}
	if err := readFullAt(f.r, ram[:n], f.l.bitmap1Off+off); err != nil {
		return fmt.Errorf("diskdump: reading bitmap 1 back: %w", err)
	}
	if err := readFullAt(f.r, dumpable[:n], f.l.bitmap2Off+off); err != nil {
		return fmt.Errorf("diskdump: reading bitmap 2 back: %w", err)
	}
	return nil
}

// readFullAt reads len(b) bytes at off; io.EOF with all of them is no error.
func readFullAt(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}
