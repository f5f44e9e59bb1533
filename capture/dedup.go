package capture

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"time"
)

// Dedup recognises the second sighting of an IP packet: a span session
// that mirrors both ingress and egress, or a routed packet mirrored on
// both its VLANs, delivers every packet twice, which doubles every rate.
// Two sightings are one packet when their IP packets are the same but for
// what a router changes on the way: the TTL or hop limit, the IPv4 header
// checksum, and the DSCP and ECN bits. The link layer, VLAN tags and any
// encapsulation around the packet do not count.
//
// A packet is known by a hash of its first dedupBytes bytes from the IP
// header on (with the TCP or UDP checksum there, which covers the rest),
// and its sighting by packet time: a later packet with the same hash
// within the window of the first sighting is a copy. The window runs from
// the first sighting, so identical packets sent further apart than the
// window (one request repeated by a flood) are all kept. Times are kept
// to dedupTick, so a copy up to two ticks past the window may count.
//
// The table is fixed and small, so that it stays in the CPU's caches
// while detection's tables come and go around it (a miss per packet cost
// more than the rest of the look-up): dedupBuckets sets of dedupWays
// slots, 16,384 packets in 128 KiB. When a set is full of packets still
// within their window, the oldest is evicted, and its copy, if one comes,
// is kept (counted in Stats).
//
// A Dedup belongs to one goroutine, and allocates nothing per packet.
type Dedup struct {
	window           uint32 // in dedupTicks
	buckets          []dedupBucket
	dropped, evicted uint64
}

// dedupBucket is one set of slots.
type dedupBucket [dedupWays]dedupSlot

type dedupSlot struct {
	tag uint32 // 32 bits of the packet's hash that its set's index does not use; 0: empty
	at  uint32 // its first sighting, in dedupTicks of packet time, wrapping
}

const (
	// MaxDedupWindow bounds the window: copies of a mirror arrive within
	// microseconds; past a second, packets that merely repeat would be
	// taken for copies.
	MaxDedupWindow = time.Second

	// dedupTick is the unit of the slots' times: they wrap after 2^32
	// ticks (18 minutes), far beyond any window, and an entry that old
	// in its set is taken for live only if its 32-bit tag matches too.
	dedupTick      = 1 << dedupTickShift * time.Nanosecond
	dedupTickShift = 8

	dedupWays       = 4 // a set is half a cache line
	dedupBucketBits = 12
	dedupBuckets    = 1 << dedupBucketBits
	// dedupFree is how far from now Seen puts a slot that may be taken:
	// empty, or past its window. Live slots are within the window, far
	// below.
	dedupFree = ^uint32(0)
	// dedupBytes is how much of an IP packet its hash covers: the IP
	// header (IPv4 with options, IPv6 with a few extension headers), the
	// transport header with the checksum that covers the payload, and
	// the payload's start. A multiple of 16.
	dedupBytes = 96
)

// NewDedup returns a Dedup that takes a packet seen again within window
// (above 0, at most MaxDedupWindow) of its first sighting for a copy.
func NewDedup(window time.Duration) (*Dedup, error) {
	if window <= 0 || window > MaxDedupWindow {
		return nil, fmt.Errorf("capture: dedup window %v out of range (above 0, at most %v)", window, MaxDedupWindow)
	}
	// Two times cut to ticks are a tick further apart at most than
	// they were: the window in ticks, rounded up, and one more.
	return &Dedup{window: uint32((window+dedupTick-1)/dedupTick) + 1, buckets: make([]dedupBucket, dedupBuckets)}, nil
}

// Seen reports whether p, a decoded packet, is a copy of one seen within
// the window, and otherwise records it. A packet without an IP header in
// p.Raw at p.IPOffset is never a copy.
func (d *Dedup) Seen(p *Packet) bool {
	sum, ok := DedupSum(p)
	return ok && d.SeenSum(sum, p.Timestamp)
}

// DedupSum returns what a Dedup knows p by; ok is false for a packet that
// is never a copy (no IP header in p.Raw at p.IPOffset). It may be taken
// on another goroutine than the Dedup's, before the packet reaches it.
func DedupSum(p *Packet) (sum uint64, ok bool) {
	if !p.Src.IsValid() || p.IPOffset < 0 || p.IPOffset >= len(p.Raw) {
		return 0, false
	}
	return dedupSum(p.Raw[p.IPOffset:])
}

