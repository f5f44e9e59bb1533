package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// pkt describes one IP packet for the builder. Zero values of the optional
// fields mean: hop limit 64, untagged, MAC addresses derived from the IP
// addresses.
type pkt struct {
	src, dst netip.AddrPort
	ttl      uint8
	// id is the IPv4 identification, and the identification of the IPv6
	// fragment header when the packet is fragmented.
	id   uint32
	vlan uint16
	// srcMAC and dstMAC override the derived addresses: a frame that came
	// through the router, a broadcast.
	srcMAC, dstMAC net.HardwareAddr
	payload        []byte
}

type tcpFlags uint8

const (
	syn tcpFlags = 1 << iota
	rst
	psh
	ack
)

// builder serializes packets into frames with gopacket, reusing one buffer
// and one set of layers: a frame it returns is valid until the next call.
type builder struct {
	buf   gopacket.SerializeBuffer
	opts  gopacket.SerializeOptions
	eth   layers.Ethernet
	tag   layers.Dot1Q
	ip4   layers.IPv4
	ip6   layers.IPv6
	frag  layers.IPv6Fragment
	udpL  layers.UDP
	tcpL  layers.TCP
	icmp  layers.ICMPv4
	stack []gopacket.SerializableLayer
	dgram []byte // a whole UDP datagram, before fragmentation
}

func newBuilder() *builder {
	return &builder{
		buf:  gopacket.NewSerializeBuffer(),
		opts: gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
	}
}

// macFor derives a locally administered unicast MAC from an address:
// 02:ec then the IPv4 address, so tcpdump -e shows which host a frame came
// from, or then a hash of the IPv6 address.
func macFor(a netip.Addr) net.HardwareAddr {
	if a.Is4() {
		b := a.As4()
		return net.HardwareAddr{0x02, 0xec, b[0], b[1], b[2], b[3]}
	}
	h := fnv.New32a()
	h.Write(a.AsSlice())
	return binary.BigEndian.AppendUint32(net.HardwareAddr{0x02, 0xec}, h.Sum32())
}

var (
	broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	// routerMAC is the gateway's: frames from outside that a host did not
	// send itself (spoofed triggers) carry it.
	routerMAC = net.HardwareAddr{0x02, 0xec, 0x00, 0x00, 0x00, 0x01}
)

// begin resets the layer stack to the link and IP layers of p, carrying
// proto, and returns the IP layer.
func (b *builder) begin(p pkt, proto layers.IPProtocol) gopacket.NetworkLayer {
	src, dst := p.src.Addr(), p.dst.Addr()
	ttl := p.ttl
	if ttl == 0 {
		ttl = 64
	}
	b.eth = layers.Ethernet{SrcMAC: p.srcMAC, DstMAC: p.dstMAC}
	if b.eth.SrcMAC == nil {
		b.eth.SrcMAC = macFor(src)
	}
	if b.eth.DstMAC == nil {
		b.eth.DstMAC = macFor(dst)
	}
	ipType := layers.EthernetTypeIPv4
	if src.Is6() {
		ipType = layers.EthernetTypeIPv6
	}
	b.stack = append(b.stack[:0], &b.eth)
	if p.vlan != 0 {
		b.eth.EthernetType = layers.EthernetTypeDot1Q
		b.tag = layers.Dot1Q{VLANIdentifier: p.vlan, Type: ipType}
		b.stack = append(b.stack, &b.tag)
	} else {
		b.eth.EthernetType = ipType
	}
	if src.Is4() {
		b.ip4 = layers.IPv4{
			Version: 4, Id: uint16(p.id), TTL: ttl, Protocol: proto,
			SrcIP: src.AsSlice(), DstIP: dst.AsSlice(),
		}
		b.stack = append(b.stack, &b.ip4)
		return &b.ip4
	}
	b.ip6 = layers.IPv6{
		Version: 6, HopLimit: ttl, NextHeader: proto,
		SrcIP: src.AsSlice(), DstIP: dst.AsSlice(),
	}
	b.stack = append(b.stack, &b.ip6)
	return &b.ip6
}

func (b *builder) serialize() []byte {
	if err := gopacket.SerializeLayers(b.buf, b.opts, b.stack...); err != nil {
		// Every packet is described by this program: a failure is a bug.
		panic(fmt.Sprintf("pcapgen: serialize %v: %v", b.stack, err))
	}
	return b.buf.Bytes()
}

// udp returns the frame of one UDP datagram.
func (b *builder) udp(p pkt) []byte {
	ip := b.begin(p, layers.IPProtocolUDP)
	b.udpL = layers.UDP{SrcPort: layers.UDPPort(p.src.Port()), DstPort: layers.UDPPort(p.dst.Port())}
	b.udpL.SetNetworkLayerForChecksum(ip)
	b.stack = append(b.stack, &b.udpL, gopacket.Payload(p.payload))
	return b.serialize()
}

