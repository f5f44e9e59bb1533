package capture

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/echowatch/echowatch/internal/annotated"
)

// The same echo reply as three links deliver it: on the span port, on a
// VLAN after a router (TTL one lower, checksum and MACs other, ECN
// marked), and wrapped in VXLAN by a cloud mirror.
const (
	dedupEcho = `
		45 00 00 21        // IPv4, IHL 5, total length 33
		4d 2a 40 00        // ID 0x4d2a, DF
		40 11 ab cd        // TTL 64, proto UDP, checksum
		c0 00 02 11        // src 192.0.2.17
		c6 33 64 0a        // dst 198.51.100.10
		00 07 9c 40        // UDP 7 -> 40000
		00 0d 12 34        // UDP length 13, checksum
		65 63 68 6f 21     // payload "echo!"`
	dedupEchoRouted = `
		45 01 00 21        // IPv4, ECN CE set by the router, total length 33
		4d 2a 40 00        // ID 0x4d2a, DF
		3f 11 ac cd        // TTL 63, proto UDP, checksum updated
		c0 00 02 11        // src 192.0.2.17
		c6 33 64 0a        // dst 198.51.100.10
		00 07 9c 40        // UDP 7 -> 40000
		00 0d 12 34        // UDP length 13, checksum
		65 63 68 6f 21     // payload "echo!"`
	dedupEth = `
		02 00 00 00 00 02  // dst MAC
		02 00 00 00 00 01  // src MAC
		08 00              // IPv4`
	dedupEthVLAN = `
		02 00 00 00 00 99  // dst MAC: the router's other side
		02 00 00 00 00 98  // src MAC
		81 00 00 c8        // 802.1Q, VLAN 200
		08 00              // IPv4`
	dedupPad = `
		00 00 00 00 00 00 00 00 00 00 00 00 00  // padding to 60 bytes`
	dedupVXLAN = `
		02 00 00 00 00 a2  // dst MAC: the sensor
		02 00 00 00 00 a1  // src MAC
		08 00              // IPv4
		45 00 00 53        // outer IPv4, total length 83
		00 01 00 00        // ID 1
		40 11 00 00        // TTL 64, UDP
		0a 00 00 01        // src 10.0.0.1: the mirror's source
		0a 00 00 02        // dst 10.0.0.2: the sensor
		c3 50 12 b5        // UDP 50000 -> 4789
		00 3f 00 00        // UDP length 63
		08 00 00 00        // VXLAN, I flag
		00 00 2a 00        // VNI 42
		02 00 00 00 00 02  // inner dst MAC
		02 00 00 00 00 01  // inner src MAC
		08 00              // IPv4`
	dedupEcho6 = `
		60 00 00 00        // IPv6, traffic class 0, flow 0
		00 0d 11 40        // payload length 13, next header UDP, hop limit 64
		20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 11  // src 2001:db8::11
		20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 0a  // dst 2001:db8::a
		00 07 9c 40        // UDP 7 -> 40000
		00 0d 12 34        // UDP length 13, checksum
		65 63 68 6f 21     // payload "echo!"`
	dedupEcho6Routed = `
		60 20 00 00        // IPv6, traffic class 0x02 (ECN), flow 0
		00 0d 11 3f        // payload length 13, next header UDP, hop limit 63
		20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 11  // src 2001:db8::11
		20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 0a  // dst 2001:db8::a
		00 07 9c 40        // UDP 7 -> 40000
		00 0d 12 34        // UDP length 13, checksum
		65 63 68 6f 21     // payload "echo!"`
	dedupEth6 = `
		02 00 00 00 00 02  // dst MAC
		02 00 00 00 00 01  // src MAC
		86 dd              // IPv6`
)

var dedupT0 = time.Date(2024, 3, 19, 12, 0, 0, 0, time.UTC)

// decodeFor decodes a test frame for Dedup.Seen.
func decodeFor(t *testing.T, dec *Decoder, hex string, at time.Duration) Packet {
	t.Helper()
	data := annotated.Hex(t, hex)
	var p Packet
	f := Frame{Data: data, Timestamp: dedupT0.Add(at), LinkType: layers.LinkTypeEthernet, CaptureLength: len(data), Length: len(data)}
	if r := dec.Decode(&f, &p); r != DropNone {
		t.Fatalf("test frame does not decode: %v", r)
	}
	return p
}

