package capture

import (
	"io"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gopacket/gopacket/layers"
)

// portInterest is an Interest over a fixed set of ports, or every port.
type portInterest struct {
	ports [1 << 16]bool
	all   bool
}

func interestIn(ports ...uint16) *portInterest {
	in := &portInterest{}
	for _, p := range ports {
		in.ports[p] = true
	}
	return in
}

func (in *portInterest) Interesting(src, dst uint16) bool {
	return in.all || in.ports[src] || in.ports[dst]
}

// noInterest finds no packet interesting.
type noInterest struct{}

func (noInterest) Interesting(uint16, uint16) bool { return false }

// The interests the pre-filter is tried with: none (it skips all it
// can), the default detectors' ports, and every port (it skips nothing).
func testInterests() map[string]*portInterest {
	return map[string]*portInterest{
		"none":     interestIn(),
		"defaults": interestIn(7, 13, 17, 19, 53, 123, 161, 389, 1900, 11211),
		"all":      {all: true},
	}
}

// prefilterSame decodes frames with and without the pre-filter of in, and
// fails unless a skipped frame is one the full decoding finds to be a
// plain TCP or UDP packet on no port of in, and every other frame, and
// every counter, comes out the same. It returns the frames skipped.
func prefilterSame(t *testing.T, frames []Frame, in Interest) (skipped int) {
	t.Helper()
	full := NewDecoder()
	pre, err := NewDecoderWith(DecoderConfig{Interest: in})
	if err != nil {
		t.Fatal(err)
	}
	var p, q Packet
	for i := range frames {
		f := &frames[i]
		r := full.Decode(f, &p)
		rq := pre.Decode(f, &q)
		if q.Skipped {
			skipped++
			if rq != DropNone || r != DropNone || !p.HasPorts || !p.IsUDP() && !p.IsTCP() ||
				p.Fragment || p.Tunnel.Depth != 0 || in.Interesting(p.SrcPort, p.DstPort) ||
				!q.Timestamp.Equal(p.Timestamp) {
				t.Fatalf("frame %d skipped; in full %v %+v", i, r, p)
			}
			continue
		}
		if r != rq || r == DropNone && !samePacket(&p, &q) {
			t.Fatalf("frame %d: in full %v\n %+v\npre-filtered %v\n %+v", i, r, p, rq, q)
		}
	}
	if full.Stats() != pre.Stats() {
		t.Fatalf("counters in full\n %+v\npre-filtered\n %+v", full.Stats(), pre.Stats())
	}
	return skipped
}

