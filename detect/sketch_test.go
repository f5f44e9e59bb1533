package detect

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// hllStdErr is the relative standard error of the HyperLogLog: 1.04/√m.
var hllStdErr = 1.04 / math.Sqrt(1<<hllBits)

// distinctAddr returns the i-th of a sequence of distinct addresses,
// IPv4 and IPv6 in turn, scattered over the address space.
func distinctAddr(i uint32) netip.Addr {
	x := scatter32(i)
	if i%2 == 0 {
		return netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)})
	}
	return netip.AddrFrom16([16]byte{0x26, 0x00, 12: byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)})
}

// scatter32 is a bijection of uint32 that makes a counter look random.
func scatter32(x uint32) uint32 {
	x ^= x >> 16
	x *= 0x7feb352d
	x ^= x >> 15
	x *= 0x846ca68b
	return x ^ x>>16
}

// TestHLLAccuracy counts known numbers of distinct addresses, each seen
// several times, and compares the estimate with the exact count: within
// three standard errors (9.75%), the bound that a correct HyperLogLog of
// 1024 registers keeps 99.7% of the time.
func TestHLLAccuracy(t *testing.T) {
	for _, n := range []uint32{1_000, 100_000, 5_000_000} {
		if n > 1_000_000 && testing.Short() {
			continue
		}
		var h hll
		h.reset()
		for i := range n {
			a := distinctAddr(i)
			h.add(hashAddr(a, seedSource))
			h.add(hashAddr(a, seedSource)) // repeats do not count
		}
		est := h.estimate()
		err := (est - float64(n)) / float64(n)
		t.Logf("%d distinct: estimate %.0f (%+.2f%%)", n, est, 100*err)
		if math.Abs(err) > 3*hllStdErr {
			t.Errorf("%d distinct: estimate %.0f is %+.1f%% off, beyond 3 standard errors", n, est, 100*err)
		}
	}
}

// TestHLLUnbiased averages the error of many independent sketches: a
// HyperLogLog that under- or over-counts by a constant factor fails this
// long before a single estimate looks wrong.
func TestHLLUnbiased(t *testing.T) {
	const n, trials = 20_000, 50
	var sum float64
	for trial := range uint32(trials) {
		var h hll
		h.reset()
		for i := range uint32(n) {
			h.add(hashAddr(distinctAddr(trial*n+i), seedSource))
		}
		sum += (h.estimate() - n) / n
	}
	// The mean of 50 errors has a standard error of 3.25%/√50 = 0.46%.
	if bias := sum / trials; math.Abs(bias) > 0.015 {
		t.Errorf("mean error %+.2f%% over %d sketches of %d", 100*bias, trials, n)
	}
}

// TestHLLMerge checks that merging the sketches of parts gives exactly the
// sketch of the whole, as the spoofed-flood detector relies on to count an
// incident's sources across its windows.
func TestHLLMerge(t *testing.T) {
	var whole, merged, part hll
	whole.reset()
	merged.reset()
	for w := range uint32(5) {
		part.reset()
		for i := range uint32(20_000) {
			x := hashAddr(distinctAddr(w*15_000+i), seedSource) // parts overlap
			whole.add(x)
			part.add(x)
		}
		if w < 4 {
			merged.merge(&part)
		}
	}
	if got, want := merged.unionEstimate(&part), whole.estimate(); got != want {
		t.Fatalf("union of the parts estimates %.0f, the whole %.0f", got, want)
	}
	merged.merge(&part)
	if merged != whole {
		t.Fatalf("merged sketch differs from the sketch of the whole")
	}
}

// TestHashAddr holds hashAddr, which reads an IPv4 address as its four
// bytes, to the hash of its 16-byte IPv4-mapped form, and to that of an
// IPv4-mapped IPv6 address (the same bytes), for random addresses and seeds.
func TestHashAddr(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	be := binary.BigEndian
	want := func(a netip.Addr, seed uint64) uint64 {
		b := a.As16()
		return mix(mix(seed^be.Uint64(b[:8])) ^ be.Uint64(b[8:]))
	}
	for range 100_000 {
		seed := rng.Uint64()
		var b4 [4]byte
		be.PutUint32(b4[:], rng.Uint32())
		var b16 [16]byte
		be.PutUint64(b16[:8], rng.Uint64())
		be.PutUint64(b16[8:], rng.Uint64())
		v4 := netip.AddrFrom4(b4)
		for _, a := range []netip.Addr{v4, netip.AddrFrom16(v4.As16()), netip.AddrFrom16(b16)} {
			if got := hashAddr(a, seed); got != want(a, seed) {
				t.Fatalf("hashAddr(%v, %#x) = %#x, want %#x", a, seed, got, want(a, seed))
			}
		}
		if hashAddr(v4, seed) != hashAddr(netip.AddrFrom16(v4.As16()), seed) {
			t.Fatalf("%v and its IPv4-mapped form hash apart", v4)
		}
	}
}

