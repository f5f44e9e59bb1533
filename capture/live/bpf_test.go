package live

import (
	"encoding/binary"
	"encoding/hex"
	"strings"
	"sync"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/internal/annotated"
)

// frameHex reads a test frame written as annotated hex.
var frameHex = annotated.Hex

// Link-layer headers and IP packets that the cases below combine.
const (
	ethernetIPv4 = `
		02 00 00 00 00 02 // destination MAC
		02 00 00 00 00 01 // source MAC
		08 00             // EtherType IPv4`
	ethernetIPv6 = `
		02 00 00 00 00 02 // destination MAC
		02 00 00 00 00 01 // source MAC
		86 dd             // EtherType IPv6`
	ethernetVLANIPv4 = `
		02 00 00 00 00 02 // destination MAC
		02 00 00 00 00 01 // source MAC
		81 00             // TPID 802.1Q
		00 64             // PCP 0, DEI 0, VLAN 100
		08 00             // EtherType IPv4`
	linuxSLLIPv4 = `
		00 00                   // packet type: to us
		00 01                   // ARPHRD_ETHER
		00 06                   // address length
		02 00 00 00 00 01 00 00 // source MAC, padded to 8
		08 00                   // protocol IPv4`
	linuxSLL2IPv4 = `
		08 00                   // protocol IPv4
		00 00                   // reserved
		00 00 00 02             // interface index
		00 01                   // ARPHRD_ETHER
		00                      // packet type: to us
		06                      // address length
		02 00 00 00 00 01 00 00 // source MAC, padded to 8`
	ipv4UDP7 = `
		45 00 00 20 // version 4, IHL 5, TOS 0, total length 32
		00 01 00 00 // ID 1, no flags, fragment offset 0
		40 11 00 00 // TTL 64, protocol UDP, checksum (unchecked)
		c6 12 00 01 // source 198.18.0.1
		c6 12 00 02 // destination 198.18.0.2
		9c 40 00 07 // source port 40000, destination port 7
		00 0c 00 00 // UDP length 12, checksum none
		70 69 6e 67 // payload "ping"`
	ipv4TCP80 = `
		45 00 00 28 // version 4, IHL 5, TOS 0, total length 40
		00 01 00 00 // ID 1, no flags, fragment offset 0
		40 06 00 00 // TTL 64, protocol TCP, checksum (unchecked)
		c6 12 00 01 // source 198.18.0.1
		c6 12 00 02 // destination 198.18.0.2
		9c 40 00 50 // source port 40000, destination port 80
		00 00 00 01 // sequence number
		00 00 00 00 // acknowledgement number
		50 02 ff ff // data offset 5, SYN, window 65535
		00 00 00 00 // checksum (unchecked), urgent pointer`
	ipv4UDP7Later = `
		45 00 00 20 // version 4, IHL 5, TOS 0, total length 32
		00 01 00 10 // ID 1, no flags, fragment offset 16 (128 bytes)
		40 11 00 00 // TTL 64, protocol UDP, checksum (unchecked)
		c6 12 00 01 // source 198.18.0.1
		c6 12 00 02 // destination 198.18.0.2
		9c 40 00 07 // not a UDP header: data that looks like one
		00 0c 00 00
		70 69 6e 67`
	ipv6UDP7 = `
		60 00 00 00                                     // version 6, class 0, flow 0
		00 0c 11 40                                     // payload length 12, next header UDP, hop limit 64
		fd 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01 // source fd00::1
		fd 00 00 00 00 00 00 00 00 00 00 00 00 00 00 02 // destination fd00::2
		9c 40 00 07                                     // source port 40000, destination port 7
		00 0c 00 00                                     // UDP length 12, checksum (unchecked)
		70 69 6e 67                                     // payload "ping"`
)

// nullIPv4 is the BSD loopback header: the address family in the
// capturing host's byte order, which libpcap compiles for this host's.
func nullIPv4() string {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], 2) // AF_INET
	return hex.EncodeToString(b[:]) + " // AF_INET, host byte order"
}

