package capture

import (
	"encoding/binary"
	"errors"
	"net/netip"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// ipv4Layer lets a first fragment (offset 0) go on to its UDP or TCP
// header, which it carries; gopacket stops at every fragment. It stops at
// every other protocol, IP in IP included: the decoder follows
// encapsulations itself. It refuses a header that is not IPv4 (version),
// like the kernel.
type ipv4Layer struct {
	layers.IPv4
}

func (ip *ipv4Layer) DecodeFromBytes(data []byte, df gopacket.DecodeFeedback) error {
	if len(data) < 20 || data[0]>>4 != 4 {
		return errMalformed
	}
	ihl, length := int(data[0]&0x0f)*4, int(binary.BigEndian.Uint16(data[2:4]))
	if length == 0 { // TCP segmentation offload: the frame says how long
		length = len(data)
	}
	if ihl < 20 || length < ihl || len(data) < ihl {
		return errMalformed
	}
	for o := data[20:ihl]; len(o) > 0; { // options, as gopacket reads them
		switch o[0] {
		case 0: // end of options
			o = nil
		case 1: // no operation
			o = o[1:]
		default:
			if len(o) < 2 || o[1] < 2 || int(o[1]) > len(o) {
				return errMalformed
			}
			o = o[o[1]:]
		}
	}
	return ip.IPv4.DecodeFromBytes(data, df)
}

func (ip *ipv4Layer) NextLayerType() gopacket.LayerType {
	if ip.FragOffset == 0 {
		switch ip.Protocol {
		case layers.IPProtocolUDP:
			return layers.LayerTypeUDP
		case layers.IPProtocolTCP:
			return layers.LayerTypeTCP
		}
	}
	return gopacket.LayerTypeZero
}

// ipv6Next is the layer after an IPv6 header or extension header whose
// next header is nh: an extension header or a transport the parsers
// decode, or nothing (the decoder follows IP in IP itself).
func ipv6Next(nh layers.IPProtocol) gopacket.LayerType {
	switch nh {
	case layers.IPProtocolUDP:
		return layers.LayerTypeUDP
	case layers.IPProtocolTCP:
		return layers.LayerTypeTCP
	case layers.IPProtocolIPv6HopByHop, layers.IPProtocolIPv6Routing, layers.IPProtocolIPv6Destination,
		layers.IPProtocolIPv6Fragment:
		return nh.LayerType()
	}
	return gopacket.LayerTypeZero
}

// ipv6FragLayer, like ipv4Layer, lets a first fragment go on to its
// transport header.
type ipv6FragLayer struct {
	layers.IPv6Fragment
}

func (f *ipv6FragLayer) NextLayerType() gopacket.LayerType {
	switch {
	case f.FragmentOffset != 0:
		return gopacket.LayerTypeZero
	case f.MoreFragments:
		switch f.NextHeader {
		case layers.IPProtocolUDP, layers.IPProtocolTCP:
			return ipv6Next(f.NextHeader)
		}
		return gopacket.LayerTypeZero
	}
	return ipv6Next(f.NextHeader) // an atomic fragment: the whole packet
}

// extLayer skips IPv6 extension headers.
type extLayer struct{ layers.IPv6ExtensionSkipper }

func (e *extLayer) NextLayerType() gopacket.LayerType { return ipv6Next(e.NextHeader) }

// The layers below check, before gopacket does, what the headers of
// hostile or broken frames most often get wrong (too short, lengths that
// do not add up), and fail with one preallocated error: gopacket's own
// errors are built with fmt.Errorf, an allocation for every such frame.
// What they let through, gopacket still checks.
var errMalformed = errors.New("capture: malformed header")

type sllLayer struct{ layers.LinuxSLL }

func (l *sllLayer) DecodeFromBytes(data []byte, df gopacket.DecodeFeedback) error {
	if len(data) < 16 {
		return errMalformed
	}
	return l.LinuxSLL.DecodeFromBytes(data, df)
}

type sll2Layer struct{ layers.LinuxSLL2 }

func (l *sll2Layer) DecodeFromBytes(data []byte, df gopacket.DecodeFeedback) error {
	if len(data) < 20 {
		return errMalformed
	}
	return l.LinuxSLL2.DecodeFromBytes(data, df)
}

type loopLayer struct{ layers.Loopback }

func (l *loopLayer) DecodeFromBytes(data []byte, df gopacket.DecodeFeedback) error {
	if len(data) < 4 {
		return errMalformed
	}
	return l.Loopback.DecodeFromBytes(data, df)
}

// ipv6Layer refuses, as ipv4Layer does, a header that is not IPv6.
type ipv6Layer struct{ layers.IPv6 }

func (l *ipv6Layer) DecodeFromBytes(data []byte, df gopacket.DecodeFeedback) error {
	if len(data) < 40 || data[0]>>4 != 6 {
		return errMalformed
	}
	return l.IPv6.DecodeFromBytes(data, df)
}

func (l *ipv6Layer) NextLayerType() gopacket.LayerType {
	if l.HopByHop != nil {
		// gopacket decodes hop-by-hop options inside the IPv6 layer.
		return ipv6Next(l.HopByHop.NextHeader)
	}
	return ipv6Next(l.NextHeader)
}

type udpLayer struct{ layers.UDP }

func (l *udpLayer) DecodeFromBytes(data []byte, df gopacket.DecodeFeedback) error {
	if len(data) < 8 {
		return errMalformed
	}
	if n := binary.BigEndian.Uint16(data[4:6]); n != 0 && n < 8 { // 0: a jumbogram's
		return errMalformed
	}
	return l.UDP.DecodeFromBytes(data, df)
}

// NextLayerType ends the parse: nothing after the transport is decoded,
// and gopacket's look-up of the ports would only cost time.
func (l *udpLayer) NextLayerType() gopacket.LayerType { return gopacket.LayerTypeZero }

type tcpLayer struct{ layers.TCP }

func (l *tcpLayer) DecodeFromBytes(data []byte, df gopacket.DecodeFeedback) error {
	if len(data) < 20 {
		return errMalformed
	}
	if off := int(data[12]>>4) * 4; off < 20 || off > len(data) {
		return errMalformed
	}
	return l.TCP.DecodeFromBytes(data, df)
}

func (l *tcpLayer) NextLayerType() gopacket.LayerType { return gopacket.LayerTypeZero }

// parseIP decodes the IP packet at b[off:] into p with gopacket.
func (d *Decoder) parseIP(b []byte, off int, v6 bool, p *Packet) DropReason {
	parser := d.ip4P
	if v6 {
		parser = d.ip6P
	}
	err := parser.DecodeLayers(b[off:], &d.decoded)
	if parser.Truncated {
		d.trunc = true
	}
	p.IPOffset = off
	return d.fill(p, err, v6)
}

// ipPayload returns the payload of the IP packet just decoded: what
// follows its last extension header.
func (d *Decoder) ipPayload() []byte {
	for i := len(d.decoded) - 1; i >= 0; i-- {
		switch d.decoded[i] {
		case layers.LayerTypeIPv4:
			return d.ip4.Payload
		case layers.LayerTypeIPv6:
			return d.ip6.Payload
		case layers.LayerTypeIPv6Fragment:
			return d.frag.Payload
		case layers.LayerTypeIPv6HopByHop, layers.LayerTypeIPv6Routing, layers.LayerTypeIPv6Destination:
			return d.ext.Payload
		}
	}
	return nil
}

// fill copies what the parser decoded into p and classifies failures by
// the layer that should have come next.
func (d *Decoder) fill(p *Packet, err error, v6 bool) DropReason {
	var haveIP bool
	for _, t := range d.decoded {
		switch t {
		case layers.LayerTypeIPv4:
			ip := &d.ip4.IPv4
			p.Src = netip.AddrFrom4([4]byte(ip.SrcIP))
			p.Dst = netip.AddrFrom4([4]byte(ip.DstIP))
			p.Proto = uint8(ip.Protocol)
			p.TTL = ip.TTL
			p.IPID = uint32(ip.Id)
			p.MoreFragments = ip.Flags&layers.IPv4MoreFragments != 0
			p.FragOffset = ip.FragOffset * 8
			p.Fragment = p.MoreFragments || ip.FragOffset != 0
			if p.FragOffset != 0 {
				p.Payload = ip.Payload
				p.PayloadLen = int(ip.Length) - int(ip.IHL)*4
			}
			haveIP = true
		case layers.LayerTypeIPv6:
			ip := &d.ip6.IPv6
			p.Src = netip.AddrFrom16([16]byte(ip.SrcIP))
			p.Dst = netip.AddrFrom16([16]byte(ip.DstIP))
			p.Proto = uint8(ip.NextHeader)
			if ip.HopByHop != nil {
				// gopacket decodes hop-by-hop options inside the IPv6 layer.
				p.Proto = uint8(ip.HopByHop.NextHeader)
			}
			p.TTL = ip.HopLimit
			haveIP = true
		case layers.LayerTypeIPv6Fragment:
			f := &d.frag
			p.Proto = uint8(f.NextHeader)
			p.Fragment = f.FragmentOffset != 0 || f.MoreFragments
			p.MoreFragments = f.MoreFragments
			p.FragOffset = f.FragmentOffset * 8
			p.IPID = f.Identification
			if p.FragOffset != 0 {
				p.Payload = f.Payload
				p.PayloadLen = len(f.Payload)
			}
		case layers.LayerTypeIPv6HopByHop, layers.LayerTypeIPv6Routing, layers.LayerTypeIPv6Destination:
			p.Proto = uint8(d.ext.NextHeader)
		case layers.LayerTypeUDP:
			u := &d.udp.UDP
			p.HasPorts = true
			p.SrcPort, p.DstPort = uint16(u.SrcPort), uint16(u.DstPort)
			p.Payload = u.Payload
			p.PayloadLen = len(u.Payload)
			if u.Length >= 8 {
				p.PayloadLen = int(u.Length) - 8
			}
		case layers.LayerTypeTCP:
			t := &d.tcp.TCP
			p.HasPorts = true
			p.SrcPort, p.DstPort = uint16(t.SrcPort), uint16(t.DstPort)
			p.TCPFlags = tcpFlags(t)
			p.Payload = t.Payload
			p.PayloadLen = len(t.Payload)
		}
	}
	if !haveIP {
		// The parser starts at the IP header: it failed.
		if v6 {
			return DropMalformedIPv6
		}
		return DropMalformedIPv4
	}
	if err == nil {
		return DropNone
	}
	// The parser stopped on a layer it could not decode: blame the layer
	// that should have followed the last good one.
	switch p.Proto {
	case ProtoUDP:
		if !p.HasPorts && !p.Fragment {
			return DropMalformedUDP
		}
	case ProtoTCP:
		if !p.HasPorts && !p.Fragment {
			return DropMalformedTCP
		}
	}
	if p.Src.Is6() && !p.HasPorts {
		return DropMalformedIPv6
	}
	// A transport we do not decode further, with an error past the IP
	// layer (e.g. a bad extension header): keep the IP packet.
	return DropNone
}

func tcpFlags(t *layers.TCP) uint8 {
	var f uint8
	if t.FIN {
		f |= TCPFin
	}
	if t.SYN {
		f |= TCPSyn
	}
	if t.RST {
		f |= TCPRst
	}
	if t.PSH {
		f |= TCPPsh
	}
	if t.ACK {
		f |= TCPAck
	}
	if t.URG {
		f |= TCPUrg
	}
	return f
}