func newTestDedup(t *testing.T, window time.Duration) *Dedup {
	t.Helper()
	d, err := NewDedup(window)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestDedupMirroredCopies: a packet seen again within the window, whatever
// carries it and whatever a router changed on the way (TTL or hop limit,
// the IPv4 checksum, DSCP and ECN), is a copy; a packet that differs in
// anything else, or comes after the window, is not.
func TestDedupMirroredCopies(t *testing.T) {
	dec := NewDecoder()
	first := dedupEth + dedupEcho
	cases := []struct {
		name  string
		first string
		again string
		after time.Duration
		copy  bool
	}{
		{"same frame 20µs later", first, first, 20 * time.Microsecond, true},
		{"routed onto a VLAN", first, dedupEthVLAN + dedupEchoRouted, 20 * time.Microsecond, true},
		{"padded to 60 bytes", first, dedupEthVLAN + dedupEchoRouted + dedupPad, 20 * time.Microsecond, true},
		{"in VXLAN", first, dedupVXLAN + dedupEcho, 50 * time.Microsecond, true},
		{"the copy came first", dedupEthVLAN + dedupEchoRouted, first, -20 * time.Microsecond, true},
		{"IPv6 routed", dedupEth6 + dedupEcho6, dedupEth6 + dedupEcho6Routed, 20 * time.Microsecond, true},
		{"at the window's end", first, first, time.Millisecond, true},
		{"after the window", first, first, time.Millisecond + time.Microsecond, false},
		{"other IP ID", first, dedupEth + strings.Replace(dedupEcho, "4d 2a 40 00", "4d 2b 40 00", 1), 20 * time.Microsecond, false},
		{"other payload", first, dedupEth + strings.Replace(dedupEcho, "65 63 68 6f 21", "65 63 68 6f 3f", 1), 20 * time.Microsecond, false},
		{"other port", first, dedupEth + strings.Replace(dedupEcho, "00 07 9c 40", "00 07 9c 41", 1), 20 * time.Microsecond, false},
		{"IPv6, other flow label", dedupEth6 + dedupEcho6, dedupEth6 + strings.Replace(dedupEcho6, "60 00 00 00", "60 00 00 01", 1), 20 * time.Microsecond, false},
	}
	for _, c := range cases {
		d := newTestDedup(t, time.Millisecond)
		p := decodeFor(t, dec, c.first, 0)
		if d.Seen(&p) {
			t.Errorf("%s: the first sighting is taken for a copy", c.name)
		}
		q := decodeFor(t, dec, c.again, c.after)
		if got := d.Seen(&q); got != c.copy {
			t.Errorf("%s: Seen = %v, want %v", c.name, got, c.copy)
		}
		want := uint64(0)
		if c.copy {
			want = 1
		}
		if dropped, _ := d.Stats(); dropped != want {
			t.Errorf("%s: %d dropped, want %d", c.name, dropped, want)
		}
	}
}

// TestDedupOneWindowPerFirstSighting: the window runs from a packet's
// first sighting, and a copy does not extend it, so identical packets
// sent more than a window apart (a flood of one request, repeated) are
// all kept.
func TestDedupOneWindowPerFirstSighting(t *testing.T) {
	dec := NewDecoder()
	d := newTestDedup(t, time.Millisecond)
	kept := 0
	for i := range 10 {
		p := decodeFor(t, dec, dedupEth+dedupEcho, time.Duration(i)*600*time.Microsecond)
		if !d.Seen(&p) {
			kept++
		}
	}
	// 0, 1.2, 2.4, 3.6, 4.8 ms open a window each; the others fall in one.
	if kept != 5 {
		t.Errorf("%d of 10 kept, want 5", kept)
	}
}

// TestDedupBounded: the table never grows; a burst of distinct packets
// within one window overflows it, counted as evictions, and every packet
// is still kept (a missed copy, never a packet dropped for another).
func TestDedupBounded(t *testing.T) {
	d := newTestDedup(t, time.Second)
	dec := NewDecoder()
	p := decodeFor(t, dec, dedupEth+dedupEcho, 0)
	ip := p.Raw[p.IPOffset:]
	n := dedupBuckets*dedupWays + 1000
	for i := range n {
		binary.BigEndian.PutUint32(ip[12:], uint32(i)) // a new source each time
		p.Timestamp = dedupT0.Add(time.Duration(i))
		if d.Seen(&p) {
			t.Fatalf("packet %d taken for a copy", i)
		}
	}
	if _, evicted := d.Stats(); evicted < 1000 {
		t.Errorf("%d evicted after %d distinct packets in %d slots", evicted, n, dedupBuckets*dedupWays)
	}
	if len(d.buckets) != dedupBuckets {
		t.Errorf("the table grew to %d buckets", len(d.buckets))
	}
}

func TestNewDedupWindow(t *testing.T) {
	for _, w := range []time.Duration{0, -time.Millisecond, MaxDedupWindow + 1} {
		if _, err := NewDedup(w); err == nil || !strings.HasPrefix(err.Error(), "capture: dedup window") {
			t.Errorf("NewDedup(%v): %v, want an error", w, err)
		}
	}
	for _, w := range []time.Duration{time.Nanosecond, time.Millisecond, MaxDedupWindow} {
		if _, err := NewDedup(w); err != nil {
			t.Errorf("NewDedup(%v): %v", w, err)
		}
	}
}

// TestDedupHostileOffsets: a packet whose IPOffset or Raw do not hold an
// IP header is never a copy, and never a panic.
func TestDedupHostileOffsets(t *testing.T) {
	d := newTestDedup(t, time.Millisecond)
	dec := NewDecoder()
	good := decodeFor(t, dec, dedupEth+dedupEcho, 0)
	for _, mangle := range []func(p *Packet){
		func(p *Packet) { p.IPOffset = len(p.Raw) },
		func(p *Packet) { p.IPOffset = len(p.Raw) + 5 },
		func(p *Packet) { p.IPOffset = -1 },
		func(p *Packet) { p.Raw = p.Raw[:p.IPOffset+19] },
		func(p *Packet) { p.Raw = nil },
		func(p *Packet) { p.Raw[p.IPOffset] = 0x55 }, // version 5
	} {
		for range 2 {
			p := good
			p.Raw = append([]byte(nil), good.Raw...)
			mangle(&p)
			if d.Seen(&p) {
				t.Errorf("a mangled packet taken for a copy")
			}
		}
	}
}

// TestDedupAllocatesNothing: Seen is on the per-packet path.
func TestDedupAllocatesNothing(t *testing.T) {
	d := newTestDedup(t, time.Millisecond)
	dec := NewDecoder()
	p := decodeFor(t, dec, dedupVXLAN+dedupEcho, 0)
	i := 0
	if allocs := testing.AllocsPerRun(1000, func() {
		i++
		p.Timestamp = dedupT0.Add(time.Duration(i) * time.Microsecond)
		d.Seen(&p)
	}); allocs != 0 {
		t.Errorf("Seen allocates %v times per packet", allocs)
	}
}

// BenchmarkDecodeDedup is BenchmarkDedupBase's decoding with Seen after
// it, on a mix of new packets and their copies: the two side by side say
// what --dedup adds to a packet's decoding.
func BenchmarkDecodeDedup(b *testing.B) { benchDedup(b, true) }

// BenchmarkDedupBase decodes the same frames without Dedup.
func BenchmarkDedupBase(b *testing.B) { benchDedup(b, false) }

func benchDedup(b *testing.B, on bool) {
	frames := make([][]byte, 4096)
	for i := range frames {
		// A 590-byte TCP segment, half of them a copy of the one before.
		data := make([]byte, 14+20+20+536)
		copy(data, annotated.Hex(b, dedupEth))
		ip := data[14:]
		ip[0], ip[8], ip[9] = 0x45, 64, ProtoTCP
		binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
		binary.BigEndian.PutUint32(ip[12:], 0xc0000200|uint32(i/2%200))
		binary.BigEndian.PutUint32(ip[16:], 0xc6336400|uint32(i/2%50))
		binary.BigEndian.PutUint16(ip[20:], 443)
		binary.BigEndian.PutUint16(ip[22:], uint16(40000+i/2))
		binary.BigEndian.PutUint32(ip[24:], uint32(i/2)*536)
		ip[32], ip[33] = 0x50, 0x10 // data offset 5, ACK
		if i%2 == 1 {
			ip[8]--
		}
		frames[i] = data
	}
	d, err := NewDedup(time.Millisecond)
	if err != nil {
		b.Fatal(err)
	}
	dec := NewDecoder()
	var p Packet
	f := Frame{LinkType: layers.LinkTypeEthernet}
	b.SetBytes(int64(len(frames[0])))
	i := 0
	for b.Loop() {
		f.Data = frames[i%len(frames)]
		f.Timestamp = dedupT0.Add(time.Duration(i) * time.Microsecond)
		f.CaptureLength, f.Length = len(f.Data), len(f.Data)
		i++
		if dec.Decode(&f, &p) == DropNone && on {
			d.Seen(&p)
		}
	}
}