// TestAdmission floods the sketch with a million keys seen once each, and
// twenty times along the way sends ten new keys again and again: after the
// free budget, the flood's keys are turned away (a few in a thousand may
// pass, the sketch's error), and a repeated key gets in within a few dozen
// packets, whatever background the flood has built. A new epoch starts
// afresh.
func TestAdmission(t *testing.T) {
	a := &admission{epoch: time.Minute}
	now := time.Unix(1_700_000_000, 0)
	for i := range admissionFree {
		if !a.admit(hashAddr(distinctAddr(uint32(i)), 7), now) {
			t.Fatalf("key %d of the free budget turned away", i)
		}
	}
	const flood, rounds, repeated = 1_000_000, 20, 10
	admitted, most := 0, 0 // flood keys let in; packets a repeated key needed
	for i := range flood {
		if a.admit(hashAddr(distinctAddr(uint32(admissionFree+i)), 7), now) {
			admitted++
		}
		if i%(flood/rounds) != flood/rounds-1 {
			continue
		}
		// The background is now total/admissionWidth per counter, up to
		// 61, and a key needs about 2+4√61 ≈ 33 counts above it.
		for k := range repeated {
			h := hashAddr(distinctAddr(uint32(1<<31+i+k)), 7)
			n := 1
			for !a.admit(h, now) {
				if n++; n > 80 {
					t.Fatalf("a repeated key not admitted in 80 packets with %d keys counted", a.total)
				}
			}
			most = max(most, n)
		}
	}
	if admitted > flood/200 {
		t.Errorf("%d of %d keys seen once admitted, want under 0.5%%", admitted, flood)
	}
	if most < 20 {
		t.Errorf("a repeated key got in after %d packets at most: the background does not count", most)
	}
	t.Logf("flood keys admitted: %d of %d; packets a repeated key needed, at most: %d", admitted, flood, most)

	if !a.admit(hashAddr(distinctAddr(0), 7), now.Add(time.Minute)) || a.total != 0 || a.free != admissionFree-1 {
		t.Errorf("a new epoch: total %d, free %d, want the sketch empty and the budget whole", a.total, a.free)
	}
}

// A key's two counters are two counters of its line, and a counter stops
// at its largest.
func TestAdmissionCounters(t *testing.T) {
	for x := range uint64(1 << 16) {
		h := mix(x)
		line, i, j := admissionSlots(h)
		if line >= admissionLines || i == j || i >= admissionPerLine || j >= admissionPerLine {
			t.Fatalf("hash %#x: line %d, counters %d and %d", h, line, i, j)
		}
	}
	c := uint16(math.MaxUint16 - 1)
	if satInc(&c) != math.MaxUint16 || satInc(&c) != math.MaxUint16 {
		t.Errorf("counter past its largest: %d", c)
	}
}

// TestAdmitted holds the admission rule's integer shortcut to the rule it
// stands for, count by count, over totals from an empty epoch to far past
// a flood's, and at the counters' ceiling.
func TestAdmitted(t *testing.T) {
	rule := func(est uint16, total uint64) bool {
		bg := float64(total) / admissionWidth
		return float64(est) >= 2+bg+4*math.Sqrt(bg)
	}
	check := func(est uint16, total uint64) {
		if got, want := admitted(est, total), rule(est, total); got != want {
			t.Fatalf("count %d of total %d: admitted %v, the rule says %v", est, total, got, want)
		}
	}
	for total := uint64(0); total < 1<<22; total += 1 + total/4096 {
		for est := range uint16(600) {
			check(est, total)
		}
	}
	for _, total := range []uint64{1 << 30, 1<<40 + 3, 1<<52 - 1, math.MaxUint64 / 2} {
		for _, est := range []uint16{0, 1, 2, 3, 1000, math.MaxUint16 - 1, math.MaxUint16} {
			check(est, total)
		}
	}
	// Where the threshold crosses a whole count, both sides of it.
	for total := uint64(1); total < 1<<24; total *= 3 {
		bg := float64(total) / admissionWidth
		thr := uint16(min(math.Ceil(2+bg+4*math.Sqrt(bg)), math.MaxUint16))
		for _, est := range []uint16{thr - 1, thr, min(thr+1, math.MaxUint16)} {
			check(est, total)
		}
	}
}
