// Package progress measures long copies and reports them at intervals.
package progress

import (
	"fmt"
	"time"
)

// Stats is a snapshot of a copy.
type Stats struct {
	Done, Total int64
	Elapsed     time.Duration
}

// Rate is the average speed in bytes per second.
func (s Stats) Rate() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Done) / s.Elapsed.Seconds()
}

// ETA estimates the time left at the average rate; zero when unknown.
func (s Stats) ETA() time.Duration {
	r := s.Rate()
	if r == 0 || s.Total <= s.Done {
		return 0
	}
	return time.Duration(float64(s.Total-s.Done) / r * float64(time.Second)).Round(time.Second)
}

// String formats s as "42% 210/500 MiB 64.1 MB/s ETA 5s".
func (s Stats) String() string {
	pct := 100.0
	if s.Total > 0 {
		pct = 100 * float64(s.Done) / float64(s.Total)
	}
	return fmt.Sprintf("%3.0f%% %d/%d MiB %.1f MB/s ETA %s", pct, s.Done>>20, s.Total>>20, s.Rate()/1e6, s.ETA())
}

// Meter is an io.Writer that counts bytes and calls Report at most once per
// Every, and once more from Finish.
type Meter struct {
	Total  int64
	Every  time.Duration
	Report func(Stats)
	now    func() time.Time
	start  time.Time
	last   time.Time
	done   int64
}

// NewMeter starts measuring a copy of total bytes.
func NewMeter(total int64, every time.Duration, report func(Stats)) *Meter {
	m := &Meter{Total: total, Every: every, Report: report, now: time.Now}
	m.start = m.now()
	m.last = m.start
	return m
}

// Write counts p.
func (m *Meter) Write(p []byte) (int, error) {
	m.done += int64(len(p))
	if t := m.now(); t.Sub(m.last) >= m.Every {
		m.last = t
		m.Report(m.stats(t))
	}
	return len(p), nil
}

// Finish reports the final figures and returns them.
func (m *Meter) Finish() Stats {
	s := m.stats(m.now())
	m.Report(s)
	return s
}

func (m *Meter) stats(t time.Time) Stats {
	return Stats{Done: m.done, Total: m.Total, Elapsed: t.Sub(m.start)}
}