func TestBPFFilterMatch(t *testing.T) {
	tests := []struct {
		name     string
		expr     string
		linkType layers.LinkType
		frame    string
		want     bool
	}{
		{"ethernet udp 7", "udp port 7", layers.LinkTypeEthernet, ethernetIPv4 + ipv4UDP7, true},
		{"ethernet tcp 80", "udp port 7", layers.LinkTypeEthernet, ethernetIPv4 + ipv4TCP80, false},
		{"ethernet tcp 80 by port", "tcp dst port 80", layers.LinkTypeEthernet, ethernetIPv4 + ipv4TCP80, true},
		{"ethernet ipv6 udp 7", "udp port 7", layers.LinkTypeEthernet, ethernetIPv6 + ipv6UDP7, true},
		{"ethernet host", "src host 198.18.0.1 and dst port 7", layers.LinkTypeEthernet, ethernetIPv4 + ipv4UDP7, true},
		{"ethernet other host", "host 192.0.2.1", layers.LinkTypeEthernet, ethernetIPv4 + ipv4UDP7, false},
		// As in tcpdump, a tagged frame needs "vlan" before the rest.
		{"vlan without vlan", "udp port 7", layers.LinkTypeEthernet, ethernetVLANIPv4 + ipv4UDP7, false},
		{"vlan with vlan", "vlan 100 and udp port 7", layers.LinkTypeEthernet, ethernetVLANIPv4 + ipv4UDP7, true},
		// A later fragment has no ports: what looks like port 7 is data.
		{"later fragment", "udp port 7", layers.LinkTypeEthernet, ethernetIPv4 + ipv4UDP7Later, false},
		{"sll udp 7", "udp port 7", layers.LinkTypeLinuxSLL, linuxSLLIPv4 + ipv4UDP7, true},
		{"sll tcp 80", "udp port 7", layers.LinkTypeLinuxSLL, linuxSLLIPv4 + ipv4TCP80, false},
		{"sll2 udp 7", "udp port 7", layers.LinkTypeLinuxSLL2, linuxSLL2IPv4 + ipv4UDP7, true},
		{"raw udp 7", "udp port 7", layers.LinkTypeRaw, ipv4UDP7, true},
		{"raw tcp 80", "udp port 7", layers.LinkTypeRaw, ipv4TCP80, false},
		{"raw as DLT_RAW", "udp port 7", 12, ipv4UDP7, true},
		{"ipv4 udp 7", "udp port 7", layers.LinkTypeIPv4, ipv4UDP7, true},
		{"ipv6 udp 7", "udp port 7", layers.LinkTypeIPv6, ipv6UDP7, true},
		{"null udp 7", "udp port 7", layers.LinkTypeNull, nullIPv4() + ipv4UDP7, true},
		{"empty accepts all", "", layers.LinkTypeEthernet, ethernetIPv4 + ipv4TCP80, true},
		// Cut by a snap length before the ports: the program cannot load
		// them and rejects the frame, as libpcap's does.
		{"truncated", "udp port 7", layers.LinkTypeEthernet, ethernetIPv4 + ipv4UDP7[:strings.Index(ipv4UDP7, "9c 40")], false},
		{"empty frame", "udp port 7", layers.LinkTypeEthernet, "", false},
		// libpcap cannot compile "udp" for a link type it does not know:
		// no frame of it matches.
		{"unknown link type", "udp port 7", 4000, ipv4UDP7, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			flt, err := CompileFilter(tt.expr)
			if err != nil {
				t.Fatal(err)
			}
			data := frameHex(t, tt.frame)
			f := capture.Frame{Data: data, CaptureLength: len(data), Length: len(data), LinkType: tt.linkType}
			if got := flt.Match(&f); got != tt.want {
				t.Errorf("%q on %v frame: Match = %v, want %v", tt.expr, tt.linkType, got, tt.want)
			}
			// Again, from the cache.
			if got := flt.Match(&f); got != tt.want {
				t.Errorf("%q on %v frame, second time: Match = %v, want %v", tt.expr, tt.linkType, got, tt.want)
			}
		})
	}
}

