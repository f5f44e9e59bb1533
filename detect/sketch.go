package detect

import (
	"cmp"
	"encoding/binary"
	"math"
	"math/bits"
	"net/netip"
	"slices"
	"time"
	"unsafe"
)

// This file holds the fixed-size structures that keep per-key state bounded
// whatever an attacker sends: a sliding-window meter, an admission sketch
// in front of every table keyed by attacker-controlled addresses, a
// HyperLogLog distinct counter, a bottom-k sample of sources and a tally of
// the reflectors of a victim. None allocates per packet once it has grown
// to its working size.

// Hash seeds, one per use, so that one key's hashes are independent.
const (
	seedVictim uint64 = 0x9e3779b97f4a7c15 + iota
	seedPrefix
	seedTarget
	seedSource
	seedScanner
	seedHost
	seedReflector
	seedPair
	seedExposed
	seedMemory
)

// mix is the splitmix64 finaliser: a fast, well-spread 64-bit hash step.
// It is fixed, so runs are reproducible.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// hashAddr hashes an address (IPv4 as its IPv4-mapped form) with a seed.
// An IPv4 address, the commonest, is read as its four bytes: netip's As16
// cost a flood some 13% of its time (TestHashAddr holds the two ways to
// the same hash).
func hashAddr(a netip.Addr, seed uint64) uint64 {
	if a.Is4() { // its IPv4-mapped form: the first 8 bytes 0, then ::ffff:a.b.c.d
		b := a.As4()
		return mix(mix(seed) ^ (0xffff<<32 | uint64(binary.BigEndian.Uint32(b[:]))))
	}
	b := a.As16()
	return mix(mix(seed^binary.BigEndian.Uint64(b[:8])) ^ binary.BigEndian.Uint64(b[8:]))
}

// meterBuckets is the number of sub-windows of a meter's window.
const meterBuckets = 5

// meter counts packets and bytes over a sliding window of packet time,
// split into meterBuckets buckets, and keeps running sums so that reading
// a rate costs nothing. The window is the caller's, passed in each call,
// so that a meter is only its counts.
type meter struct {
	cur int64 // index of the newest bucket: time / bucket width
	// The packets of a bucket saturate at 2^32-1 (4 billion in one
	// bucket is past any link), which leaves room for the rest of the
	// meter within 104 bytes, the size of its buckets and sums alone.
	pkts  [meterBuckets]uint32
	bytes [meterBuckets]uint64
	sumP  uint64
	sumB  uint64
	// Of the completed buckets, kept by settle for rate, which detection
	// reads at every packet of an open incident: twice the median packets
	// and bytes (their sum less the lowest and the highest).
	medP, medB uint64
}

// advance moves the window to now, dropping buckets that fell out of it.
// Time that goes backwards (reordered captures) counts in the newest bucket.
func (m *meter) advance(now time.Time, window time.Duration) {
	ns, width := now.UnixNano(), int64(window/meterBuckets)
	// A time in the newest bucket or before it, nearly every packet's,
	// leaves the meter as it is: seen without a division. (For times
	// and buckets from 1970 on: m.cur*width is then at most the time that
	// made m.cur, and neither it nor the difference overflows.)
	if ns >= 0 && m.cur >= 0 && ns-m.cur*width < width {
		return
	}
	m.advanceTo(ns / width)
}

// advanceTo moves the window on to bucket idx (a time over the bucket
// width), if that is later than its newest.
func (m *meter) advanceTo(idx int64) {
	gap := idx - m.cur
	if gap <= 0 {
		return
	}
	if gap >= meterBuckets {
		*m = meter{cur: idx}
		return
	}
	for i := int64(1); i <= gap; i++ {
		s := (m.cur + i) % meterBuckets
		// A sum that saturated (see addN) holds less than its buckets.
		m.sumP -= min(m.sumP, uint64(m.pkts[s]))
		m.sumB -= min(m.sumB, m.bytes[s])
		m.pkts[s], m.bytes[s] = 0, 0
	}
	m.cur = idx
	m.settle()
}

