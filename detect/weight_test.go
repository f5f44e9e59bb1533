package detect

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/echowatch/echowatch/capture"
)

// TestWeight: what a packet stands for, and the share of it that a meter
// of a 5 s window counts.
func TestWeight(t *testing.T) {
	const window = 5 * time.Second
	for _, tc := range []struct {
		name           string
		length         int
		sample         capture.Sampled
		packets, bytes uint64 // weigh
		inP, inB       uint64 // within the window
	}{
		{"captured: one packet of its length", 142, capture.Sampled{}, 1, 142, 1, 142},
		{"sFlow sample, 1 in 1000: a moment", 142,
			capture.Sampled{Rate: 1000, Packets: 1000, Bytes: 142_000}, 1000, 142_000, 1000, 142_000},
		{"record shorter than the window: whole", 142,
			capture.Sampled{Record: true, Rate: 1, Packets: 300, Bytes: 42_600, Span: 2 * time.Second}, 300, 42_600, 300, 42_600},
		{"record as long as the window: whole", 142,
			capture.Sampled{Record: true, Rate: 1, Packets: 300, Bytes: 42_600, Span: window}, 300, 42_600, 300, 42_600},
		{"record of 100 s: one window at its average rate", 142,
			capture.Sampled{Record: true, Rate: 1, Packets: 50_000, Bytes: 7_100_000, Span: 100 * time.Second}, 50_000, 7_100_000, 2500, 355_000},
		{"share rounds to the nearest", 142,
			capture.Sampled{Record: true, Rate: 1, Packets: 7, Bytes: 10, Span: 10 * time.Second}, 7, 10, 4, 5},
		{"one packet over an hour still counts one", 142,
			capture.Sampled{Record: true, Rate: 1, Packets: 1, Bytes: 142, Span: time.Hour}, 1, 142, 1, 1},
		{"forged huge counts do not overflow", 142,
			capture.Sampled{Record: true, Rate: 1, Packets: math.MaxUint64, Bytes: math.MaxUint64, Span: 10 * time.Second},
			math.MaxUint64, math.MaxUint64, 1 << 63, 1 << 63},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &capture.Packet{Length: tc.length, Sample: tc.sample}
			w := weigh(p)
			if w.packets != tc.packets || w.bytes != tc.bytes {
				t.Errorf("weigh: %d packets %d bytes, want %d, %d", w.packets, w.bytes, tc.packets, tc.bytes)
			}
			if pk, by := w.within(window); pk != tc.inP || by != tc.inB {
				t.Errorf("within %v: %d packets %d bytes, want %d, %d", window, pk, by, tc.inP, tc.inB)
			}
		})
	}
	if sat(math.MaxUint64-1, 2) != math.MaxUint64 || sat(1, 2) != 3 {
		t.Error("sat")
	}
}

// TestMeterSaturates: a meter fed counts that overflow saturates (a
// bucket's packets at 2^32-1, bytes at 2^64-1), and its sums never wrap
// when the buckets leave the window.
func TestMeterSaturates(t *testing.T) {
	const window = 5 * time.Second
	var m meter
	m.addN(at(0), window, math.MaxUint64-5, math.MaxUint64-5)
	m.addN(at(time.Second), window, 10, 10)
	if m.sumP != math.MaxUint32+10 || m.sumB != math.MaxUint64 {
		t.Fatalf("sums %d packets %d bytes, want a bucket's packets and 10, and bytes saturated", m.sumP, m.sumB)
	}
	if pps, bps := m.rate(window); pps != float64(m.sumP)/window.Seconds() || bps != float64(m.sumB)*8/window.Seconds() {
		t.Errorf("saturated: %v pps %v bit/s", pps, bps)
	}
	m.advance(at(5*time.Second+time.Millisecond), window) // the first bucket leaves
	if m.sumP > 10 {
		t.Errorf("after the first bucket left: %d packets", m.sumP)
	}
	m.advance(at(6*time.Second+time.Millisecond), window) // and the second
	if m.sumP != 0 || m.sumB != 0 {
		t.Errorf("after both left: %d packets %d bytes", m.sumP, m.sumB)
	}
}