func TestCompileFilterError(t *testing.T) {
	tests := []struct {
		expr string
		want string
	}{
		{"udp prot 7", `capture/live: bpf "udp prot 7": syntax error`},
		{"host 1.2.3.4.5", `capture/live: bpf "host 1.2.3.4.5": unknown host '1.2.3.4.5'`},
	}
	for _, tt := range tests {
		_, err := CompileFilter(tt.expr)
		if err == nil || err.Error() != tt.want {
			t.Errorf("CompileFilter(%q) = %v, want %s", tt.expr, err, tt.want)
		}
	}
}

// The cache of programs is bounded: past maxLinkTypes, frames still match
// correctly, compiled each time.
func TestBPFFilterManyLinkTypes(t *testing.T) {
	flt, err := CompileFilter("udp port 7")
	if err != nil {
		t.Fatal(err)
	}
	raw := frameHex(t, ipv4UDP7)
	for lt := layers.LinkType(4000); lt < 4000+2*maxLinkTypes; lt++ {
		flt.Match(&capture.Frame{Data: raw, LinkType: lt})
	}
	if n := len(*flt.progs.Load()); n != maxLinkTypes {
		t.Errorf("cached %d programs, want the bound %d", n, maxLinkTypes)
	}
	if !flt.Match(&capture.Frame{Data: raw, LinkType: layers.LinkTypeRaw}) {
		t.Error("raw UDP/7 frame does not match once the cache is full")
	}
}

func TestBPFFilterAllocs(t *testing.T) {
	flt, err := CompileFilter("udp port 7 or tcp port 7")
	if err != nil {
		t.Fatal(err)
	}
	eth := frameHex(t, ethernetIPv4+ipv4UDP7)
	sll := frameHex(t, linuxSLLIPv4+ipv4TCP80)
	frames := []capture.Frame{
		{Data: eth, LinkType: layers.LinkTypeEthernet},
		{Data: sll, LinkType: layers.LinkTypeLinuxSLL},
	}
	for i := range frames {
		flt.Match(&frames[i]) // compile each link type's program once
	}
	allocs := testing.AllocsPerRun(1000, func() {
		for i := range frames {
			flt.Match(&frames[i])
		}
	})
	if allocs != 0 {
		t.Errorf("Match allocates %v times per run, want 0", allocs)
	}
}

// Match is safe for concurrent use, also while link types are compiled.
func TestBPFFilterConcurrent(t *testing.T) {
	flt, err := CompileFilter("udp port 7")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		lt    layers.LinkType
		frame []byte
	}{
		{layers.LinkTypeEthernet, frameHex(t, ethernetIPv4+ipv4UDP7)},
		{layers.LinkTypeLinuxSLL, frameHex(t, linuxSLLIPv4+ipv4UDP7)},
		{layers.LinkTypeRaw, frameHex(t, ipv4UDP7)},
		{layers.LinkTypeIPv4, frameHex(t, ipv4UDP7)},
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				c := cases[(g+i)%len(cases)]
				if !flt.Match(&capture.Frame{Data: c.frame, LinkType: c.lt}) {
					t.Errorf("UDP/7 frame of link type %v does not match", c.lt)
					return
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkBPFFilterMatch(b *testing.B) {
	flt, err := CompileFilter("udp port 7")
	if err != nil {
		b.Fatal(err)
	}
	data := frameHex(b, ethernetIPv4+ipv4UDP7)
	f := capture.Frame{Data: data, LinkType: layers.LinkTypeEthernet}
	b.ReportAllocs()
	for b.Loop() {
		flt.Match(&f)
	}
}