// settle works out what rate reads of the completed buckets, after they
// changed. The median of four is their sum less the lowest and the
// highest, halved.
func (m *meter) settle() {
	newest := m.cur % meterBuckets
	loP, hiP, loB, hiB := uint64(math.MaxUint64), uint64(0), uint64(math.MaxUint64), uint64(0)
	var sP, sB uint64
	for i := range int64(meterBuckets) {
		if i != newest {
			p := uint64(m.pkts[i])
			loP, hiP = min(loP, p), max(hiP, p)
			loB, hiB = min(loB, m.bytes[i]), max(hiB, m.bytes[i])
			sP, sB = sat(sP, p), sat(sB, m.bytes[i])
		}
	}
	// A sum that saturated holds less than its buckets: never below 0.
	m.medP = sP - min(sP, sat(loP, hiP))
	m.medB = sB - min(sB, sat(loB, hiB))
}

// add counts a packet of weight w (see weigh) at now: as much of it as
// one window holds (see weight.within), spread evenly over the time its
// packets took up to now (w.span, at most the window's buckets), so that
// packets reported at once (a flow record, or an sFlow agent's samples of
// the second before, sent together) count where they fell.
func (m *meter) add(now time.Time, window time.Duration, w weight) {
	pkts, n := w.within(window)
	if w.span <= 0 {
		m.addN(now, window, pkts, n)
		return
	}
	m.advance(now, window)
	width := int64(window / meterBuckets)
	end := now.UnixNano()
	start := max(end-int64(min(w.span, window)), (m.cur-(meterBuckets-1))*width)
	if end-start <= 0 || end < m.cur*width {
		m.addN(now, window, pkts, n)
		return
	}
	// Bucket by bucket, the share of the span up to the bucket's end, less
	// what the buckets before took: the shares add up to the whole. Counts
	// are whole, so the shares are rounded at an offset that moves on
	// with every packet the meter counts (by the golden ratio of the span:
	// evenly spread), so that packets of one each (an sFlow sample at 1 in
	// 1) spread over the span as their number does, rather than all
	// rounding down to the newest bucket.
	span := uint64(end - start)
	off, _ := bits.Mul64(m.sumP*0x9e3779b97f4a7c15, span) // in [0, span)
	pkts, n = min(pkts, math.MaxUint64-1), min(n, math.MaxUint64-1)
	var doneP, doneB uint64
	for idx := start / width; idx <= m.cur; idx++ {
		upTo := uint64(min((idx+1)*width, end) - start)
		p, b := shareAt(pkts, upTo, span, off), shareAt(n, upTo, span, off)
		s := idx % meterBuckets
		was := m.pkts[s]
		m.pkts[s] = sat32(was, p-doneP)
		m.bytes[s] = sat(m.bytes[s], b-doneB)
		m.sumP += uint64(m.pkts[s] - was)
		doneP, doneB = p, b
	}
	m.sumB = sat(m.sumB, n)
	if start/width < m.cur {
		m.settle()
	}
}

// sat32 returns a+b, or the largest uint32 where that is past it.
func sat32(a uint32, b uint64) uint32 {
	return uint32(min(uint64(a)+min(b, math.MaxUint32), math.MaxUint32))
}

// shareAt returns (n·part + off) / whole rounded down, for part ≤ whole and
// off < whole: n's share of part of whole, rounded at off. In 128 bits, so
// that no count overflows; n below 2^64-1 keeps the quotient within 64.
func shareAt(n, part, whole, off uint64) uint64 {
	hi, lo := bits.Mul64(n, part)
	lo, carry := bits.Add64(lo, off, 0)
	q, _ := bits.Div64(hi+carry, lo, whole)
	return q
}

// addN counts pkts packets of n bytes in all at now. The counts saturate:
// telemetry's packets stand for many, and a forged record for any number.
func (m *meter) addN(now time.Time, window time.Duration, pkts, n uint64) {
	m.advance(now, window)
	s := m.cur % meterBuckets
	was := m.pkts[s]
	m.pkts[s] = sat32(was, pkts)
	m.bytes[s] = sat(m.bytes[s], n)
	m.sumP += uint64(m.pkts[s] - was) // what the bucket took: five buckets never overflow it
	m.sumB = sat(m.sumB, n)
}