// SeenSum is Seen for a packet whose DedupSum is sum, seen at t.
func (d *Dedup) SeenSum(sum uint64, t time.Time) bool {
	tag := uint32(sum) | 1
	now := uint32(t.UnixNano() >> dedupTickShift)
	b := &d.buckets[sum>>(64-dedupBucketBits)]
	// A free or stale slot, else the one seen longest ago. Times are
	// compared both ways round the clock: a copy may come before its
	// original in a capture merged from two interfaces.
	victim, farthest := 0, uint32(0)
	for i := range b {
		s := &b[i]
		age := now - s.at
		apart := min(age, -age)
		if s.tag == tag && apart <= d.window {
			d.dropped++
			return true
		}
		if s.tag == 0 || apart > d.window {
			apart = dedupFree
		}
		if apart > farthest {
			victim, farthest = i, apart
		}
	}
	if farthest != dedupFree {
		d.evicted++
	}
	b[victim] = dedupSlot{tag: tag, at: now}
	return false
}

// Stats returns how many packets were copies, and how many packets were
// pushed out of the table within their window.
func (d *Dedup) Stats() (dropped, evicted uint64) { return d.dropped, d.evicted }

// dedupSum hashes the IP packet that ip starts with, up to its own end
// (not the link layer's padding after it) and at most dedupBytes, with
// the bytes a router rewrites masked out. ok is false when ip does not
// start with an IP header; the sum is never 0.
func dedupSum(ip []byte) (sum uint64, ok bool) {
	var n int
	// Masks over the first two 8-byte words, read little-endian: byte i
	// of a word is bits 8i to 8i+7.
	var m0, m1 uint64 = ^uint64(0), ^uint64(0)
	switch ip[0] >> 4 {
	case 4:
		if len(ip) < 20 {
			return 0, false
		}
		n = int(binary.BigEndian.Uint16(ip[2:]))
		m0 &^= 0xff << 8         // DSCP and ECN
		m1 &^= 0xff | 0xffff<<16 // TTL; header checksum
	case 6:
		if len(ip) < 40 {
			return 0, false
		}
		if n = int(binary.BigEndian.Uint16(ip[4:])); n != 0 {
			n += 40
		}
		m0 &^= 0x0f | 0xf0<<8 | 0xff<<56 // traffic class; hop limit
	default:
		return 0, false
	}
	if n == 0 || n > len(ip) {
		// TCP segmentation offload or a jumbogram (length 0), or a
		// capture cut short: what there is.
		n = len(ip)
	}
	n = min(n, dedupBytes)
	// wyhash's multiply-and-fold, 16 bytes at a time, each pair apart
	// from the others so that the multiplies overlap. The last pair is
	// read as the bytes that end where the packet does (n is 20 at
	// least), shifted down: what follows the packet is left out, and
	// its length is in the sum.
	le := binary.LittleEndian
	h := dedupMum(le.Uint64(ip)&m0^dedupK[0], le.Uint64(ip[8:])&m1^dedupK[1])
	i := 16
	for ; i+16 <= n; i += 16 {
		h ^= dedupMum(le.Uint64(ip[i:])^dedupK[i/8], le.Uint64(ip[i+8:])^dedupK[i/8+1])
	}
	if rest := n - i; rest > 8 {
		h ^= dedupMum(le.Uint64(ip[i:])^dedupK[i/8], le.Uint64(ip[n-8:])>>(8*(16-rest))^dedupK[i/8+1])
	} else if rest > 0 {
		h ^= dedupMum(le.Uint64(ip[n-8:])>>(8*(8-rest))^dedupK[i/8], dedupK[i/8+1])
	}
	h = dedupMum(h^dedupK[0], uint64(n)^dedupK[1])
	return h | 1, true
}

// Odd constants with their bits spread, one per word (wyhash's, and the
// fractional parts of square roots of primes). A fixed hash keeps runs
// repeatable.
var dedupK = [dedupBytes / 8]uint64{
	0xa0761d6478bd642f, 0xe7037ed1a0b428db, 0x8ebc6af09c88c6e3, 0x589965cc75374cc3,
	0x1d8e4e27c47d124f, 0x87c37b91114253d5, 0x4cf5ad432745937f, 0xff51afd7ed558ccd,
	0x6a09e667f3bcc909, 0xbb67ae8584caa73b, 0x3c6ef372fe94f82b, 0xa54ff53a5f1d36f1,
}

// dedupMum multiplies a and b to 128 bits and folds the halves.
func dedupMum(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}
