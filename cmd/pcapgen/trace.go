package main

import (
	"bytes"
	"cmp"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// epoch is time zero of every committed capture: packet times are offsets
// from it, so nothing depends on when the generator runs.
var epoch = time.Date(2024, 3, 19, 12, 0, 0, 0, time.UTC)

// seed is the first PCG seed word of every generator; the second is a hash
// of the capture's name, so adding or reordering captures does not change
// the others.
const seed = 0x6563686f77617463 // "echowatc"

// newRand returns the pseudo-random source of the capture called name.
func newRand(name string) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(name))
	return rand.New(rand.NewPCG(seed, h.Sum64()))
}

// defaultSnaplen is tcpdump's default snap length.
const defaultSnaplen = 262144

// trace collects the frames of one Ethernet capture in any order and writes
// them sorted by time. Frames added at the same instant keep the order in
// which they were added.
type trace struct {
	rng     *rand.Rand
	b       *builder
	snaplen uint32
	recs    []record
	// stamp, when set, is the time a frame's record says it was taken at
	// (a capture whose clock misbehaves); records stay in true time order.
	stamp func(at time.Duration) time.Time
}

type record struct {
	at   time.Duration // since epoch
	data []byte
}

func newTrace(name string, snaplen uint32) *trace {
	if snaplen == 0 {
		snaplen = defaultSnaplen
	}
	return &trace{rng: newRand(name), b: newBuilder(), snaplen: snaplen}
}

// add records a copy of frame at time at.
func (t *trace) add(at time.Duration, frame []byte) {
	t.recs = append(t.recs, record{at: at, data: bytes.Clone(frame)})
}

// udp adds one UDP datagram.
func (t *trace) udp(at time.Duration, p pkt) { t.add(at, t.b.udp(p)) }

// tcp adds one TCP segment.
func (t *trace) tcp(at time.Duration, p pkt, flags tcpFlags, seq, ack uint32, window uint16) {
	t.add(at, t.b.tcp(p, flags, seq, ack, window))
}

// fragments adds one UDP datagram cut into IPv4 or IPv6 fragments for the
// given MTU, sent back to back 12 µs apart (a 1500-byte frame at 1 Gbit/s).
func (t *trace) fragments(at time.Duration, p pkt, mtu int) {
	t.b.udpFragments(p, mtu, func(i int, frame []byte) {
		t.add(at+time.Duration(i)*12*time.Microsecond, frame)
	})
}

// id returns a random IPv4 identification.
func (t *trace) id() uint32 { return t.rng.Uint32() & 0xffff }

// span returns the time of the first and the last frame.
func (t *trace) span() (first, last time.Duration) {
	if len(t.recs) == 0 {
		return 0, 0
	}
	first, last = t.recs[0].at, t.recs[0].at
	for _, r := range t.recs {
		first, last = min(first, r.at), max(last, r.at)
	}
	return first, last
}

// pcap returns the capture as a classic little-endian, microsecond pcap file
// of Ethernet frames, each cut to the snap length.
func (t *trace) pcap() ([]byte, error) {
	slices.SortStableFunc(t.recs, func(a, b record) int { return cmp.Compare(a.at, b.at) })
	var out bytes.Buffer
	w := pcapgo.NewWriter(&out)
	if err := w.WriteFileHeader(t.snaplen, layers.LinkTypeEthernet); err != nil {
		return nil, err
	}
	for _, r := range t.recs {
		n := min(len(r.data), int(t.snaplen))
		ts := epoch.Add(r.at)
		if t.stamp != nil {
			ts = t.stamp(r.at)
		}
		ci := gopacket.CaptureInfo{Timestamp: ts, CaptureLength: n, Length: len(r.data)}
		if err := w.WritePacket(ci, r.data[:n]); err != nil {
			return nil, err
		}
	}
	return out.Bytes(), nil
}

// spread returns n times in [from, to): one per equal slot, at a random
// point inside it, so counts are exact and the rate is smooth.
func spread(rng *rand.Rand, from, to time.Duration, n int) []time.Duration {
	ts := make([]time.Duration, n)
	slot := float64(to-from) / float64(n)
	for i := range ts {
		ts[i] = from + time.Duration((float64(i)+rng.Float64())*slot)
	}
	return ts
}

// slot is one packet of a schedule: when, and which sender.
type slot struct {
	at  time.Duration
	who int
}

// schedule spreads sum(counts) packets over [from, to), sender i sending
// counts[i] of them in a random order.
func schedule(rng *rand.Rand, counts []int, from, to time.Duration) []slot {
	who := deck(rng, counts)
	ts := spread(rng, from, to, len(who))
	s := make([]slot, len(who))
	for i := range s {
		s[i] = slot{at: ts[i], who: who[i]}
	}
	return s
}

// deck returns a shuffled slice holding index i counts[i] times: who sends
// each packet when every sender's total is fixed.
func deck(rng *rand.Rand, counts []int) []int {
	var d []int
	for i, n := range counts {
		for range n {
			d = append(d, i)
		}
	}
	rng.Shuffle(len(d), func(i, j int) { d[i], d[j] = d[j], d[i] })
	return d
}

// descending splits total into n strictly decreasing counts, the first
// about twice the last: senders whose ranking by packets is unambiguous.
// It needs total >= 1.5 n² or so.
func descending(total, n int) []int {
	w := 0
	for i := range n {
		w += 2*n - i
	}
	c := make([]int, n)
	sum := 0
	for i := range c {
		c[i] = total * (2*n - i) / w
		sum += c[i]
	}
	for i := 0; sum < total; i++ {
		c[i]++
		sum++
	}
	return c
}
