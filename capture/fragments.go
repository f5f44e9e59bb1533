package capture

import (
	"encoding/binary"
	"net/netip"
	"time"
)

// fragSlots bounds the fragment table: the first fragments in flight
// whose later fragments we can attribute.
const fragSlots = 1 << 16

// Fragments gives later IP fragments the ports of their datagram's first
// fragment, so that a reflection of large echoes counts all its bytes.
// A Decoder keeps one; decoders that share a stream skip it and leave the
// fragments to one Fragments table that sees them all, in order. It
// belongs to one goroutine.
type Fragments struct {
	t                *fragTable
	matched, evicted uint64
}

// NewFragments returns an empty table of fragSlots datagrams.
func NewFragments() *Fragments { return &Fragments{t: newFragTable(fragSlots)} }

// Attribute records the ports of a first fragment, and gives a later
// fragment the ports of its first one when the table still has it. p must
// be a fragment (p.Fragment).
func (f *Fragments) Attribute(p *Packet) {
	k := fragKeyOf(p)
	if p.FragOffset == 0 {
		if p.HasPorts && f.t.put(k, p.SrcPort, p.DstPort, p.Timestamp, false) {
			f.evicted++
		}
		return
	}
	if sp, dp, ok := f.t.get(k, p.Timestamp); ok {
		p.HasPorts = true
		p.SrcPort, p.DstPort = sp, dp
		f.matched++
	}
}

// markTunnel records that p, a first fragment, carries an encapsulation:
// its later fragments hold only the rest of the packet inside, which was
// delivered, cut, from the first.
func (f *Fragments) markTunnel(p *Packet) {
	if f.t.put(fragKeyOf(p), 0, 0, p.Timestamp, true) {
		f.evicted++
	}
}

// tunnel reports whether p, a later fragment, belongs to a packet that
// markTunnel recorded.
func (f *Fragments) tunnel(p *Packet) bool {
	s, ok := f.t.find(fragKeyOf(p), p.Timestamp)
	return ok && s.tunnel
}

func fragKeyOf(p *Packet) fragKey {
	return fragKey{src: p.Src, dst: p.Dst, proto: p.Proto, id: p.IPID}
}

// Stats returns how many later fragments got ports, and how many first
// fragments were pushed out of the table before their datagram ended.
func (f *Fragments) Stats() (matched, evicted uint64) { return f.matched, f.evicted }

// fragKey names one fragmented datagram.
type fragKey struct {
	src, dst netip.Addr
	proto    uint8
	id       uint32
}

// fragTable remembers the ports of recent first fragments so that later
// fragments of the same datagram count toward its flow, and which first
// fragments carried an encapsulation. It is a
// direct-mapped cache: bounded, no allocation, a newer datagram overwrites
// an older one in its slot. Entries older than fragTimeout (packet time,
// the reassembly timeout of common stacks) are ignored.
type fragTable struct {
	slots []fragSlot
	mask  uint64
}

type fragSlot struct {
	key              fragKey
	srcPort, dstPort uint16
	seen             time.Time
	used             bool
	tunnel           bool // the datagram carries an encapsulation: no ports
}

const fragTimeout = 30 * time.Second

func newFragTable(n int) *fragTable {
	if n <= 0 {
		n = 1 << 16
	}
	size := 1
	for size < n {
		size <<= 1
	}
	return &fragTable{slots: make([]fragSlot, size), mask: uint64(size - 1)}
}

func (t *fragTable) slot(k fragKey) *fragSlot {
	// FNV-1a over the key's bytes: cheap, and fixed so runs are
	// repeatable.
	h := uint64(14695981039346656037)
	mix := func(b []byte) {
		for _, c := range b {
			h ^= uint64(c)
			h *= 1099511628211
		}
	}
	s, d := k.src.As16(), k.dst.As16()
	mix(s[:])
	mix(d[:])
	var tail [5]byte
	tail[0] = k.proto
	binary.BigEndian.PutUint32(tail[1:], k.id)
	mix(tail[:])
	return &t.slots[h&t.mask]
}

// put stores k's ports and reports whether it overwrote another live
// datagram.
func (t *fragTable) put(k fragKey, sp, dp uint16, now time.Time, tunnel bool) (evicted bool) {
	s := t.slot(k)
	evicted = s.used && s.key != k && now.Sub(s.seen) <= fragTimeout
	*s = fragSlot{key: k, srcPort: sp, dstPort: dp, seen: now, used: true, tunnel: tunnel}
	return evicted
}

func (t *fragTable) get(k fragKey, now time.Time) (sp, dp uint16, ok bool) {
	s, ok := t.find(k, now)
	if !ok || s.tunnel {
		return 0, 0, false
	}
	return s.srcPort, s.dstPort, true
}

// find returns k's slot if it holds k, recent enough.
func (t *fragTable) find(k fragKey, now time.Time) (*fragSlot, bool) {
	s := t.slot(k)
	return s, s.used && s.key == k && now.Sub(s.seen) <= fragTimeout
}
