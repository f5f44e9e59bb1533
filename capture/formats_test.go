package capture

import (
	"errors"
	"io"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// TestFormats reads every capture under pcaps/formats (written by
// cmd/pcapgen; see its README for what each holds) through the file reader
// and the decoder, and checks what comes out packet by packet.
// eachFrame calls fn with each frame of the capture file, and fails t
// when the file does not read to its end.
func eachFrame(t *testing.T, file string, fn func(f *Frame)) {
	t.Helper()
	src, err := OpenFiles([]string{file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var f Frame
	for {
		err := src.ReadFrame(&f)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		fn(&f)
	}
}

func TestFormats(t *testing.T) {
	var (
		c4, s4 = netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.7")
		c6, s6 = netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::7")
		req    = time.Date(2024, 3, 19, 12, 0, 1, 0, time.UTC)
	)
	const payload = "echowatch format test 0123456789\n"
	type want struct {
		src, dst   netip.Addr
		sport      uint16
		link       layers.LinkType
		vlans      []uint16
		ts         time.Time // zero: not checked
		fragOffset uint16
		payloadLen int
	}
	exchange := func(c, s netip.Addr, link layers.LinkType, vlans ...uint16) []want {
		return []want{
			{c, s, 40007, link, vlans, req, 0, len(payload)},
			{s, c, 7, link, vlans, req.Add(250 * time.Microsecond), 0, len(payload)},
		}
	}
	eth := layers.LinkTypeEthernet
	frags := func(c, s netip.Addr, sizes ...uint16) []want {
		var w []want
		for _, dir := range [][2]netip.Addr{{c, s}, {s, c}} {
			sport := uint16(40007)
			if dir[0] == s {
				sport = 7
			}
			var off uint16
			for i, n := range sizes {
				pl := int(n)
				if i == 0 {
					pl = 3000 // the first fragment declares the whole datagram
				}
				w = append(w, want{dir[0], dir[1], sport, eth, nil, time.Time{}, off, pl})
				off += n
			}
		}
		return w
	}
	null := exchange(c4, s4, layers.LinkTypeNull)
	for i := range 3 {
		for _, w := range exchange(c6, s6, layers.LinkTypeNull) {
			w.ts = w.ts.Add(time.Duration(i+1) * time.Second)
			null = append(null, w)
		}
	}
	nano := exchange(c4, s4, eth)
	nano[0].ts = req.Add(123456789)
	nano[1].ts = req.Add(123706789)
	twoIf := []want{
		{c4, s4, 40007, eth, nil, time.Time{}, 0, len(payload)},
		{c4, s4, 40007, layers.LinkTypeRaw, nil, time.Time{}, 0, len(payload)},
		{s4, c4, 7, layers.LinkTypeRaw, nil, time.Time{}, 0, len(payload)},
		{s4, c4, 7, eth, nil, time.Time{}, 0, len(payload)},
	}
	cases := map[string][]want{
		"ethernet.pcap":         exchange(c4, s4, eth),
		"ethernet-ipv6.pcap":    exchange(c6, s6, eth),
		"vlan.pcap":             exchange(c4, s4, eth, 100),
		"qinq.pcap":             exchange(c4, s4, eth, 100, 200),
		"sll.pcap":              exchange(c4, s4, layers.LinkTypeLinuxSLL),
		"sll2.pcap":             exchange(c4, s4, layers.LinkTypeLinuxSLL2),
		"raw-ipv4.pcap":         exchange(c4, s4, layers.LinkTypeRaw),
		"raw-ipv6.pcap":         exchange(c6, s6, layers.LinkTypeRaw),
		"null.pcap":             null,
		"ipv6-ext-headers.pcap": exchange(c6, s6, eth),
		"ipv4-fragments.pcap":   frags(c4, s4, 1480, 1480, 48),
		"ipv6-fragments.pcap":   frags(c6, s6, 1448, 1448, 112),
		"big-endian.pcap":       exchange(c4, s4, eth),
		"nanosecond.pcap":       nano,
		"two-interfaces.pcapng": twoIf,
		"gzip-compressed.pcap":  exchange(c4, s4, eth),
	}
	for name, wants := range cases {
		t.Run(name, func(t *testing.T) {
			dec := NewDecoder()
			var (
				p Packet
				i int
			)
			eachFrame(t, filepath.Join("..", "pcaps", "formats", name), func(f *Frame) {
				defer func() { i++ }()
				if i >= len(wants) {
					return
				}
				w := wants[i]
				if r := dec.Decode(f, &p); r != DropNone {
					t.Fatalf("packet %d: dropped: %v", i, r)
				}
				if p.Src != w.src || p.Dst != w.dst || p.Proto != ProtoUDP || !p.HasPorts || p.SrcPort != w.sport {
					t.Errorf("packet %d: %v:%d -> %v:%d proto %d, want %v:%d -> %v", i, p.Src, p.SrcPort, p.Dst, p.DstPort, p.Proto, w.src, w.sport, w.dst)
				}
				if p.LinkType != w.link || !equalU16(p.VLANs[:p.NumVLANs], w.vlans) {
					t.Errorf("packet %d: link %v vlans %v, want %v %v", i, p.LinkType, p.VLANs[:p.NumVLANs], w.link, w.vlans)
				}
				if !w.ts.IsZero() && !p.Timestamp.Equal(w.ts) {
					t.Errorf("packet %d: time %v, want %v", i, p.Timestamp.UTC(), w.ts)
				}
				if p.FragOffset != w.fragOffset || p.PayloadLen != w.payloadLen {
					t.Errorf("packet %d: fragment offset %d payload %d, want %d %d", i, p.FragOffset, p.PayloadLen, w.fragOffset, w.payloadLen)
				}
				if w.payloadLen == len(payload) && string(p.Payload) != payload {
					t.Errorf("packet %d: payload %q", i, p.Payload)
				}
				if p.TTL != 64 {
					t.Errorf("packet %d: TTL %d", i, p.TTL)
				}
			})
			if i != len(wants) {
				t.Errorf("read %d packets, want %d", i, len(wants))
			}
		})
	}
}
