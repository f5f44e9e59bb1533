package capture

import (
	"encoding/binary"
	"net/netip"

	"github.com/gopacket/gopacket/layers"
)

// plainFrame is what readPlain reads of a frame.
type plainFrame struct {
	ip    []byte // the IP header on
	t     []byte // the transport header and payload, within the IP packet's length
	off   int    // where the IP header starts in the frame
	v6    bool
	proto uint8
	vlans [2]uint16
	tags  uint8
}

// readPlain reports whether f is a frame of the commonest kind, read whole
// from its raw bytes into pl: Ethernet with up to two VLAN tags, or raw
// IP; IPv4 without options that is not a fragment, or IPv6 whose next
// header is TCP or UDP; a transport header whole within lengths that add
// up, and a UDP destination port that names no encapsulation. For such a
// frame the full decoding finds a TCP or UDP packet and nothing else (no
// truncation, fragment or tunnel): the pre-filter counts it decoded when
// its ports are of no interest (Decode), and fillPlain fills its packet as
// the full decoding would, without gopacket. Any other frame it leaves to
// the full decoding, which judges it as it always has.
func (d *Decoder) readPlain(f *Frame, pl *plainFrame) bool {
	b := f.Data
	be := binary.BigEndian
	var et uint16
	switch {
	case f.LinkType == layers.LinkTypeEthernet:
		if len(b) < 14 {
			return false
		}
		et, pl.off = be.Uint16(b[12:]), 14
		for range 2 { // a third tag is the full decoding's
			if !isVLAN(et) {
				break
			}
			if len(b) < pl.off+4 {
				return false
			}
			pl.vlans[pl.tags] = be.Uint16(b[pl.off:]) & 0x0fff
			et, pl.off = be.Uint16(b[pl.off+2:]), pl.off+4
			pl.tags++
		}
	case isRawLinkType(f.LinkType):
		et = etIPv4
		if len(b) > 0 && b[0]>>4 == 6 {
			et = etIPv6
		}
	default:
		return false
	}
	h := b[pl.off:]
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
		pl.proto, pl.t = h[9], h[20:tot]
	case etIPv6:
		if len(h) < 40 || h[0]>>4 != 6 {
			return false
		}
		n := int(be.Uint16(h[4:]))
		if n == 0 || 40+n > len(h) {
			return false // a jumbogram, or cut short
		}
		pl.proto, pl.t, pl.v6 = h[6], h[40:40+n], true
	default:
		return false
	}
	pl.ip = h
	t := pl.t
	switch pl.proto {
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
	return true
}

// ports returns the frame's source and destination ports.
func (pl *plainFrame) ports() (src, dst uint16) {
	return binary.BigEndian.Uint16(pl.t), binary.BigEndian.Uint16(pl.t[2:])
}

// fillPlain fills p, whose frame fields Decode has set, with the packet of
// a plain frame (see readPlain): what the full decoding finds in it, field
// for field (TestPrefilterCaptures and FuzzDecode hold it to that).
func fillPlain(pl *plainFrame, p *Packet) {
	be := binary.BigEndian
	h, t := pl.ip, pl.t
	p.VLANs, p.NumVLANs = pl.vlans, pl.tags
	p.IPOffset = pl.off
	if pl.v6 {
		p.Src, p.Dst = netip.AddrFrom16([16]byte(h[8:24])), netip.AddrFrom16([16]byte(h[24:40]))
		p.TTL = h[7]
	} else {
		p.Src, p.Dst = netip.AddrFrom4([4]byte(h[12:16])), netip.AddrFrom4([4]byte(h[16:20]))
		p.TTL, p.IPID = h[8], uint32(be.Uint16(h[4:]))
	}
	p.Proto, p.HasPorts = pl.proto, true
	p.SrcPort, p.DstPort = pl.ports()
	if pl.proto == ProtoUDP {
		n := int(be.Uint16(t[4:]))
		p.Payload, p.PayloadLen = t[8:n], n-8
		return
	}
	p.TCPFlags = t[13] & (TCPFin | TCPSyn | TCPRst | TCPPsh | TCPAck | TCPUrg)
	p.Payload = t[int(t[12]>>4)*4:]
	p.PayloadLen = len(p.Payload)
}