// ipUDP returns p as a bare IP packet, without a link layer.
func (b *builder) ipUDP(p pkt) []byte {
	ip := b.begin(p, layers.IPProtocolUDP)
	b.stack = b.stack[len(b.stack)-1:] // drop the link layers begin added
	b.udpL = layers.UDP{SrcPort: layers.UDPPort(p.src.Port()), DstPort: layers.UDPPort(p.dst.Port())}
	b.udpL.SetNetworkLayerForChecksum(ip)
	b.stack = append(b.stack, &b.udpL, gopacket.Payload(p.payload))
	return b.serialize()
}

// tcp returns the frame of one TCP segment. A SYN carries an MSS option of
// 1460, as every real stack and nmap send it.
func (b *builder) tcp(p pkt, flags tcpFlags, seq, ackNum uint32, window uint16) []byte {
	ip := b.begin(p, layers.IPProtocolTCP)
	b.tcpL = layers.TCP{
		SrcPort: layers.TCPPort(p.src.Port()), DstPort: layers.TCPPort(p.dst.Port()),
		Seq: seq, Ack: ackNum, Window: window,
		SYN: flags&syn != 0, RST: flags&rst != 0,
		PSH: flags&psh != 0, ACK: flags&ack != 0,
	}
	if flags&syn != 0 {
		b.tcpL.Options = []layers.TCPOption{{
			OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4},
		}}
	}
	b.tcpL.SetNetworkLayerForChecksum(ip)
	b.stack = append(b.stack, &b.tcpL, gopacket.Payload(p.payload))
	return b.serialize()
}

// icmpUnreachable returns the ICMP port unreachable p carries back to the
// sender of the IPv4 packet quoted, quoting its IP header and the first 8
// bytes after it as RFC 792 asks. p's ports are not used; quoted must not
// be a frame the builder returned (it is overwritten).
func (b *builder) icmpUnreachable(p pkt, quoted []byte) []byte {
	ihl := int(quoted[0]&0x0f) * 4
	b.begin(p, layers.IPProtocolICMPv4)
	b.icmp = layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodePort)}
	b.stack = append(b.stack, &b.icmp, gopacket.Payload(quoted[:ihl+8]))
	return b.serialize()
}

// udpFragments cuts the UDP datagram p into fragments that fit mtu and
// calls emit with each frame in order. Only the first fragment carries the
// UDP header; all share p.id and have real offsets and MF bits. The UDP
// checksum covers the whole datagram, as the sender computed it.
func (b *builder) udpFragments(p pkt, mtu int, emit func(i int, frame []byte)) {
	// Serialize the whole datagram once for its length and checksum.
	ip := b.begin(p, layers.IPProtocolUDP)
	b.udpL = layers.UDP{SrcPort: layers.UDPPort(p.src.Port()), DstPort: layers.UDPPort(p.dst.Port())}
	b.udpL.SetNetworkLayerForChecksum(ip)
	if err := gopacket.SerializeLayers(b.buf, b.opts, &b.udpL, gopacket.Payload(p.payload)); err != nil {
		panic(fmt.Sprintf("pcapgen: serialize UDP: %v", err))
	}
	b.dgram = append(b.dgram[:0], b.buf.Bytes()...)

	// Fragment data is a multiple of 8 bytes except in the last fragment.
	per := mtu - 20
	if p.src.Addr().Is6() {
		per = mtu - 40 - 8
	}
	per &^= 7
	for i, off := 0, 0; off < len(b.dgram); i, off = i+1, off+per {
		end := min(off+per, len(b.dgram))
		more := end < len(b.dgram)
		b.begin(p, layers.IPProtocolUDP)
		if p.src.Addr().Is4() {
			b.ip4.FragOffset = uint16(off / 8)
			if more {
				b.ip4.Flags = layers.IPv4MoreFragments
			}
		} else {
			b.ip6.NextHeader = layers.IPProtocolIPv6Fragment
			b.frag = layers.IPv6Fragment{
				NextHeader: layers.IPProtocolUDP, FragmentOffset: uint16(off / 8),
				MoreFragments: more, Identification: p.id,
			}
			b.stack = append(b.stack, &b.frag)
		}
		b.stack = append(b.stack, gopacket.Payload(b.dgram[off:end]))
		emit(i, b.serialize())
	}
}

// encode serializes one application layer (DNS, NTP) into bytes for a
// packet's payload.
func encode(l gopacket.SerializableLayer) []byte {
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, l); err != nil {
		panic(fmt.Sprintf("pcapgen: serialize %v: %v", l.LayerType(), err))
	}
	return bytes.Clone(buf.Bytes())
}
