package capture

import "encoding/binary"

// The encapsulation headers, read by hand: gopacket's DecodingLayerParser
// keeps one layer of each type, so a packet inside a packet would
// overwrite its carrier, and these headers are a few fixed fields each.
// Each function reads the header at b[off:], b ending where the packet
// that carries it ends, and fills nx with where it leads. Every
// length and offset in a header comes from the frame: each is checked
// against b before it is used.

// The UDP encapsulations: each reads its header at b[off:] and reports
// whether there is one: when not, the datagram is plain UDP.

// vxlan reads a VXLAN header (see vxlanVNI); an Ethernet frame follows.
func vxlan(b []byte, off int, nx *inner) bool {
	vni, ok := vxlanVNI(b[off:])
	if !ok {
		return false
	}
	nx.start(TunnelVXLAN, len(b), true)
	nx.et, nx.off, nx.id = etTEB, off+8, vni
	return true
}

// vxlanGPE reads a VXLAN-GPE header: version 0, the I flag, reserved bits
// zero. Without the P flag there is no next protocol, and the payload is
// Ethernet.
//
//	|R|R|Ver|I|P|B|O|       Reserved        | Next Protocol |
//	|       Virtual Network Identifier (VNI)    |   Reserved    |
func vxlanGPE(b []byte, off int, nx *inner) bool {
	h := b[off:]
	if len(h) < 8 || h[0]&0xf8 != 0x08 || h[1]|h[2]|h[7] != 0 {
		return false
	}
	nx.start(TunnelVXLANGPE, len(b), true)
	nx.et = etTEB
	if h[0]&0x04 != 0 {
		nx.et = nextProtocol(h[3])
	} else if h[3] != 0 {
		return false
	}
	nx.id, nx.off = be24(h[4:]), off+8
	return true
}

// geneve reads a GENEVE header (RFC 8926) and skips its options, which
// must fill their length exactly. Its protocol type is an ethertype.
//
//	|Ver|  Opt Len  |O|C|    Rsvd.  |          Protocol Type        |
//	|        Virtual Network Identifier (VNI)       |    Reserved   |
//	|    Option Class   |     Type      |R|R|R| Length  | data ...   (Opt Len words)
func geneve(b []byte, off int, nx *inner) bool {
	h := b[off:]
	if len(h) < 8 || h[0]>>6 != 0 {
		return false
	}
	n := 8 + int(h[0]&0x3f)*4
	if n > len(h) || !geneveOptionsFit(h[8:n]) {
		return false
	}
	nx.start(TunnelGeneve, len(b), true)
	nx.et, nx.id, nx.off = binary.BigEndian.Uint16(h[2:]), be24(h[4:]), off+n
	return true
}

// gtpU reads a GTPv1-U header (see gtpu); r is DropNonIP for a message
// that carries no packet (echo, error indication, end marker).
func gtpU(b []byte, off int, nx *inner) (r DropReason, ok bool) {
	h := b[off:]
	n, end, ok := gtpu(h)
	if !ok {
		return DropNone, false
	}
	nx.start(TunnelGTPU, off+end, true)
	nx.id, nx.off = binary.BigEndian.Uint32(h[4:]), off+n
	if h[1] != gtpTPDU {
		return DropNonIP, true
	}
	nx.et = ipByVersion(b[nx.off:nx.end])
	return DropNone, true
}

// geneveOptionsFit reports whether GENEVE options fill opts exactly.
func geneveOptionsFit(opts []byte) bool {
	i := 0
	for i < len(opts) {
		if len(opts)-i < 4 {
			return false
		}
		i += 4 + int(opts[i+3]&0x1f)*4
	}
	return i == len(opts)
}

// vxlanVNI reads a VXLAN header (RFC 7348) as Suricata does: the I flag
// set and the last reserved byte zero, the other flags and reserved bits
// ignored on receipt as the RFC says (the group policy extension uses
// them, and some mirrors leave them set), and room for an Ethernet
// header after it.
//
//	|R|R|R|R|I|R|R|R|            Reserved                           |
//	|            Virtual Network Identifier (VNI)   |   Reserved    |
func vxlanVNI(h []byte) (uint32, bool) {
	if len(h) < 8+14 || h[0]&0x08 == 0 || h[7] != 0 {
		return 0, false
	}
	return be24(h[4:]), true
}

// GTP-U message types (3GPP TS 29.281).
const (
	gtpEchoRequest      = 1
	gtpEchoResponse     = 2
	gtpErrorIndication  = 26
	gtpSupportedHeaders = 31
	gtpTunnelStatus     = 253
	gtpEndMarker        = 254
	gtpTPDU             = 255 // a user's packet
)