// subtract removes o's counts from m, bucket by bucket. Both must have been
// advanced to the same time.
func (m *meter) subtract(o *meter) {
	if m.cur != o.cur {
		return
	}
	for i := range m.pkts {
		p, b := min(m.pkts[i], o.pkts[i]), min(m.bytes[i], o.bytes[i])
		m.pkts[i] -= p
		m.bytes[i] -= b
		m.sumP -= min(m.sumP, uint64(p))
		m.sumB -= min(m.sumB, b)
	}
	m.settle()
}

// rate returns packets and bits per second over the window: the higher of
// two readings. One is what the whole window holds over the window's
// length, a count within the window as Suricata's "count N within S
// seconds": an attack's first packets count at once, and its buckets span
// at most the window, so it never reads more than what came within one.
// The other is the median of the completed buckets (all but the newest,
// filling one): exact for a steady rate at any moment, where the count
// reads as low as 4/5 early in a bucket, and for traffic that comes in
// bursts (a capture whose stamps are cut to the second, an sFlow agent's
// flushes) even when a burst's time wanders across a bucket's edge, two
// bursts in one bucket and none in its neighbour. Call advance first.
func (m *meter) rate(window time.Duration) (pps, bps float64) {
	// Both over the window: the median bucket (medP is twice it) times
	// the buckets, and the window's count.
	sec := window.Seconds()
	pps = max(float64(m.medP)*(meterBuckets/2.0), float64(m.sumP)) / sec
	bps = max(float64(m.medB)*(meterBuckets/2.0), float64(m.sumB)) * 8 / sec
	return pps, bps
}

// admission decides which new keys earn an exact entry in a bounded table.
// While few new keys arrive, every key gets one at its first packet, so
// counts are exact. Past a budget of new keys per epoch (a flood of forged
// addresses) a key must first show up again: a count-min sketch counts the
// keys that have no entry, and a key is admitted once its count stands
// clearly above the background that the flood spreads over every counter.
// A random-source flood so stays at one hash and two counter increments per
// packet, and never churns the table.
//
// The sketch is blocked: a key's two counters lie in one cache line, picked
// by its hash, so that a packet of a new key misses the caches once, not
// twice, and 16-bit counters keep the sketch at 64 KiB. Each counter still
// takes two counts of the epoch's total in 2*admissionWidth, as in two rows
// of admissionWidth, and a key's two counters are never the same one.
type admission struct {
	lines    [admissionLines][admissionPerLine]uint16
	epoch    time.Duration
	end      time.Time // end of the current epoch
	total    uint64    // keys counted this epoch
	free     int       // new keys still admitted outright this epoch
	rejected uint64    // packets whose new key was not admitted
}

const (
	admissionBits    = 14
	admissionWidth   = 1 << admissionBits // counters per key's count, as rows
	admissionPerLine = 32                 // a 64-byte cache line of counters
	admissionLines   = 2 * admissionWidth / admissionPerLine
	// admissionFree is the number of new keys admitted outright per epoch.
	admissionFree = 256
)

// admit counts one packet of a key that has no entry and reports whether
// the key should now get one.
func (a *admission) admit(h uint64, now time.Time) bool {
	if !now.Before(a.end) {
		a.lines = [admissionLines][admissionPerLine]uint16{}
		a.total, a.free = 0, admissionFree
		a.end = now.Truncate(a.epoch).Add(a.epoch)
	}
	if a.free > 0 {
		a.free--
		return true
	}
	l, i, j := admissionSlots(h)
	line := &a.lines[l]
	est := min(satInc(&line[i]), satInc(&line[j]))
	a.total++
	if !admitted(est, a.total) {
		a.rejected++
		return false
	}
	return true
}

