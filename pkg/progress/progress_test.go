package progress

import (
	"testing"
	"time"
)

func TestStats(t *testing.T) {
	for _, tc := range []struct {
		s    Stats
		want string
	}{
		{Stats{Done: 100 << 20, Total: 400 << 20, Elapsed: 2 * time.Second}, " 25% 100/400 MiB 52.4 MB/s ETA 6s"},
		{Stats{Done: 0, Total: 0}, "100% 0/0 MiB 0.0 MB/s ETA 0s"},
		{Stats{Done: 5 << 20, Total: 5 << 20, Elapsed: time.Second}, "100% 5/5 MiB 5.2 MB/s ETA 0s"},
	} {
		if got := tc.s.String(); got != tc.want {
			t.Errorf("%+v: got %q want %q", tc.s, got, tc.want)
		}
	}
}

func TestMeterReportsAtIntervals(t *testing.T) {
	clock := time.Unix(0, 0)
	var reports []Stats
	m := NewMeter(10, time.Second, func(s Stats) { reports = append(reports, s) })
	m.now = func() time.Time { return clock }
	m.start, m.last = clock, clock
	for i := 0; i < 10; i++ {
		clock = clock.Add(300 * time.Millisecond)
		if _, err := m.Write([]byte{0}); err != nil {
			t.Fatal(err)
		}
	}
	final := m.Finish()
	// Writes every 0.3 s report at 1.2 s and 2.4 s, then the final one.
	if len(reports) != 3 || reports[0].Done != 4 || reports[1].Done != 8 || final.Done != 10 || final.Elapsed != 3*time.Second {
		t.Errorf("reports = %+v, final %+v", reports, final)
	}
}