// gtpu reads a GTPv1-U header: the packet it carries starts at h[n:] and
// ends at h[end:], as its length field says (or where h ends, when the
// frame was cut).
//
//	|Ver|P|*|E|S|N| Message Type  |            Length             |
//	|               Tunnel Endpoint Identifier (TEID)               |
//	|        Sequence Number        |   N-PDU No.   | Next Ext Type |  if E, S or N
//
// An extension header is |length in words| ... |next type|.
func gtpu(h []byte) (n, end int, ok bool) {
	// Version 1 and protocol type 1: GTP', the charging protocol, is 0.
	if len(h) < 8 || h[0]&0xf0 != 0x30 {
		return 0, 0, false
	}
	switch h[1] {
	case gtpEchoRequest, gtpEchoResponse, gtpErrorIndication, gtpSupportedHeaders,
		gtpTunnelStatus, gtpEndMarker, gtpTPDU:
	default:
		return 0, 0, false
	}
	n, end = 8, min(8+int(binary.BigEndian.Uint16(h[2:])), len(h))
	if h[0]&0x07 == 0 {
		return n, end, true
	}
	n = 12
	if n > end {
		return 0, 0, false
	}
	for next := h[11]; next != 0; {
		if n >= end {
			return 0, 0, false
		}
		l := int(h[n]) * 4
		if l == 0 || l > end-n {
			return 0, 0, false
		}
		next = h[n+l-1]
		n += l
	}
	return n, end, true
}

// gre reads a GRE header (RFC 2784, with RFC 2890's key and sequence
// number) at b[off:] and, for ERSPAN, the ERSPAN header it leads to.
//
//	|C|R|K|S|s|Recur|  Flags  | Ver |         Protocol Type         |
//	|      Checksum (if C)          |       Reserved1 (if C)        |
//	|                         Key (if K)                            |
//	|                 Sequence Number (if S)                        |
func gre(b []byte, off int, nx *inner) DropReason {
	h := b[off:]
	nx.start(TunnelGRE, len(b), false)
	if len(h) < 4 {
		return DropMalformedTunnel
	}
	// Version 1 is PPTP's enhanced GRE, which carries PPP (mostly
	// encrypted): not followed. In version 0, routing, strict source
	// routing and recursion (RFC 1701) are gone from RFC 2784, and the
	// other flags are reserved.
	switch ver := h[1] & 0x07; {
	case ver == 1:
		return DropUnknownTunnelPayload
	case ver != 0 || h[0]&0x4f != 0 || h[1]&0xf8 != 0:
		return DropMalformedTunnel
	}
	n := 4
	if h[0]&0x80 != 0 {
		n += 4
	}
	if h[0]&0x20 != 0 {
		if len(h) < n+4 {
			return DropMalformedTunnel
		}
		nx.greKey, nx.hasGREKey = binary.BigEndian.Uint32(h[n:]), true
		n += 4
	}
	seq := h[0]&0x10 != 0
	if seq {
		n += 4
	}
	if len(h) < n {
		return DropMalformedTunnel
	}
	switch proto := binary.BigEndian.Uint16(h[2:]); proto {
	case etERSPAN:
		// Type I has no sequence number, and no header of its own: the
		// mirrored frame follows.
		if !seq {
			nx.kind, nx.et, nx.off = TunnelERSPAN1, etTEB, off+n
			return DropNone
		}
		return erspan2(b, off+n, nx)
	case etERSPAN3:
		return erspan3(b, off+n, nx)
	default:
		nx.et, nx.off, nx.id, nx.hasID = proto, off+n, nx.greKey, nx.hasGREKey
		return DropNone
	}
}

// erspan2 reads an ERSPAN type II header, which leads to the mirrored
// Ethernet frame.
//
//	|  Ver  |          VLAN         | COS | En|T|    Session ID     |
//	|      Reserved         |                  Index                |
func erspan2(b []byte, off int, nx *inner) DropReason {
	h := b[off:]
	nx.kind = TunnelERSPAN2
	if len(h) < 8 || h[0]>>4 != 1 {
		return DropMalformedTunnel
	}
	nx.vlan = binary.BigEndian.Uint16(h) & 0x0fff
	nx.id, nx.hasID = uint32(binary.BigEndian.Uint16(h[2:])&0x03ff), true
	nx.et, nx.off = etTEB, off+8
	return DropNone
}

// erspan3 reads an ERSPAN type III header, and its platform-specific
// subheader when the O flag says there is one. Its frame type says
// whether an Ethernet frame or an IP packet follows.
//
//	|  Ver  |          VLAN         | COS |BSO|T|     Session ID    |
//	|                          Timestamp                            |
//	|             SGT               |P|    FT   |   Hw ID   |D|Gra|O|
//	|        Platform-specific subheader, 8 bytes (if O)             |
func erspan3(b []byte, off int, nx *inner) DropReason {
	h := b[off:]
	nx.kind = TunnelERSPAN3
	if len(h) < 12 || h[0]>>4 != 2 {
		return DropMalformedTunnel
	}
	n := 12
	if h[11]&0x01 != 0 {
		n += 8
	}
	if len(h) < n {
		return DropMalformedTunnel
	}
	nx.vlan = binary.BigEndian.Uint16(h) & 0x0fff
	nx.id, nx.hasID = uint32(binary.BigEndian.Uint16(h[2:])&0x03ff), true
	nx.off = off + n
	switch ft := h[10] >> 2 & 0x1f; ft {
	case 0:
		nx.et = etTEB
	case 2:
		nx.et = ipByVersion(h[n:])
	default:
		nx.et = etNone
	}
	return DropNone
}