// admitted reports whether a key counted est times, of total counts this
// epoch, is admitted. The background is the mean count per counter; a key
// is admitted when its count exceeds it by four standard deviations
// (Poisson) and by at least one more packet than its first. A count below
// 2 plus the background, most of them under a flood of new keys, is
// rejected without the square root, in integers, and exactly: then total
// is at least (est-2)*admissionWidth+1, below 2^31 and exact in a
// float64, so 2 plus the background rounds to at least est plus
// 1/admissionWidth, above est, and adding the deviation, never negative,
// never rounds below that.
func admitted(est uint16, total uint64) bool {
	if est < 2 || (uint64(est)-2)*admissionWidth < total {
		return false
	}
	bg := float64(total) / admissionWidth
	return float64(est) >= 2+bg+4*math.Sqrt(bg)
}

// admissionSlots returns the line of the key of hash h and its two
// counters there: the line from the hash's lowest bits, the counters from
// its highest (a table's presence counters take the bits from 18 up), the
// second differing from the first in at least one bit.
func admissionSlots(h uint64) (line, i, j uint64) {
	i = (h >> 48) & (admissionPerLine - 1)
	return h & (admissionLines - 1), i, i ^ max((h>>56)&(admissionPerLine-1), 1)
}

// satInc adds one to *c, unless it is at its largest, and returns it.
func satInc(c *uint16) uint16 {
	if *c < math.MaxUint16 {
		*c++
	}
	return *c
}

// hll is a HyperLogLog distinct counter (Flajolet et al.) with 2^hllBits
// registers. It keeps the sum of 2^-register and the count of zero
// registers up to date, so that an estimate costs O(1).
type hll struct {
	reg   [1 << hllBits]uint8
	sum   float64
	zeros int
}

const hllBits = 10 // 1024 registers: 3.2% standard error

func (h *hll) reset() {
	h.reg = [1 << hllBits]uint8{}
	h.sum = 1 << hllBits
	h.zeros = 1 << hllBits
}

// add counts x and reports whether the estimate changed.
func (h *hll) add(x uint64) bool {
	i := x >> (64 - hllBits)
	r := uint8(bits.LeadingZeros64(x<<hllBits|1<<(hllBits-1))) + 1
	return h.raise(int(i), r)
}

// raise sets register i to r if that is higher, and reports whether it was.
func (h *hll) raise(i int, r uint8) bool {
	old := h.reg[i]
	if r <= old {
		return false
	}
	if old == 0 {
		h.zeros--
	}
	h.sum += math.Ldexp(1, -int(r)) - math.Ldexp(1, -int(old))
	h.reg[i] = r
	return true
}

func (h *hll) estimate() float64 { return hllEstimate(h.sum, h.zeros) }

func hllEstimate(sum float64, zeros int) float64 {
	const m = 1 << hllBits
	e := 0.7213 / (1 + 1.079/m) * m * m / sum
	if e <= 2.5*m && zeros > 0 {
		e = m * math.Log(float64(m)/float64(zeros)) // linear counting
	}
	return e
}

// merge adds o's items to h: the register-wise maximum is the sketch of
// the union.
func (h *hll) merge(o *hll) {
	for i, r := range o.reg {
		h.raise(i, r)
	}
}

// unionEstimate estimates the distinct items of h and o together, without
// changing either.
func (h *hll) unionEstimate(o *hll) float64 {
	var sum float64
	zeros := 0
	for i, r := range h.reg {
		r = max(r, o.reg[i])
		if r == 0 {
			zeros++
		}
		sum += math.Ldexp(1, -int(r))
	}
	return hllEstimate(sum, zeros)
}

// sample is a bottom-k sample of the distinct sources of a window: the k
// sources with the smallest hashes, a uniform sample of the distinct
// sources whatever their rates, each with its exact packet count and
// whether the target's memory knew it (a source enters the sample at its
// first packet of the window or never, because the k-th smallest hash only
// falls, so that is what the memory says at its first packet). It tells
// what share of the sources are new ones that sent at most two packets.
type sample struct {
	h   [sampleK]uint64
	n   [sampleK]uint32
	nov [sampleK]novelty
	len int
	max int // index of the largest hash, once full
}

