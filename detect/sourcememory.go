package detect

import "time"

// sourceMemory is what one flood target remembers of the sources it has
// heard from, so that the random-source test can tell a new source from a
// returning one: real clients come back window after window, forged
// sources never do. It is a pair of Bloom filters, one filling and the one
// before it; a generation lasts spoofed_flood.source_memory, so a source
// is remembered for at least that long after its latest packet.
//
// It remembers only the sources whose hash is at most the detector's cut:
// the low hashes that the random-source test's bottom-k sample holds once
// a window has distinct_sources sources. So its fixed 4 KiB remember about
// 17,000 clients at the default distinct_sources. A generation that takes
// memoryCapacity sources (a flood does in a moment) makes way for a new
// one early: the memory then spans less time, but never fills up to the
// point of taking every forged source for a known one.
type sourceMemory struct {
	gen   [2][memoryWords]uint64
	cur   int       // the generation that fills; cur^1 is the one before
	n     int       // sources added to gen[cur]
	since time.Time // when gen[cur] began
	born  time.Time // when the memory last began empty
}

const (
	memoryBits  = 1 << 14 // a generation's bits
	memoryWords = memoryBits / 64
	// memoryCapacity is a generation's sources: at 12 bits a source and
	// memoryHashes hashes, a full generation answers "seen" for 0.4% of
	// the sources it never saw.
	memoryCapacity = memoryBits / 12
	memoryHashes   = 6
	// memorySample is the sources the memory keeps per distinct_sources of
	// a window: 1.25 times the sample, so that the bottom-k sample of a
	// window of distinct_sources sources lies below the cut.
	memorySample = sampleK * 5 / 4
)

// memoryCut returns the highest source hash a memory keeps, for a
// random-source test at distinct sources a window.
func memoryCut(distinct int) uint64 {
	if distinct <= memorySample {
		return ^uint64(0)
	}
	return ^uint64(0) / uint64(distinct) * memorySample
}

// reset empties the memory at now: nothing it hears before now plus the
// warm-up is new to it.
func (m *sourceMemory) reset(now time.Time) {
	m.gen = [2][memoryWords]uint64{}
	m.cur, m.n, m.since, m.born = 0, 0, now, now
}

// advance forgets the generation that ended period ago, and everything
// when the target was silent for two periods (then the memory warms up
// again: a server back from an outage gets all its clients at once).
func (m *sourceMemory) advance(now time.Time, period time.Duration) {
	switch age := now.Sub(m.since); {
	case age >= 2*period:
		m.reset(now)
	case age >= period:
		m.rotate(now)
	}
}

func (m *sourceMemory) rotate(now time.Time) {
	m.cur ^= 1
	m.gen[m.cur] = [memoryWords]uint64{}
	m.n, m.since = 0, now
}

// warm reports whether the memory has listened for at least d: a client
// that returns within d is known to it.
func (m *sourceMemory) warm(now time.Time, d time.Duration) bool {
	return now.Sub(m.born) >= d
}

// has reports whether h was added within the memory's span (or, rarely, a
// false positive).
func (m *sourceMemory) has(h uint64) bool {
	return m.in(&m.gen[m.cur], h) || m.in(&m.gen[m.cur^1], h)
}

// add remembers h from now.
func (m *sourceMemory) add(h uint64, now time.Time) {
	g := &m.gen[m.cur]
	if m.in(g, h) {
		return
	}
	a, b := memoryProbe(h)
	for range memoryHashes {
		g[a/64&(memoryWords-1)] |= 1 << (a % 64)
		a += b
	}
	if m.n++; m.n >= memoryCapacity {
		m.rotate(now)
	}
}

func (m *sourceMemory) in(g *[memoryWords]uint64, h uint64) bool {
	a, b := memoryProbe(h)
	for range memoryHashes {
		if g[a/64&(memoryWords-1)]&(1<<(a%64)) == 0 {
			return false
		}
		a += b
	}
	return true
}

// memoryProbe returns the first bit of h and the stride to its others
// (double hashing, Kirsch and Mitzenmacher). The remembered hashes are all
// small, so they are mixed again first.
func memoryProbe(h uint64) (a, b uint32) {
	x := mix(h ^ seedMemory)
	return uint32(x), uint32(x>>32) | 1
}
