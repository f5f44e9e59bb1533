package detect

import (
	"testing"
	"time"
)

// TestSourceMemory checks the memory's contract: a source added is known
// for at least the period after its latest packet and forgotten after two
// silent periods, when the memory warms up again; and however many sources
// a flood adds, it never comes to take unseen sources for known ones.
func TestSourceMemory(t *testing.T) {
	const period = time.Minute
	var m sourceMemory
	m.reset(base)
	h := func(i int) uint64 { return mix(uint64(i)) }
	for i := range 1000 {
		m.add(h(i), base)
	}
	if m.warm(base.Add(3*time.Second), 4*time.Second) || !m.warm(base.Add(4*time.Second), 4*time.Second) {
		t.Error("warm-up")
	}
	// Each period, half the sources come back: they stay known, the others
	// are forgotten after two periods.
	for p := 1; p <= 3; p++ {
		now := base.Add(time.Duration(p) * period)
		m.advance(now, period)
		for i := range 500 {
			if !m.has(h(i)) {
				t.Fatalf("period %d: returning source %d forgotten", p, i)
			}
			m.add(h(i), now)
		}
	}
	forgotten := 0
	for i := 500; i < 1000; i++ {
		if !m.has(h(i)) {
			forgotten++
		}
	}
	if forgotten < 490 { // false positives aside
		t.Errorf("%d of 500 sources silent for three periods forgotten", forgotten)
	}
	// Silent for two periods: everything goes, and the memory warms again.
	later := base.Add(6 * period)
	m.advance(later, period)
	if m.has(h(1)) || m.warm(later, time.Second) {
		t.Error("memory kept across two silent periods")
	}

	// A flood of a million sources in one period: whenever it is asked,
	// the memory takes fewer than 1% of the sources it never saw for known.
	m.reset(base)
	unseen := 0
	for i := range 1_000_000 {
		m.add(h(i), base)
		if i%10_000 == 9_999 {
			for j := range 1000 {
				if m.has(h(-1 - j)) {
					unseen++
				}
			}
		}
	}
	if rate := float64(unseen) / 100 / 1000; rate > 0.01 {
		t.Errorf("%.2f%% of unseen sources taken for known during a flood", 100*rate)
	}
}