const sampleK = 64

// novelty is what a target's memory says of a source.
type novelty uint8

const (
	noveltyUnknown novelty = iota // the memory cannot tell: warming up, or a hash it does not keep
	noveltyNew
	noveltyKnown
)

func (s *sample) reset() { s.len = 0 }

// add counts a packet of the source hashed h; nov is what the memory says
// of it, used if this is its first packet.
func (s *sample) add(h uint64, nov novelty) {
	if s.len == sampleK && h > s.h[s.max] {
		return
	}
	for i := 0; i < s.len; i++ {
		if s.h[i] == h {
			s.n[i]++
			return
		}
	}
	if s.len < sampleK {
		s.h[s.len], s.n[s.len], s.nov[s.len] = h, 1, nov
		s.len++
		if s.len == sampleK {
			s.findMax()
		}
		return
	}
	s.h[s.max], s.n[s.max], s.nov[s.max] = h, 1, nov
	s.findMax()
}

func (s *sample) findMax() {
	s.max = 0
	for i := 1; i < s.len; i++ {
		if s.h[i] > s.h[s.max] {
			s.max = i
		}
	}
}

// lowShare returns the share of sampled sources that sent at most two
// packets.
func (s *sample) lowShare() float64 {
	if s.len == 0 {
		return 0
	}
	low := 0
	for i := 0; i < s.len; i++ {
		if s.n[i] <= 2 {
			low++
		}
	}
	return float64(low) / float64(s.len)
}

// randomShare returns the share of the sampled sources that the memory
// could judge which were new to it and sent at most two packets; judged
// is false when it could judge fewer than a quarter of the sample.
func (s *sample) randomShare() (share float64, judged bool) {
	n, random := 0, 0
	for i := 0; i < s.len; i++ {
		if s.nov[i] == noveltyUnknown {
			continue
		}
		n++
		if s.nov[i] == noveltyNew && s.n[i] <= 2 {
			random++
		}
	}
	if n < sampleK/4 {
		return 0, false
	}
	return float64(random) / float64(n), true
}

// tally counts packets and bytes per address (the reflectors of a victim,
// the hosts of a prefix) in an open-addressing table that grows from
// tallyMin to tallyMax slots: exact for the first 3/4·tallyMax addresses.
// Past that the table keeps its addresses and counts, and a HyperLogLog
// seeded from it counts the distinct addresses; the busiest ones nearly
// always arrive among the first, so the top of the list stays right. The
// slots past tallyMin, and the HyperLogLog, come from a slotPool that the
// tallies of one detector share: when it runs dry, a tally stays as it is
// and counts on in its HyperLogLog, if it has one.
type tally struct {
	tab     []reflector // slot hash 0: empty
	n       int         // addresses in tab (removed ones included)
	gone    int         // addresses removed
	top     uint64      // packets of the busiest address
	extra   *hll        // distinct addresses once tab is full; kept for reuse
	spilled bool        // tab is full: extra counts
}

// slotPool is the reflector slots that the tallies of a detector may still
// grow into. The slots of a tally stay its own when its entry is reused;
// they come back only when the entry is dropped.
type slotPool struct {
	left    int    // slots still free
	refused uint64 // growths refused for want of slots
}

// hllSlots is what a tally's HyperLogLog costs, in reflector slots.
const hllSlots = (int(unsafe.Sizeof(hll{})) + int(unsafe.Sizeof(reflector{})) - 1) / int(unsafe.Sizeof(reflector{}))

func (p *slotPool) take(n int) bool {
	if n > p.left {
		p.refused++
		return false
	}
	p.left -= n
	return true
}

// held returns the slots a tally took from its pool.
func (t *tally) held() int {
	n := max(len(t.tab)-tallyMin, 0)
	if t.extra != nil {
		n += hllSlots
	}
	return n
}

const (
	tallyMin = 4
	tallyMax = 128
)

// reflector is one address that sent toward a victim (or one host of a
// prefix) with its counts.
type reflector struct {
	hash    uint64
	addr    netip.Addr
	port    uint16 // the service port of its latest packet
	removed bool
	packets uint64
	bytes   uint64
}