// mpls reads an MPLS label stack at b[off:] to its bottom entry, and
// tells what follows by its first nibble: IPv4, IPv6, or a pseudowire's
// control word (0000) and an Ethernet frame. The labels of the frame's
// first stack go to p.Tunnel.Labels.
//
//	|                Label                  | TC  |S|      TTL      |
func (d *Decoder) mpls(b []byte, off int, p *Packet, nx *inner) DropReason {
	nx.start(TunnelMPLS, len(b), true)
	first := d.kinds&(1<<TunnelMPLS) == 0
	t := &p.Tunnel
	for {
		if len(b)-off < 4 { // the frame ends before the bottom of the stack
			return DropMalformedTunnel
		}
		e := binary.BigEndian.Uint32(b[off:])
		off += 4
		nx.id = e >> 12
		if first && int(t.NumLabels) < len(t.Labels) {
			t.Labels[t.NumLabels] = nx.id
			t.NumLabels++
		}
		if e&0x100 != 0 {
			break
		}
	}
	if off >= len(b) {
		return DropMalformedTunnel
	}
	nx.off = off
	switch b[off] >> 4 {
	case 4:
		nx.et = etIPv4
	case 6:
		nx.et = etIPv6
	case 0:
		if len(b)-off < 4 {
			return DropMalformedTunnel
		}
		nx.et, nx.off = etTEB, off+4
	default:
		nx.et = etNone
	}
	return DropNone
}

// pppoe reads a PPPoE session header and the PPP protocol after it.
// PPP's own control protocols (LCP, IPCP, ...) are not IP.
//
//	|  Ver  | Type  |     Code      |          Session ID           |
//	|            Length             |  PPP protocol (1 or 2 bytes)  |
func pppoe(b []byte, off int, nx *inner) DropReason {
	h := b[off:]
	nx.start(TunnelPPPoE, len(b), true)
	if len(h) < 8 || h[0] != 0x11 || h[1] != 0 {
		return DropMalformedTunnel
	}
	nx.id = uint32(binary.BigEndian.Uint16(h[2:]))
	nx.end = min(off+6+int(binary.BigEndian.Uint16(h[4:])), len(b)) // or where the frame was cut
	n, proto := 8, binary.BigEndian.Uint16(h[6:])
	if h[6]&0x01 != 0 { // protocol field compression: one byte
		n, proto = 7, uint16(h[6])
	}
	if off+n > nx.end {
		return DropMalformedTunnel
	}
	nx.off = off + n
	switch proto {
	case 0x0021:
		nx.et = etIPv4
	case 0x0057:
		nx.et = etIPv6
	default:
		return DropNonIP
	}
	return DropNone
}

// nsh reads a network service header (RFC 8300); its service path
// identifier is its ID.
//
//	|Ver|O|U|    TTL    |   Length  |U|U|U|U|MD Type| Next Protocol |
//	|          Service Path Identifier (SPI)        | Service Index |
func nsh(b []byte, off int, nx *inner) DropReason {
	h := b[off:]
	nx.start(TunnelNSH, len(b), true)
	if len(h) < 8 || h[0]>>6 != 0 {
		return DropMalformedTunnel
	}
	n := int(h[1]&0x3f) * 4
	switch h[2] & 0x0f {
	case 1: // fixed context headers
		if n != 24 {
			return DropMalformedTunnel
		}
	case 2: // variable length context headers
		if n < 8 {
			return DropMalformedTunnel
		}
	default:
		return DropMalformedTunnel
	}
	if n > len(h) {
		return DropMalformedTunnel
	}
	nx.id = binary.BigEndian.Uint32(h[4:]) >> 8
	nx.et, nx.off = nextProtocol(h[3]), off+n
	return DropNone
}

// nextProtocol maps VXLAN-GPE's and NSH's next protocol numbers.
func nextProtocol(np byte) uint16 {
	switch np {
	case 1:
		return etIPv4
	case 2:
		return etIPv6
	case 3:
		return etTEB
	case 4:
		return etNSH
	case 5:
		return etMPLS
	}
	return etNone
}

// ipByVersion names the IP packet that h starts with by its version.
func ipByVersion(h []byte) uint16 {
	if len(h) > 0 {
		switch h[0] >> 4 {
		case 4:
			return etIPv4
		case 6:
			return etIPv6
		}
	}
	return etNone
}

func be24(b []byte) uint32 { return uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]) }
