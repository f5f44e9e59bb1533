package detect

import (
	"math"
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

// TestMeterSaturates: a meter fed counts that overflow saturates, and its
// sums never wrap when the buckets leave the window.
func TestMeterSaturates(t *testing.T) {
	const window = 5 * time.Second
	var m meter
	m.addN(at(0), window, math.MaxUint64-5, math.MaxUint64-5)
	m.addN(at(time.Second), window, 10, 10)
	if m.sumP != math.MaxUint64 {
		t.Fatalf("sum %d, want saturated", m.sumP)
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