// TestMeterRate: a meter reads a steady rate exactly at any moment, and
// traffic that comes in bursts (a second's packets at once, as an sFlow
// agent sends its samples) at its true rate: at any phase in the second,
// with the bursts' times wandering across the buckets' edges, or, when the
// packets say the time they took, one burst late and sent with the next.
// It counts an attack's first packets at once, as a count within the
// window, and a flood that rises over quiet traffic at its rate.
func TestMeterRate(t *testing.T) {
	const window = 5 * time.Second
	// The lowest and highest readings, every millisecond once the window
	// is full, over 30 s of bursts at the given times (ms) of n packets of
	// 100 bytes each. spread: each burst's packets took the time since
	// the burst before (capture's sFlow reader says so in Sample.Span).
	run := func(times []int, n []uint64, spread bool) (lo, hi float64) {
		var m meter
		lo = math.Inf(1)
		next, prev := 0, 0
		for ms := 0; ms < 30000; ms++ {
			now := at(time.Duration(ms) * time.Millisecond)
			for ; next < len(times) && times[next] <= ms; next++ {
				w := weight{packets: n[next], bytes: n[next] * 100}
				if spread && next > 0 {
					w.span = time.Duration(ms-prev) * time.Millisecond
				}
				if spread {
					// As sFlow at 1 in 1 says it: a sample a packet.
					for range w.packets {
						m.add(now, window, weight{packets: 1, bytes: 100, span: w.span})
					}
				} else {
					m.add(now, window, w)
				}
				prev = ms
			}
			m.advance(now, window)
			pps, bps := m.rate(window)
			if math.Abs(bps-pps*100*8) > 0.02*bps {
				t.Fatalf("at %v: %v bit/s for %v pps of 100 bytes", now, bps, pps)
			}
			if ms >= 6000 {
				lo, hi = min(lo, pps), max(hi, pps)
			}
		}
		return lo, hi
	}
	// every returns the times of bursts every period ms from from, each
	// moved by up to jitter ms either way, and their sizes: size each, and
	// 0 and 2·size for the bursts at late, which the next one carries.
	every := func(period, from, jitter int, size uint64, late ...int) ([]int, []uint64) {
		var times []int
		var n []uint64
		rng := uint32(1)
		for ms := from; ms < 30000; ms += period {
			rng = rng*1664525 + 1013904223
			d := 0
			if jitter > 0 {
				d = int(rng>>16)%(2*jitter+1) - jitter
			}
			times, n = append(times, max(0, ms+d)), append(n, size)
		}
		for _, i := range late {
			n[i], n[i+1] = 0, 2*size
		}
		return times, n
	}
	cases := []struct {
		name   string
		times  []int
		n      []uint64
		spread bool
		lo, hi float64
	}{
		{"steady 100 pps", nil, nil, false, 100, 100},
		{"100 packets at once, on the second", nil, nil, false, 100, 100},
		{"100 packets at once, 10 ms into the second", nil, nil, false, 100, 100},
		{"100 packets at once, 990 ms into the second", nil, nil, false, 100, 100},
		{"100 packets at once, every 999 ms", nil, nil, false, 100, 100.2},
		// A burst late, with nothing to say so, counts where it came: for a
		// moment the window holds six.
		{"100 packets at once, one burst late", nil, nil, false, 100, 120},
		{"100 packets at once, every second give or take 100 ms", nil, nil, true, 90, 110},
		{"100 packets at once, every second give or take 10 ms", nil, nil, true, 98, 101},
		{"100 packets at once, give or take 10 ms, one burst late", nil, nil, true, 49, 101},
	}
	cases[0].times, cases[0].n = every(10, 0, 0, 1)
	cases[1].times, cases[1].n = every(1000, 0, 0, 100)
	cases[2].times, cases[2].n = every(1000, 10, 0, 100)
	cases[3].times, cases[3].n = every(1000, 990, 0, 100)
	cases[4].times, cases[4].n = every(999, 500, 0, 100)
	cases[5].times, cases[5].n = every(1000, 680, 0, 100, 14)
	cases[6].times, cases[6].n = every(1000, 0, 100, 100)
	cases[7].times, cases[7].n = every(1000, 0, 10, 100)
	cases[8].times, cases[8].n = every(1000, 0, 10, 100, 14)
	for _, c := range cases {
		if lo, hi := run(c.times, c.n, c.spread); lo < c.lo || hi > c.hi {
			t.Errorf("%s: reads %.1f to %.1f pps, want %v to %v", c.name, lo, hi, c.lo, c.hi)
		}
	}
	// A flood of 10,000 pps for 1.5 s over 100 pps: the window holds it.
	var f meter
	for ms := 0; ms < 9000; ms++ {
		now := at(time.Duration(ms) * time.Millisecond)
		n := uint64(0)
		if ms%10 == 0 {
			n = 1
		}
		if ms >= 7500 {
			n += 10
		}
		f.addN(now, window, n, n)
	}
	if pps, _ := f.rate(window); pps < 15_000/5 || pps > 16_000/5 {
		t.Errorf("1.5 s of a 10,000 pps flood over 100 pps: %v pps, want the window's count, about %v", pps, (15_000+400)/5)
	}
	// An attack's first packets: 250 within the window read 50 pps at once.
	var m meter
	m.addN(at(100*time.Millisecond), window, 250, 250)
	if pps, _ := m.rate(window); pps != 50 {
		t.Errorf("250 packets in the newest bucket read %v pps, want 50 (a count within 5 s)", pps)
	}
}