// The frames the pre-filter reads whole, and the ones it must leave to the
// full decoding, byte by byte at the edges of what it accepts.
func TestPrefilterFrames(t *testing.T) {
	eth := func(payload string) string { return ethHdr + "08 00 // IPv4\n" + payload }
	udp4 := func(hdr, udp string) string { return hdr + "\n" + udp }
	ip4 := `45 00 00 20 12 34 00 00 40 11 00 00 c0 00 02 01 c6 33 64 02 // IPv4 UDP, length 32`
	tcp4 := `45 00 00 28 12 34 40 00 40 06 00 00 c0 00 02 01 c6 33 64 02 // IPv4 TCP, length 40, DF`
	cases := []struct {
		name string
		link layers.LinkType
		hex  string
		skip bool
	}{
		{"ethernet UDP", layers.LinkTypeEthernet, eth(udp4(ip4, `9c 40 9c 41 00 0c 00 00 70 69 6e 67 // 40000 -> 40001`)), true},
		{"ethernet UDP, padded", layers.LinkTypeEthernet, eth(udp4(ip4, `9c 40 9c 41 00 0c 00 00 70 69 6e 67 00 00 00 00 00 00 // padding`)), true},
		{"watched destination", layers.LinkTypeEthernet, eth(udp4(ip4, `9c 40 00 07 00 0c 00 00 70 69 6e 67 // 40000 -> 7`)), false},
		{"watched source", layers.LinkTypeEthernet, eth(udp4(ip4, `00 13 9c 40 00 0c 00 00 70 69 6e 67 // 19 -> 40000`)), false},
		{"one VLAN", layers.LinkTypeEthernet, ethHdr + `81 00 00 64 08 00` + udp4(ip4, `9c 40 9c 41 00 0c 00 00 70 69 6e 67`), true},
		{"two VLANs", layers.LinkTypeEthernet, ethHdr + `88 a8 00 c8 81 00 00 64 08 00` + udp4(ip4, `9c 40 9c 41 00 0c 00 00 70 69 6e 67`), true},
		{"three VLANs", layers.LinkTypeEthernet, ethHdr + `88 a8 00 c8 81 00 00 64 81 00 00 65 08 00` + udp4(ip4, `9c 40 9c 41 00 0c 00 00 70 69 6e 67`), false},
		{"VLAN cut short", layers.LinkTypeEthernet, ethHdr + `81 00 00 64`, false},
		{"raw IPv4", layers.LinkTypeRaw, udp4(ip4, `9c 40 9c 41 00 0c 00 00 70 69 6e 67`), true},
		{"DLT_RAW IPv6", dltRaw, strings.Replace(ipv6UDP, "9c 40 00 07", "9c 40 9c 41", 1), true},
		{"ethernet IPv6 UDP", layers.LinkTypeEthernet, ethHdr + `86 dd` + strings.Replace(ipv6UDP, "9c 40 00 07", "9c 40 9c 41", 1), true},
		{"IPv6 payload cut", layers.LinkTypeRaw, strings.Replace(strings.Replace(ipv6UDP, "9c 40 00 07", "9c 40 9c 41", 1), "00 0c 11 40", "00 10 11 40", 1), false},
		{"IPv6 payload length 0", layers.LinkTypeRaw, strings.Replace(strings.Replace(ipv6UDP, "9c 40 00 07", "9c 40 9c 41", 1), "00 0c 11 40", "00 00 11 40", 1), false},
		{"IPv6 hop-by-hop", layers.LinkTypeRaw, `60 00 00 00 00 14 00 40` + strings.Repeat(" 20", 32) + `
			11 00 00 00 00 00 00 00 // hop-by-hop, next UDP
			9c 40 9c 41 00 0c 00 00 70 69 6e 67`, false},
		{"SLL", layers.LinkTypeLinuxSLL, `00 00 00 01 00 06 02 00 00 00 00 01 00 00 08 00` + udp4(ip4, `9c 40 9c 41 00 0c 00 00 70 69 6e 67`), false},
		{"IPv4 options", layers.LinkTypeRaw, `46 00 00 24 12 34 00 00 40 11 00 00 c0 00 02 01 c6 33 64 02 01 01 01 00 // IHL 6, NOPs
			9c 40 9c 41 00 0c 00 00 70 69 6e 67`, false},
		{"first fragment", layers.LinkTypeRaw, `45 00 00 20 12 34 20 00 40 11 00 00 c0 00 02 01 c6 33 64 02 // MF
			9c 40 9c 41 00 0c 00 00 70 69 6e 67`, false},
		{"later fragment", layers.LinkTypeRaw, `45 00 00 20 12 34 00 01 40 11 00 00 c0 00 02 01 c6 33 64 02 // offset 8
			9c 40 9c 41 00 0c 00 00 70 69 6e 67`, false},
		{"IPv4 cut short", layers.LinkTypeRaw, `45 00 00 30 12 34 00 00 40 11 00 00 c0 00 02 01 c6 33 64 02 // length 48 of 32
			9c 40 9c 41 00 0c 00 00 70 69 6e 67`, false},
		{"IPv4 length 0 (TSO)", layers.LinkTypeRaw, `45 00 00 00 12 34 00 00 40 11 00 00 c0 00 02 01 c6 33 64 02
			9c 40 9c 41 00 0c 00 00 70 69 6e 67`, false},
		{"UDP length 4", layers.LinkTypeRaw, `45 00 00 1c 12 34 00 00 40 11 00 00 c0 00 02 01 c6 33 64 02
			9c 40 9c 41 00 04 00 00`, false},
		{"UDP length 0", layers.LinkTypeRaw, udp4(ip4, `9c 40 9c 41 00 00 00 00 70 69 6e 67`), false},
		{"UDP length within the IP packet's", layers.LinkTypeRaw, udp4(ip4, `9c 40 9c 41 00 0a 00 00 70 69 6e 67 // 2 bytes of payload`), true},
		{"UDP length past the packet", layers.LinkTypeRaw, udp4(ip4, `9c 40 9c 41 00 10 00 00 70 69 6e 67`), false},
		{"UDP header cut", layers.LinkTypeRaw, `45 00 00 18 12 34 00 00 40 11 00 00 c0 00 02 01 c6 33 64 02 9c 40 9c 41`, false},
		{"VXLAN port", layers.LinkTypeRaw, udp4(ip4, `9c 40 12 b5 00 0c 00 00 70 69 6e 67 // -> 4789`), false},
		{"VXLAN-GPE port", layers.LinkTypeRaw, udp4(ip4, `9c 40 12 b6 00 0c 00 00 70 69 6e 67 // -> 4790`), false},
		{"GENEVE port", layers.LinkTypeRaw, udp4(ip4, `9c 40 17 c1 00 0c 00 00 70 69 6e 67 // -> 6081`), false},
		{"GTP-U port", layers.LinkTypeRaw, udp4(ip4, `9c 40 08 68 00 0c 00 00 70 69 6e 67 // -> 2152`), false},
		{"Linux VXLAN port", layers.LinkTypeRaw, udp4(ip4, `9c 40 21 18 00 0c 00 00 70 69 6e 67 // -> 8472`), false},
		{"tunnel port as source", layers.LinkTypeRaw, udp4(ip4, `12 b5 9c 40 00 0c 00 00 70 69 6e 67 // 4789 -> 40000`), true},
		{"TCP", layers.LinkTypeRaw, tcp4 + `
			9c 40 01 bb 00 00 00 01 00 00 00 00 50 10 ff ff 00 00 00 00 // 40000 -> 443, ACK`, true},
		{"TCP with options", layers.LinkTypeRaw, `45 00 00 30 12 34 40 00 40 06 00 00 c0 00 02 01 c6 33 64 02
			9c 40 01 bb 00 00 00 01 00 00 00 00 70 02 ff ff 00 00 00 00 // offset 28, SYN
			02 04 05 b4 01 01 04 02 // MSS, NOPs, SACK permitted`, true},
		{"TCP offset 4", layers.LinkTypeRaw, tcp4 + `
			9c 40 01 bb 00 00 00 01 00 00 00 00 40 10 ff ff 00 00 00 00`, false},
		{"TCP offset past the packet", layers.LinkTypeRaw, tcp4 + `
			9c 40 01 bb 00 00 00 01 00 00 00 00 60 10 ff ff 00 00 00 00`, false},
		{"ICMP", layers.LinkTypeRaw, `45 00 00 1c 12 34 00 00 40 01 00 00 c0 00 02 01 c6 33 64 02 08 00 f7 ff 00 00 00 00`, false},
		{"ARP", layers.LinkTypeEthernet, ethHdr + `08 06 00 01 08 00 06 04 00 01`, false},
		{"short ethernet", layers.LinkTypeEthernet, `02 00 00 00 00 02 02 00`, false},
	}
	in := interestIn(7, 19)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data := frame(t, c.hex)
			f := []Frame{{Data: data, LinkType: c.link, Length: len(data), CaptureLength: len(data)}}
			if got := prefilterSame(t, f, in) == 1; got != c.skip {
				t.Fatalf("skipped %v, want %v", got, c.skip)
			}
		})
	}
	t.Run("every port watched", func(t *testing.T) {
		var fs []Frame
		for _, c := range cases {
			data := frame(t, c.hex)
			fs = append(fs, Frame{Data: data, LinkType: c.link, Length: len(data)})
		}
		if n := prefilterSame(t, fs, &portInterest{all: true}); n != 0 {
			t.Fatalf("%d frames skipped with every port watched", n)
		}
	})
	t.Run("tenant key", func(t *testing.T) {
		d, err := NewDecoderWith(DecoderConfig{Interest: interestIn(), Tenant: TenantVLAN})
		if err != nil {
			t.Fatal(err)
		}
		data := frame(t, ethHdr+`81 00 00 64 08 00`+udp4(ip4, `9c 40 9c 41 00 0c 00 00 70 69 6e 67`))
		var p Packet
		if d.Decode(&Frame{Data: data, LinkType: layers.LinkTypeEthernet}, &p); p.Skipped || p.Tenant != 100 {
			t.Fatalf("skipped %v, tenant %d: a tenant needs the full decoding", p.Skipped, p.Tenant)
		}
	})
}