// reset empties the tally, keeping its buffers.
func (t *tally) reset() {
	clear(t.tab)
	t.n, t.gone, t.top = 0, 0, 0
	t.spilled = false
}

// add counts a packet of weight w (its packets and bytes whole) from ap,
// growing into pool.
func (t *tally) add(ap netip.AddrPort, w weight, pool *slotPool) {
	a := ap.Addr()
	h := hashAddr(a, seedReflector) | 1
	if t.tab == nil {
		t.tab = make([]reflector, tallyMin)
	}
	r := t.find(h, a)
	if r == nil || r.hash == 0 {
		if t.spilled || (t.n+1)*4 > len(t.tab)*3 && !t.grow(pool) {
			t.full(h, pool)
			return
		}
		r = t.find(h, a)
		*r = reflector{hash: h, addr: a}
		t.n++
	}
	if r.removed {
		r.removed = false
		t.gone--
	}
	r.packets = sat(r.packets, w.packets)
	r.bytes = sat(r.bytes, w.bytes)
	r.port = ap.Port()
	t.top = max(t.top, r.packets)
}

// find returns a's slot or the empty slot where it belongs; nil only when
// the table has no room left.
func (t *tally) find(h uint64, a netip.Addr) *reflector {
	mask := uint64(len(t.tab) - 1)
	for i, k := h&mask, 0; k < len(t.tab); i, k = (i+1)&mask, k+1 {
		r := &t.tab[i]
		if r.hash == 0 || (r.hash == h && r.addr == a) {
			return r
		}
	}
	return nil
}

// grow doubles the table up to tallyMax slots and reports whether it did.
func (t *tally) grow(pool *slotPool) bool {
	if len(t.tab) >= tallyMax || !pool.take(len(t.tab)) {
		return false
	}
	old := t.tab
	t.tab = make([]reflector, 2*len(old))
	for _, r := range old {
		if r.hash != 0 {
			*t.find(r.hash, r.addr) = r
		}
	}
	return true
}

// full counts an address that found no room in the table.
func (t *tally) full(h uint64, pool *slotPool) {
	if !t.spilled {
		if t.extra == nil {
			if !pool.take(hllSlots) {
				return // counted nowhere: the count falls short
			}
			t.extra = new(hll)
		}
		t.extra.reset()
		for _, r := range t.tab {
			if r.hash != 0 && !r.removed {
				t.extra.add(r.hash)
			}
		}
		t.spilled = true
	}
	t.extra.add(h)
}

// remove takes a's counts out (a prefix's host that got its own incident).
func (t *tally) remove(a netip.Addr) {
	if t.tab == nil {
		return
	}
	r := t.find(hashAddr(a, seedReflector)|1, a)
	if r == nil || r.hash == 0 || r.removed {
		return
	}
	r.removed, r.packets, r.bytes = true, 0, 0
	t.gone++
	t.top = 0
	for _, x := range t.tab {
		t.top = max(t.top, x.packets)
	}
}

// count returns the number of distinct addresses.
func (t *tally) count() int {
	if t.spilled {
		return max(int(math.Round(t.extra.estimate())), t.n-t.gone)
	}
	return t.n - t.gone
}

// sorted returns the addresses by packets, most first (ties by address).
func (t *tally) sorted(dst []reflector) []reflector {
	dst = dst[:0]
	for _, r := range t.tab {
		if r.hash != 0 && !r.removed {
			dst = append(dst, r)
		}
	}
	slices.SortFunc(dst, func(a, b reflector) int {
		if a.packets != b.packets {
			return cmp.Compare(b.packets, a.packets)
		}
		return a.addr.Compare(b.addr)
	})
	return dst
}

// bitmapCount estimates the distinct items hashed into a bitmap of m bits
// (linear counting, Whang et al.).
func bitmapCount(set, m int) float64 {
	if set >= m {
		set = m - 1
	}
	return -float64(m) * math.Log(1-float64(set)/float64(m))
}
