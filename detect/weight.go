package detect

import (
	"math"
	"math/bits"
	"time"

	"github.com/echowatch/echowatch/capture"
)

// Packets that stand for many. A captured packet is one packet of its
// length; a packet of router telemetry (capture.Sampled) stands for what
// the router counted: an sFlow sample for the sampling rate's packets, a
// NetFlow or IPFIX record for its flow's packets and bytes, the sampling
// rate applied. Detection counts every packet by its weight, so that a
// victim seen through sFlow at 1 in 1000 reaches the same thresholds as
// one seen on a tap. Distinct counts (HyperLogLogs, a target's memory of
// sources, the sample of sources) are not weighted: a sampled packet is
// one observation of its source, and nothing says which others it stands
// for.

// weight is what one packet stands for.
type weight struct {
	packets, bytes uint64
	// span is how long those packets took (a flow record's duration); 0
	// for packets of one moment.
	span time.Duration
}

// onePacket is the weight of a captured packet of n bytes on the wire.
func onePacket(n int) weight { return weight{packets: 1, bytes: uint64(n)} }

// weigh returns what p stands for.
func weigh(p *capture.Packet) weight {
	if p.Sample.Packets == 0 {
		return onePacket(p.Length)
	}
	return weight{packets: p.Sample.Packets, bytes: p.Sample.Bytes, span: p.Sample.Span}
}

// within returns the packets and bytes of w that a meter of the given
// window counts at the packet's time: all of them, unless they took
// longer than the window, and then the share of one window at their
// average rate (packets·window/span). A flow record arrives after its
// traffic, and detection's clock never runs backward, so its packets
// cannot be put back where they fell; credited whole at once, a record of
// ten minutes would read as a flood ten minutes long squeezed into one
// window. Crediting its average rate for one window measures the flow as
// it ran (FastNetMon divides a flow's counts by its duration alike). The
// shares round to the nearest, and never round a count to nothing: a
// record of one packet still counts one.
func (w weight) within(window time.Duration) (packets, bytes uint64) {
	if w.span <= window || window <= 0 {
		return w.packets, w.bytes
	}
	return scaled(w.packets, window, w.span), scaled(w.bytes, window, w.span)
}

// scaled returns n·part/whole rounded to the nearest, at least 1 when n is
// not 0, for 0 < part < whole; in 128 bits, so that no count overflows.
func scaled(n uint64, part, whole time.Duration) uint64 {
	if n == 0 {
		return 0
	}
	// The quotient is at most n (part < whole): it cannot overflow.
	return max(shareAt(n, uint64(part), uint64(whole), uint64(whole)/2), 1)
}

// sat returns a+b, or the largest uint64 where that overflows: counts of
// packets that stand for many saturate rather than wrap.
func sat(a, b uint64) uint64 {
	s, carry := bits.Add64(a, b, 0)
	if carry != 0 {
		return math.MaxUint64
	}
	return s
}
