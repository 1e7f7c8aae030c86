package kmsg

import (
	"bytes"
	"testing"
	"time"
)

func TestLogger(t *testing.T) {
	var console, klog bytes.Buffer
	l := New(&console, &klog, "kdumpinit")
	l.clock = func() time.Duration { return 12345678 * time.Microsecond }
	l.Printf("mounted %s\n", "/dev/vda")
	l.Progressf("50%%")
	if want := "[   12.345678] kdumpinit: mounted /dev/vda\n[   12.345678] kdumpinit: 50%\n"; console.String() != want {
		t.Errorf("console = %q, want %q", console.String(), want)
	}
	if want := "<7>kdumpinit: mounted /dev/vda\n"; klog.String() != want {
		t.Errorf("kmsg = %q, want %q", klog.String(), want)
	}
	New(&console, nil, "x").Printf("no kmsg is fine")
}