// TestMeterKeepsItsSums: whatever comes (packets with and without a span,
// counts that saturate, time that jumps ahead or goes back), a meter's
// running sums are its buckets' and the median it keeps is its completed
// buckets', so that rate reads what the buckets hold.
func TestMeterKeepsItsSums(t *testing.T) {
	const window = 5 * time.Second
	rng := rand.New(rand.NewPCG(4, 5))
	var m, o meter
	now := int64(1e12)
	for step := range 200_000 {
		switch r := rng.IntN(100); {
		case r < 2:
			now += rng.Int64N(int64(3 * window)) // a gap
		case r < 4:
			now -= rng.Int64N(int64(window)) // back in time
		default:
			now += rng.Int64N(int64(50 * time.Millisecond))
		}
		n := rng.Uint64N(1000)
		if rng.IntN(1000) == 0 {
			n = math.MaxUint64 - rng.Uint64N(10) // a forged record
		}
		w := weight{packets: n, bytes: n * 100}
		if rng.IntN(2) == 0 {
			w.span = time.Duration(rng.Int64N(int64(2 * window)))
		}
		m.add(time.Unix(0, now), window, w)
		if rng.IntN(50) == 0 { // subtract another meter advanced alike
			o.add(time.Unix(0, now), window, weight{packets: rng.Uint64N(100), bytes: 1})
			m.advance(time.Unix(0, now), window)
			o.advance(time.Unix(0, now), window)
			m.subtract(&o)
		}
		m.advance(time.Unix(0, now), window)
		var sP uint64
		for _, p := range m.pkts {
			sP += uint64(p)
		}
		if sP != m.sumP {
			t.Fatalf("step %d: sum %d, buckets %d", step, m.sumP, sP)
		}
		want := m
		want.settle()
		if want.medP != m.medP || want.medB != m.medB {
			t.Fatalf("step %d: kept median %d/%d, the buckets' %d/%d", step, m.medP, m.medB, want.medP, want.medB)
		}
		if pps, bps := m.rate(window); pps < 0 || bps < 0 || math.IsNaN(pps) || math.IsInf(bps, 0) {
			t.Fatalf("step %d: %v pps %v bit/s", step, pps, bps)
		}
	}
}

// TestMeterAdvance holds advance, which sees a time in the newest bucket
// without dividing, to the rule it stands for: the bucket is the time
// divided by the bucket's width (advanceTo that). Meters of a few windows
// go through random times from 1970, in ordinary years and near the end
// of int64's, forwards, backwards and by jumps, and from before 1970
// (which never move a meter, by either way); after each advance, one
// advanced by the rule alone must be the same.
func TestMeterAdvance(t *testing.T) {
	byRule := func(m *meter, now time.Time, window time.Duration) {
		m.advanceTo(now.UnixNano() / int64(window/meterBuckets))
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for _, window := range []time.Duration{5 * time.Second, time.Second, 7 * time.Millisecond, 3 * time.Hour} {
		for _, start := range []int64{0, -int64(window) / 3, 1_700_000_000e9, math.MaxInt64 - int64(window)*20, math.MinInt64 + int64(window)*20} {
			var m, r meter
			now := start
			for step := range 20_000 {
				// Kept 4 windows from int64's ends, so no step wraps.
				lo, hi := math.MinInt64+4*int64(window), math.MaxInt64-4*int64(window)
				switch k := rng.IntN(100); {
				case k < 3:
					now = min(now, hi-3*int64(window)) + rng.Int64N(int64(3*window)) // a gap
				case k < 6:
					now = max(now, lo+2*int64(window)) - rng.Int64N(int64(2*window)) // back in time
				default:
					now = min(now, hi-int64(window)) + rng.Int64N(int64(window/20))
				}
				at := time.Unix(0, now)
				n := rng.Uint64N(50)
				m.advance(at, window)
				byRule(&r, at, window)
				if m != r {
					t.Fatalf("window %v, from %d, step %d, time %d: advanced to %+v, the rule to %+v", window, start, step, now, m, r)
				}
				m.addN(at, window, n, n*60)
				r.addN(at, window, n, n*60) // addN advances m's way: the same as the rule's here
			}
		}
		// Times at the edges of the buckets, around 1970 and now.
		w := int64(window / meterBuckets)
		for _, b := range []int64{-3, -1, 0, 1, 2, 1_700_000_000e9 / w} {
			for _, d := range []int64{-w - 1, -w, -1, 0, 1, w - 1, w, w + 1, 2 * w, 5*w - 1, 5 * w, 6 * w} {
				var m, r meter
				first := time.Unix(0, b*w)
				m.addN(first, window, 1, 60)
				byRule(&r, first, window)
				r.addN(first, window, 1, 60)
				at := time.Unix(0, b*w+d)
				m.advance(at, window)
				byRule(&r, at, window)
				if m != r {
					t.Fatalf("window %v, bucket %d, then %+d ns: advanced to %+v, the rule to %+v", window, b, d, m, r)
				}
			}
		}
	}
}