// Every bundled capture, and every tunnel case, decodes to the same
// packets and counters with the pre-filter as without, whatever the ports.
func TestPrefilterCaptures(t *testing.T) {
	var frames []Frame
	err := filepath.WalkDir("../pcaps", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".pcap") && !strings.HasSuffix(path, ".pcapng") {
			return err
		}
		src, err := OpenFiles([]string{path}, nil)
		if err != nil {
			return nil // formats/ holds captures the decoder refuses
		}
		defer src.Close()
		var f Frame
		for {
			if err := src.ReadFrame(&f); err == io.EOF {
				break
			} else if err != nil {
				continue
			}
			f.Data = append([]byte(nil), f.Data...)
			frames = append(frames, f)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range tunnelCases(t) {
		data := frame(t, c.hex)
		frames = append(frames, Frame{Data: data, LinkType: layers.LinkTypeEthernet, Length: len(data)})
	}
	if len(frames) < 10000 {
		t.Fatalf("only %d frames in the bundled captures", len(frames))
	}
	for name, in := range testInterests() {
		t.Run(name, func(t *testing.T) {
			n := prefilterSame(t, frames, in)
			t.Logf("%d of %d frames skipped", n, len(frames))
			if (n == 0) != in.all {
				t.Fatalf("%d of %d frames skipped", n, len(frames))
			}
		})
	}
}

// skippedFrame is a UDP frame on a VLAN between two ports nobody watches.
func skippedFrame(t testing.TB) Frame {
	return Frame{Data: frame(t, ethHdr+`81 00 00 64 08 00`+strings.Replace(ipv4UDP, "9c 40 00 07", "9c 40 9c 41", 1)),
		LinkType: layers.LinkTypeEthernet}
}

// decoderFor7 returns a decoder whose pre-filter lets only port 7 through.
func decoderFor7(t testing.TB) *Decoder {
	d, err := NewDecoderWith(DecoderConfig{Interest: interestIn(7)})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestPrefilterAllocatesNothing(t *testing.T) {
	f, d := skippedFrame(t), decoderFor7(t)
	var p Packet
	allocs := testing.AllocsPerRun(1000, func() { d.Decode(&f, &p) })
	if !p.Skipped || allocs != 0 {
		t.Fatalf("skipped %v, %.1f allocations per frame", p.Skipped, allocs)
	}
}

func BenchmarkDecodeSkipped(b *testing.B) {
	f, d := skippedFrame(b), decoderFor7(b)
	var p Packet
	for b.Loop() {
		d.Decode(&f, &p)
	}
}

func BenchmarkDecodeInteresting(b *testing.B) {
	f := Frame{Data: frame(b, ethHdr+`81 00 00 64 08 00`+ipv4UDP), LinkType: layers.LinkTypeEthernet}
	d := decoderFor7(b)
	var p Packet
	for b.Loop() {
		d.Decode(&f, &p)
	}
}
