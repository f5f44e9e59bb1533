package capture

import (
	"encoding/binary"

	"github.com/gopacket/gopacket/layers"
)

// skip reports whether f is a frame of the commonest kind, read whole from
// its raw bytes, whose TCP or UDP ports d.interest finds of no interest:
// Ethernet with up to two VLAN tags, or raw IP; IPv4 without options that
// is not a fragment, or IPv6 whose next header is TCP or UDP; a transport
// header whole within lengths that add up, and a UDP destination port that
// names no encapsulation. For such a frame the full decoding would count
// it decoded and nothing else (no truncation, fragment or tunnel), which
// is what Decode then does. Any other frame it leaves to the full
// decoding, which judges it as it always has.
func (d *Decoder) skip(f *Frame) bool {
	b := f.Data
	be := binary.BigEndian
	var (
		et   uint16
		off  int
		tags int
	)
	switch {
	case f.LinkType == layers.LinkTypeEthernet:
		if len(b) < 14 {
			return false
		}
		et, off = be.Uint16(b[12:]), 14
		for range 2 { // a third tag is the full decoding's
			if !isVLAN(et) {
				break
			}
			if len(b) < off+4 {
				return false
			}
			et, off = be.Uint16(b[off+2:]), off+4
			tags++
		}
	case isRawLinkType(f.LinkType):
		et = etIPv4
		if len(b) > 0 && b[0]>>4 == 6 {
			et = etIPv6
		}
	default:
		return false
	}
	h := b[off:]
	var (
		t     []byte // the transport header and payload
		proto uint8
	)
	switch et {
	case etIPv4:
		// Version 4, no options; neither MF nor an offset.
		if len(h) < 20 || h[0] != 0x45 || h[6]&0x3f != 0 || h[7] != 0 {
			return false
		}
		tot := int(be.Uint16(h[2:]))
		if tot < 20 || tot > len(h) {
			return false // cut short, or a length for gopacket to judge
		}
		proto, t = h[9], h[20:tot]
	case etIPv6:
		if len(h) < 40 || h[0]>>4 != 6 {
			return false
		}
		n := int(be.Uint16(h[4:]))
		if n == 0 || 40+n > len(h) {
			return false // a jumbogram, or cut short
		}
		proto, t = h[6], h[40:40+n]
	default:
		return false
	}
	switch proto {
	case ProtoTCP:
		if len(t) < 20 || t[12]>>4 < 5 || int(t[12]>>4)*4 > len(t) {
			return false
		}
	case ProtoUDP:
		if len(t) < 8 {
			return false
		}
		if n := int(be.Uint16(t[4:])); n < 8 || n > len(t) {
			return false // malformed, cut short, or a jumbogram
		}
		if d.udpKind(be.Uint16(t[2:])) != TunnelNone {
			return false // a tunnel, or a datagram counted as one
		}
	default:
		return false
	}
	if d.interest.Interesting(be.Uint16(t), be.Uint16(t[2:])) {
		return false
	}
	d.stats.layers(et == etIPv4, proto, tags)
	return true
}
