package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Link types the decoder accepts, besides the ones gopacket names.
// Some captures carry the platform's DLT_RAW value instead of
// LINKTYPE_RAW (101).
const (
	dltRaw        layers.LinkType = 12 // DLT_RAW on most systems
	dltRawOpenBSD layers.LinkType = 14 // DLT_RAW on OpenBSD
)

// SupportedLinkType reports whether the decoder can decode frames of link
// type lt.
func SupportedLinkType(lt layers.LinkType) bool {
	switch lt {
	case layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL, layers.LinkTypeLinuxSLL2,
		layers.LinkTypeNull, layers.LinkTypeLoop:
		return true
	}
	return isRawLinkType(lt)
}

// ErrUnsupportedLinkType is wrapped by the error for a capture, file or
// live interface, none of whose frames the decoder could read.
var ErrUnsupportedLinkType = errors.New("unsupported link type")

// CheckLinkType returns nil if the decoder decodes frames of link type lt,
// and otherwise an error, wrapping ErrUnsupportedLinkType, that names lt
// and the link types it decodes.
func CheckLinkType(lt layers.LinkType) error {
	if SupportedLinkType(lt) {
		return nil
	}
	return unsupportedLinkType(lt)
}

// unsupportedLinkType is the error for frames of the link types lts, none
// of which the decoder decodes.
func unsupportedLinkType(lts ...layers.LinkType) error {
	plural := ""
	if len(lts) > 1 {
		plural = "s"
	}
	return fmt.Errorf("%w%s %s: echowatch decodes Ethernet, Linux cooked (SLL, SLL2), raw IP and BSD loopback",
		ErrUnsupportedLinkType, plural, LinkTypeNames(lts))
}

// LinkTypeNames names link types for people, as errors do: each by its
// number, and gopacket's name for it where it has one, "147, 127
// (RadioTap)".
func LinkTypeNames(lts []layers.LinkType) string {
	names := make([]string, len(lts))
	for i, lt := range lts {
		names[i] = strconv.Itoa(int(lt))
		if s := lt.String(); s != "UnknownLinkType" {
			names[i] += " (" + s + ")"
		}
	}
	return strings.Join(names, ", ")
}

func isRawLinkType(lt layers.LinkType) bool {
	switch lt {
	case layers.LinkTypeRaw, dltRaw, dltRawOpenBSD, layers.LinkTypeIPv4, layers.LinkTypeIPv6:
		return true
	}
	return false
}

// DropReason says why a frame yielded no IP packet.
type DropReason uint8

const (
	DropNone                 DropReason = iota
	DropUnsupportedLink                 // the link type is not one we decode
	DropNonIP                           // a valid frame that carries no IP (ARP, LLDP, PPPoE discovery, GTP-U echo, ...)
	DropMalformedLink                   // a link-layer header that does not parse
	DropMalformedIPv4                   // a broken IPv4 header
	DropMalformedIPv6                   // a broken IPv6 header or extension header
	DropMalformedUDP                    // a UDP header that does not parse
	DropMalformedTCP                    // a TCP header that does not parse
	DropMalformedTunnel                 // an encapsulation header that does not parse (GRE, ERSPAN, MPLS, PPPoE, NSH)
	DropUnknownTunnelPayload            // an encapsulation that carries a protocol we do not decode
	DropTunnelTooDeep                   // more than maxTunnelDepth encapsulations
	DropTunnelFragment                  // a later fragment of an encapsulating packet, which holds no header to decode
	numDropReasons
)

var dropReasonNames = [numDropReasons]string{
	DropNone:                 "none",
	DropUnsupportedLink:      "unsupported_link_type",
	DropNonIP:                "non_ip",
	DropMalformedLink:        "malformed_link",
	DropMalformedIPv4:        "malformed_ipv4",
	DropMalformedIPv6:        "malformed_ipv6",
	DropMalformedUDP:         "malformed_udp",
	DropMalformedTCP:         "malformed_tcp",
	DropMalformedTunnel:      "malformed_tunnel",
	DropUnknownTunnelPayload: "unknown_tunnel_payload",
	DropTunnelTooDeep:        "tunnel_too_deep",
	DropTunnelFragment:       "tunnel_fragment",
}

// String returns the reason's name as the stats report it.
func (r DropReason) String() string {
	if r < numDropReasons {
		return dropReasonNames[r]
	}
	return "unknown"
}

// DecodeStats are the decoder's counters.
type DecodeStats struct {
	Frames  uint64 // frames given to Decode
	Decoded uint64 // frames that yielded an IP packet
	// Dropped counts frames that yielded no packet, by reason.
	Dropped [numDropReasons]uint64
	// Truncated counts packets decoded from frames cut short by the snap
	// length or by a lying length field: they are delivered, with what
	// was there.
	Truncated uint64
	// Fragments counts IP fragments; FragmentsMatched the later fragments
	// whose ports were found in the fragment table.
	Fragments        uint64
	FragmentsMatched uint64
	FragmentsEvicted uint64 // first fragments pushed out of the table
	// Tunnels counts frames by encapsulation, indexed by TunnelKind (see
	// TunnelKinds; TunnelNone's entry stays zero).
	Tunnels [numTunnelKinds]TunnelStats
}

// TunnelStats counts the frames of one kind of encapsulation: what the
// decoder looked into, and what it saw but could not.
type TunnelStats struct {
	// Decoded counts frames whose IP packet was found inside a header of
	// this kind (once per frame, however often the kind nests).
	Decoded uint64
	// Malformed counts headers of this kind that did not parse: the
	// frame is dropped as malformed_tunnel.
	Malformed uint64
	// UnknownPayload counts headers of this kind that carry a protocol
	// the decoder does not decode (GRE carrying PPP, MPLS carrying
	// neither IP nor a pseudowire): dropped as unknown_tunnel_payload.
	UnknownPayload uint64
	// NotTunnel counts UDP datagrams to this kind's port whose payload is
	// not such a header: they are delivered as the UDP datagrams they
	// are, as Suricata does, so that a port is no hiding place.
	NotTunnel uint64
	// OtherPort counts, for VXLAN, datagrams to UDP 8472 (Linux's
	// default VXLAN port) with a valid VXLAN header while 8472 is not one
	// of DecoderConfig.VXLANPorts: delivered as plain UDP, unopened.
	OtherPort uint64
}

// DropReasons lists the reasons in the order of DecodeStats.Dropped.
func DropReasons() []DropReason {
	rs := make([]DropReason, 0, numDropReasons-1)
	for r := DropNone + 1; r < numDropReasons; r++ {
		rs = append(rs, r)
	}
	return rs
}

// DecoderConfig says what a Decoder looks for in frames. The zero value
// is NewDecoder's.
type DecoderConfig struct {
	// VXLANPorts are UDP destination ports that carry VXLAN besides 4789,
	// the IANA port: 8472 is Linux's default (flannel). At most 8 (the
	// decoder checks them for every UDP datagram); not 0, nor the port of
	// another encapsulation (4790, 6081, 2152).
	VXLANPorts []uint16
	// Tenant chooses the identifier that fills Packet.Tenant.
	Tenant TenantKey
}

// TenantKey chooses which identifier in a frame is its packet's tenant.
type TenantKey uint8

const (
	TenantNone          TenantKey = iota // Packet.Tenant stays 0
	TenantVNI                            // the VNI of the outermost VXLAN, VXLAN-GPE or GENEVE header
	TenantGREKey                         // the key of the outermost GRE header that has one
	TenantERSPANSession                  // the session ID of the outermost ERSPAN type II or III header
	TenantVLAN                           // the first of Packet.VLANs
	TenantMPLSLabel                      // the bottom label of the outermost MPLS label stack
	TenantTEID                           // the TEID of the outermost GTP-U header
	numTenantKeys
)

var tenantKeyNames = [numTenantKeys]string{
	TenantNone:          "none",
	TenantVNI:           "vni",
	TenantGREKey:        "gre-key",
	TenantERSPANSession: "erspan-session",
	TenantVLAN:          "vlan",
	TenantMPLSLabel:     "mpls-label",
	TenantTEID:          "teid",
}

// String returns the key's name as ParseTenantKey reads it.
func (k TenantKey) String() string {
	if k < numTenantKeys {
		return tenantKeyNames[k]
	}
	return "unknown"
}

// ParseTenantKey reads a TenantKey by its name ("none", "vni", "gre-key",
// "erspan-session", "vlan", "mpls-label", "teid").
func ParseTenantKey(s string) (TenantKey, error) {
	for k, name := range tenantKeyNames {
		if s == name {
			return TenantKey(k), nil
		}
	}
	return 0, fmt.Errorf("capture: tenant key %q: want one of %s", s, strings.Join(tenantKeyNames[:], ", "))
}

// has reports whether headers of kind carry the identifier k names.
func (k TenantKey) has(kind TunnelKind) bool {
	switch k {
	case TenantVNI:
		return kind == TunnelVXLAN || kind == TunnelVXLANGPE || kind == TunnelGeneve
	case TenantGREKey:
		return kind == TunnelGRE
	case TenantERSPANSession:
		return kind == TunnelERSPAN2 || kind == TunnelERSPAN3
	case TenantMPLSLabel:
		return kind == TunnelMPLS
	case TenantTEID:
		return kind == TunnelGTPU
	}
	return false
}

// The UDP ports that name an encapsulation, by destination port as
// Suricata does: a datagram from port 4789 is what it says it is.
const (
	portVXLAN      = 4789
	portVXLANGPE   = 4790
	portGeneve     = 6081
	portGTPU       = 2152
	portLinuxVXLAN = 8472 // counted when not configured: see TunnelStats.OtherPort

	maxVXLANPorts = 8
	// maxTunnelDepth bounds the encapsulations peeled from one frame:
	// GTP-U in MPLS in ERSPAN is three; a frame nested deeper is dropped
	// as tunnel_too_deep, not followed.
	maxTunnelDepth = 8
)

// Decoder fills Packet values from frames. Link layers and
// encapsulations are read by hand, in a loop that follows them to the
// innermost packet; each IP packet is decoded by a preallocated gopacket
// DecodingLayerParser. It allocates nothing per frame. A Decoder belongs
// to one goroutine.
type Decoder struct {
	_    cacheLinePad
	sll  sllLayer
	sll2 sll2Layer
	loop loopLayer
	ip4  ipv4Layer
	ip6  ipv6Layer
	ext  extLayer
	frag ipv6FragLayer
	udp  udpLayer
	tcp  tcpLayer

	// ip4P and ip6P decode an IP packet from its header on, through its
	// extension headers to its transport header.
	ip4P, ip6P *gopacket.DecodingLayerParser

	decoded    []gopacket.LayerType // of decodedBuf, kept in the struct
	decodedBuf [16]gopacket.LayerType
	// frags gives later fragments their ports: made at the first
	// fragment (it is large, and most traffic has none); with skipFrags
	// only to remember fragmented tunnel packets.
	frags     *Fragments
	skipFrags bool

	vxlanPorts  [maxVXLANPorts]uint16
	nVXLANPorts int
	tenant      TenantKey

	// The frame being decoded.
	raw       []byte
	depth     uint8  // encapsulations entered
	kinds     uint16 // bit k: an encapsulation of TunnelKind k was entered
	trunc     bool   // a parser found the frame cut short
	tenantSet bool
	spanVLAN  uint16 // an ERSPAN header's VLAN, for its frame if untagged
	linkOff   int    // where the Ethernet header inside the innermost tunnel starts; -1: none

	noPeek bool // tests: every packet takes peek's slow way

	stats DecodeStats
	_     cacheLinePad
}

// cacheLinePad pads a struct that its goroutine writes for every packet,
// so that it shares no cache line with a neighbour on the heap that
// another core writes: the Decoders of two workers, made one after the
// other, would otherwise sit side by side and make each other miss.
type cacheLinePad [64]byte

// fragSlots bounds the fragment table: the first fragments in flight
// whose later fragments we can attribute.
const fragSlots = 1 << 16

// NewDecoder returns a Decoder ready for frames of any supported link
// type, with the zero DecoderConfig.
func NewDecoder() *Decoder {
	d, _ := NewDecoderWith(DecoderConfig{}) // the zero config is valid
	return d
}

// NewDecoderWith returns a Decoder configured by cfg, or an error naming
// what in cfg is wrong.
func NewDecoderWith(cfg DecoderConfig) (*Decoder, error) {
	if cfg.Tenant >= numTenantKeys {
		return nil, fmt.Errorf("capture: tenant key %d out of range", cfg.Tenant)
	}
	d := &Decoder{tenant: cfg.Tenant}
	for _, port := range cfg.VXLANPorts {
		switch port {
		case portVXLAN:
			continue
		case 0, portVXLANGPE, portGeneve, portGTPU:
			return nil, fmt.Errorf("capture: VXLAN port %d: %s", port, portUse(port))
		}
		if d.isVXLANPort(port) {
			continue
		}
		if d.nVXLANPorts == maxVXLANPorts {
			return nil, fmt.Errorf("capture: more than %d VXLAN ports", maxVXLANPorts)
		}
		d.vxlanPorts[d.nVXLANPorts] = port
		d.nVXLANPorts++
	}
	d.decoded = d.decodedBuf[:0]
	all := []gopacket.DecodingLayer{&d.ip4, &d.ip6, &d.ext, &d.frag, &d.udp, &d.tcp}
	mk := func(first gopacket.LayerType) *gopacket.DecodingLayerParser {
		p := gopacket.NewDecodingLayerParser(first)
		p.SetDecodingLayerContainer(gopacket.DecodingLayerSparse(nil))
		for _, l := range all {
			p.AddDecodingLayer(l)
		}
		// The fragment layer must win over the extension skipper, which
		// claims every IPv6 extension type including fragments.
		p.AddDecodingLayer(&d.frag)
		p.IgnoreUnsupported = true
		return p
	}
	d.ip4P = mk(layers.LayerTypeIPv4)
	d.ip6P = mk(layers.LayerTypeIPv6)
	return d, nil
}

func portUse(port uint16) string {
	switch port {
	case portVXLANGPE:
		return "VXLAN-GPE's port"
	case portGeneve:
		return "GENEVE's port"
	case portGTPU:
		return "GTP-U's port"
	}
	return "not a port"
}

// Stats returns the decoder's counters.
func (d *Decoder) Stats() DecodeStats {
	s := d.stats
	if d.frags != nil && !d.skipFrags {
		s.FragmentsMatched, s.FragmentsEvicted = d.frags.matched, d.frags.evicted
	}
	return s
}

// SkipFragments makes d leave later IP fragments without ports, for when
// several decoders share one stream of frames: a Fragments table that sees
// every fragment of the stream in order then gives them their ports.
func (d *Decoder) SkipFragments() { d.frags, d.skipFrags = nil, true }

// Decode fills p from f and returns DropNone when f carried an IPv4 or IPv6
// packet, or the reason it did not. p.Raw and p.Payload borrow f.Data.
// When the packet was encapsulated, p describes the innermost packet and
// p.Tunnel the encapsulation; the encapsulating packets are not
// delivered. On a drop, p holds what was decoded before the failure.
func (d *Decoder) Decode(f *Frame, p *Packet) DropReason {
	d.stats.Frames++
	// Cleared, then set field by field: a composite literal is built on
	// the stack and copied, which stalls on every frame.
	*p = Packet{}
	p.Timestamp, p.LinkType, p.Length = f.Timestamp, f.LinkType, f.Length
	p.Raw = f.Data
	if p.Length < len(f.Data) {
		p.Length = len(f.Data)
	}
	d.raw = f.Data
	d.depth, d.kinds, d.trunc, d.tenantSet, d.spanVLAN = 0, 0, false, false, 0
	if r := d.link(f.LinkType, f.Data, p); r != DropNone {
		return d.dropTunnelled(r)
	}
	if p.Fragment {
		if p.FragOffset != 0 && d.frags != nil && d.frags.tunnel(p) {
			return d.dropTunnelled(DropTunnelFragment)
		}
		d.stats.Fragments++
		if !d.skipFrags {
			if d.frags == nil {
				d.frags = NewFragments()
			}
			d.frags.Attribute(p)
		}
	}
	if d.trunc {
		d.stats.Truncated++
	}
	if d.depth > 0 {
		// Rates count the packet as its own link carried it, not the
		// tunnel: from its Ethernet header, or its IP header when the
		// tunnel carries IP.
		start := d.linkOff
		if start < 0 {
			start = p.IPOffset
		}
		p.Length -= start
	}
	if d.tenant == TenantVLAN && p.NumVLANs > 0 {
		p.Tenant = uint32(p.VLANs[0])
	}
	d.stats.Decoded++
	return DropNone
}

func (d *Decoder) drop(r DropReason) DropReason {
	d.stats.Dropped[r]++
	return r
}

// dropTunnelled drops a frame, and takes back the counts of the
// encapsulations it was found in: enter counts them as it goes, which
// costs less than counting at the end of every frame.
func (d *Decoder) dropTunnelled(r DropReason) DropReason {
	for k := d.kinds; k != 0; k &= k - 1 {
		d.stats.Tunnels[bits.TrailingZeros16(k)].Decoded--
	}
	return d.drop(r)
}

// Ethertypes, and the values that encapsulation headers name what they
// carry with.
const (
	etIPv4             = 0x0800
	etIPv6             = 0x86dd
	etTEB              = 0x6558 // transparent Ethernet bridging: an Ethernet frame follows
	etVLAN             = 0x8100
	etQinQ             = 0x88a8
	etQinQOld          = 0x9100
	etMPLS             = 0x8847
	etMPLSMulti        = 0x8848
	etPPPoEDisc        = 0x8863
	etPPPoESess        = 0x8864
	etNSH              = 0x894f
	etERSPAN           = 0x88be // in GRE: ERSPAN type I or II
	etERSPAN3          = 0x22eb // in GRE: ERSPAN type III
	etNone      uint16 = 0      // what an encapsulation carries is not one we decode
)

// link reads the frame's link-layer header and decodes what it carries.
func (d *Decoder) link(lt layers.LinkType, data []byte, p *Packet) DropReason {
	var (
		et  uint16
		off int
		ok  bool
	)
	switch lt {
	case layers.LinkTypeEthernet:
		if et, off, ok = ethernet(data, 0, p); !ok {
			return DropMalformedLink
		}
	case layers.LinkTypeLinuxSLL:
		if d.sll.DecodeFromBytes(data, gopacket.NilDecodeFeedback) != nil {
			return DropMalformedLink
		}
		if et, off, ok = vlans(data, 16, uint16(d.sll.EthernetType), p); !ok {
			return DropMalformedLink
		}
	case layers.LinkTypeLinuxSLL2:
		if d.sll2.DecodeFromBytes(data, gopacket.NilDecodeFeedback) != nil {
			return DropMalformedLink
		}
		if et, off, ok = vlans(data, 20, uint16(d.sll2.ProtocolType), p); !ok {
			return DropMalformedLink
		}
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		if d.loop.DecodeFromBytes(data, gopacket.NilDecodeFeedback) != nil {
			return DropMalformedLink
		}
		switch d.loop.NextLayerType() {
		case layers.LayerTypeIPv4:
			et = etIPv4
		case layers.LayerTypeIPv6:
			et = etIPv6
		}
		off = 4
	default:
		if !isRawLinkType(lt) {
			return DropUnsupportedLink
		}
		// An empty frame fails as a malformed IPv4 header.
		et = etIPv4
		if len(data) > 0 && data[0]>>4 == 6 {
			et = etIPv6
		}
	}
	return d.walk(data, off, et, TunnelNone, p)
}

// ethernet reads the Ethernet header at b[off:] and its VLAN tags, and
// returns the ethertype that follows them and where.
func ethernet(b []byte, off int, p *Packet) (et uint16, next int, ok bool) {
	if len(b)-off < 14 {
		return 0, 0, false
	}
	if et = binary.BigEndian.Uint16(b[off+12:]); isVLAN(et) {
		return vlans(b, off+14, et, p)
	}
	return et, off + 14, true
}

// vlans skips the 802.1Q and 802.1ad tags at b[off:], et being the type
// before them, and records them in p, replacing those of an enclosing
// frame: the tags of a packet are those of the Ethernet header nearest it.
func vlans(b []byte, off int, et uint16, p *Packet) (uint16, int, bool) {
	if !isVLAN(et) {
		return et, off, true
	}
	p.NumVLANs = 0
	for isVLAN(et) {
		if len(b)-off < 4 {
			return 0, 0, false
		}
		if n := p.NumVLANs; int(n) < len(p.VLANs) {
			p.VLANs[n] = binary.BigEndian.Uint16(b[off:]) & 0x0fff
			p.NumVLANs++
		}
		et = binary.BigEndian.Uint16(b[off+2:])
		off += 4
	}
	return et, off, true
}

func isVLAN(et uint16) bool { return et == etVLAN || et == etQinQ || et == etQinQOld }

// inner is what an encapsulation header leads to. The functions that read
// headers fill one through a pointer, field by field: returned by value,
// it was stored in pieces and loaded whole, which stalls the core.
type inner struct {
	off, end int        // where what follows starts and ends in the frame
	id       uint32     // the header's identifier, if hasID
	greKey   uint32     // GRE's key, if hasGREKey: ERSPAN's ID does not replace it for tenants
	et       uint16     // what follows, as an ethertype (etNone: not one we decode)
	vlan     uint16     // ERSPAN: the mirrored frame's VLAN
	kind     TunnelKind // the header's kind

	hasID, hasGREKey bool
}

// start readies nx for a header of kind whose packet ends at end.
func (nx *inner) start(kind TunnelKind, end int, hasID bool) {
	*nx = inner{}
	nx.kind, nx.end, nx.hasID = kind, end, hasID
}

// walk decodes what follows a link-layer or encapsulation header, named
// by et and starting at b[off:], to the innermost packet. from is the
// encapsulation whose header named et, which is charged with an et we do
// not decode (TunnelNone: a link layer named it, and the frame is not IP).
//
// The loop ends: every encapsulation it enters counts toward
// maxTunnelDepth, and an Ethernet frame is only entered from one.
func (d *Decoder) walk(b []byte, off int, et uint16, from TunnelKind, p *Packet) DropReason {
	var nx inner
	for {
		var r DropReason
		switch et {
		case etIPv4, etIPv6:
			// carrier and decodedCarrier charge the headers they read
			// with their failures.
			v6 := et == etIPv6
			kind, poff, pend, sure := d.peek(b, off, v6)
			if kind == TunnelVXLAN && d.depth == 0 && d.vxlanOuter(b[:pend], off, poff, v6, p) {
				// The Ethernet frame inside, as etTEB below reads it.
				b, d.linkOff = b[:pend], poff+8
				var ok bool
				if et, off, ok = ethernet(b, poff+8, p); !ok {
					return DropMalformedLink
				}
				continue
			}
			switch {
			case kind != TunnelNone:
				if r = d.carrier(kind, b, off, poff, pend, v6, p, &nx); nx.kind == TunnelNone && r == DropNone {
					// Not the header its port promised: plain UDP.
					return d.parseIP(b, off, v6, p)
				}
			case sure:
				return d.parseIP(b, off, v6, p)
			default:
				if r = d.parseIP(b, off, v6, p); r == DropNone {
					r = d.decodedCarrier(b, p, &nx)
				}
			}
			if nx.kind == TunnelNone || r != DropNone {
				return r
			}
		case etTEB:
			if from == TunnelNone {
				return DropNonIP
			}
			p.VLANs, p.NumVLANs = [2]uint16{}, 0
			d.linkOff = off
			var ok bool
			if et, off, ok = ethernet(b, off, p); !ok {
				return DropMalformedLink
			}
			if p.NumVLANs == 0 && d.spanVLAN != 0 {
				p.VLANs[0], p.NumVLANs = d.spanVLAN, 1
			}
			d.spanVLAN, from = 0, TunnelNone
			continue
		case etMPLS, etMPLSMulti:
			r = d.mpls(b, off, p, &nx)
		case etPPPoESess:
			r = pppoe(b, off, &nx)
		case etNSH:
			r = nsh(b, off, &nx)
		default:
			if from == TunnelNone || et == etPPPoEDisc {
				return DropNonIP
			}
			d.stats.Tunnels[from].UnknownPayload++
			return DropUnknownTunnelPayload
		}
		if r != DropNone {
			return d.failed(nx.kind, r)
		}
		if r = d.enter(p, &nx); r != DropNone {
			return r
		}
		b, off, et, from = b[:nx.end], nx.off, nx.et, nx.kind
	}
}

// vxlanOuter is what carrier and enter do for the commonest carrier, a
// VXLAN datagram in the frame's own IP packet b[off:] (AWS and Azure
// traffic mirroring, Linux vxlan devices), with its header at b[poff:],
// in a third of their instructions: most mirrored traffic comes this way.
// It reports false, and changes nothing, for a datagram that is not
// VXLAN, which the general way then counts.
func (d *Decoder) vxlanOuter(b []byte, off, poff int, v6 bool, p *Packet) bool {
	vni, ok := vxlanVNI(b[poff:])
	if !ok {
		return false
	}
	d.depth = 1
	d.kinds |= 1 << TunnelVXLAN
	d.stats.Tunnels[TunnelVXLAN].Decoded++ // until the frame is dropped
	t := &p.Tunnel
	t.Depth, t.Kind, t.HasID, t.ID = 1, TunnelVXLAN, true, vni
	t.InnerKind, t.InnerHasID, t.InnerID = TunnelVXLAN, true, vni
	if d.tenant == TenantVNI {
		p.Tenant, d.tenantSet = vni, true
	}
	h := b[off:poff]
	if v6 {
		t.Src, t.Dst = netip.AddrFrom16([16]byte(h[8:24])), netip.AddrFrom16([16]byte(h[24:40]))
	} else {
		t.Src, t.Dst = netip.AddrFrom4([4]byte(h[12:16])), netip.AddrFrom4([4]byte(h[16:20]))
	}
	u := b[poff-8 : poff]
	t.Proto, t.SrcPort, t.DstPort = ProtoUDP, binary.BigEndian.Uint16(u), binary.BigEndian.Uint16(u[2:])
	p.VLANs, p.NumVLANs = [2]uint16{}, 0 // the frame inside has its own
	return true
}

// failed charges a header of kind that failed with r to its counters.
func (d *Decoder) failed(kind TunnelKind, r DropReason) DropReason {
	switch r {
	case DropMalformedTunnel:
		d.stats.Tunnels[kind].Malformed++
	case DropUnknownTunnelPayload:
		d.stats.Tunnels[kind].UnknownPayload++
	}
	return r
}

// enter records that the packet is inside nx's encapsulation.
func (d *Decoder) enter(p *Packet, nx *inner) DropReason {
	if d.depth == maxTunnelDepth {
		return DropTunnelTooDeep
	}
	d.depth++
	d.linkOff = -1
	if bit := uint16(1) << nx.kind; d.kinds&bit == 0 {
		d.kinds |= bit
		d.stats.Tunnels[nx.kind].Decoded++ // until the frame is dropped
	}
	t := &p.Tunnel
	t.Depth = d.depth
	if d.depth == 1 {
		t.Kind, t.HasID, t.ID = nx.kind, nx.hasID, nx.id
	}
	t.InnerKind, t.InnerHasID, t.InnerID = nx.kind, nx.hasID, nx.id
	if d.tenant != TenantNone && nx.hasID && !d.tenantSet && d.tenant.has(nx.kind) {
		p.Tenant, d.tenantSet = nx.id, true
	}
	if nx.vlan != 0 {
		if nx.et == etTEB {
			d.spanVLAN = nx.vlan
		} else {
			p.VLANs, p.NumVLANs = [2]uint16{nx.vlan}, 1
		}
	}
	return DropNone
}

// carrier reads the header of the encapsulation kind that peek found in
// the IP packet at b[off:], whose payload is b[poff:pend], into nx, and
// records the packet as the tunnel's carrier if it is the outermost. It
// leaves nx.kind TunnelNone and returns DropNone when a UDP payload is
// not the header its port promised.
func (d *Decoder) carrier(kind TunnelKind, b []byte, off, poff, pend int, v6 bool, p *Packet, nx *inner) DropReason {
	h := b[off:]
	proto := h[9]
	if v6 {
		proto = h[6]
	}
	r := d.carried(kind, proto, b[:pend], poff, p, nx)
	if nx.kind == TunnelNone || r != DropNone || p.Tunnel.Src.IsValid() {
		return r
	}
	t := &p.Tunnel
	if v6 {
		t.Src, t.Dst = netip.AddrFrom16([16]byte(h[8:24])), netip.AddrFrom16([16]byte(h[24:40]))
	} else {
		t.Src, t.Dst = netip.AddrFrom4([4]byte(h[12:16])), netip.AddrFrom4([4]byte(h[16:20]))
	}
	t.Proto = proto
	if proto == ProtoUDP {
		u := b[poff-8:]
		t.SrcPort, t.DstPort = binary.BigEndian.Uint16(u), binary.BigEndian.Uint16(u[2:])
	}
	return DropNone
}

// decodedCarrier looks again at the IP packet p just decoded from b, for
// the encapsulations that peek does not find (behind IPv6 extension
// headers, in first fragments, after a cut). When p carries one, it reads
// its header into nx, records p as the tunnel's carrier if it is the
// outermost, and clears p for the packet inside; otherwise nx.kind is
// TunnelNone and p stays the packet.
func (d *Decoder) decodedCarrier(b []byte, p *Packet, nx *inner) DropReason {
	nx.kind = TunnelNone
	var (
		kind TunnelKind
		pay  []byte
	)
	switch p.Proto {
	case ProtoUDP:
		if !p.HasPorts {
			return DropNone // a later fragment: see Decode
		}
		if kind = d.udpKind(p.DstPort); kind == TunnelNone {
			return DropNone
		}
		pay = d.udp.Payload
	case ipProtoIPv4, ipProtoIPv6, ipProtoGRE:
		if p.FragOffset != 0 {
			return DropTunnelFragment
		}
		kind, pay = TunnelIPIP, d.ipPayload()
		if p.Proto == ipProtoGRE {
			kind = TunnelGRE
		}
	default:
		return DropNone
	}
	// pay is a slice of the frame: where it starts is told by how much
	// of the frame's array lies past it.
	poff := cap(d.raw) - cap(pay)
	r := d.carried(kind, p.Proto, b[:poff+len(pay)], poff, p, nx)
	if nx.kind == TunnelNone || r != DropNone {
		return r
	}
	if p.Fragment {
		// A first fragment: its header is here, the rest of its payload
		// in later fragments that hold nothing to decode.
		d.markTunnelFragment(p)
	}
	if t := &p.Tunnel; !t.Src.IsValid() {
		t.Src, t.Dst, t.Proto, t.SrcPort, t.DstPort = p.Src, p.Dst, p.Proto, p.SrcPort, p.DstPort
	}
	resetIP(p)
	return DropNone
}

// IP protocol numbers of the encapsulations carried right on IP.
const (
	ipProtoIPv4 = 4
	ipProtoIPv6 = 41
	ipProtoGRE  = 47
)

// peek tells, from a few bytes, whether the IP packet at b[off:] carries
// an encapsulation, so that plain packets pay a few compares and a
// tunnel's carrier is not decoded by gopacket at all. For a carrier it
// returns the encapsulation's kind and where its payload lies; it finds
// those only in unfragmented packets whose lengths add up, without IPv4
// options or IPv6 extension headers. sure reports whether the answer is
// final; otherwise the packet is decoded and then looked at again.
func (d *Decoder) peek(b []byte, off int, v6 bool) (kind TunnelKind, poff, pend int, sure bool) {
	if d.noPeek {
		return
	}
	h := b[off:]
	if !v6 {
		if len(h) < 20 {
			return
		}
		proto := h[9]
		ihl := int(h[0]&0x0f) * 4
		switch proto {
		case ProtoUDP:
			if len(h) < ihl+4 {
				return
			}
			if kind = d.udpKind(binary.BigEndian.Uint16(h[ihl+2:])); kind == TunnelNone {
				return TunnelNone, 0, 0, true
			}
		case ipProtoIPv4, ipProtoIPv6:
			kind = TunnelIPIP
		case ipProtoGRE:
			kind = TunnelGRE
		default:
			return TunnelNone, 0, 0, true
		}
		// Options (IHL over 5) are left to gopacket, which checks them.
		tot := int(binary.BigEndian.Uint16(h[2:]))
		if h[0] != 0x45 || tot < 20 || tot > len(h) || h[6]&0x3f != 0 || h[7] != 0 {
			return TunnelNone, 0, 0, false
		}
		return peekPayload(kind, b, off+ihl, off+tot, proto)
	}
	if len(h) < 40 {
		return
	}
	nh := h[6]
	switch nh {
	case ProtoUDP:
		if len(h) < 44 {
			return
		}
		if kind = d.udpKind(binary.BigEndian.Uint16(h[42:])); kind == TunnelNone {
			return TunnelNone, 0, 0, true
		}
	case ipProtoIPv4, ipProtoIPv6:
		kind = TunnelIPIP
	case ipProtoGRE:
		kind = TunnelGRE
	case 0, 43, 44, 60: // hop-by-hop, routing, fragment, destination options
		return
	default:
		return TunnelNone, 0, 0, true
	}
	plen := int(binary.BigEndian.Uint16(h[4:]))
	if h[0]>>4 != 6 || plen == 0 || 40+plen > len(h) {
		return TunnelNone, 0, 0, false
	}
	return peekPayload(kind, b, off+40, off+40+plen, nh)
}

// peekPayload finishes peek for a carrier whose IP payload is b[poff:pend].
func peekPayload(kind TunnelKind, b []byte, poff, pend int, proto uint8) (TunnelKind, int, int, bool) {
	if proto != ProtoUDP {
		return kind, poff, pend, true
	}
	u := b[poff:pend]
	if len(u) < 8 {
		return TunnelNone, 0, 0, false
	}
	n := int(binary.BigEndian.Uint16(u[4:]))
	if n < 8 || n > len(u) {
		return TunnelNone, 0, 0, false
	}
	return kind, poff + 8, poff + n, true
}

// udpKind returns the encapsulation that UDP destination port port
// carries, or TunnelNone.
func (d *Decoder) udpKind(port uint16) TunnelKind {
	switch port {
	case portVXLAN:
		return TunnelVXLAN
	case portVXLANGPE:
		return TunnelVXLANGPE
	case portGeneve:
		return TunnelGeneve
	case portGTPU:
		return TunnelGTPU
	}
	if d.nVXLANPorts != 0 && d.isVXLANPort(port) {
		return TunnelVXLAN
	}
	if port == portLinuxVXLAN {
		return tunnelVXLANOtherPort
	}
	return TunnelNone
}

// tunnelVXLANOtherPort is udpKind's answer for UDP 8472 while it is not a
// VXLAN port: a datagram looked at, counted, and delivered unopened.
const tunnelVXLANOtherPort = numTunnelKinds

func (d *Decoder) isVXLANPort(port uint16) bool {
	for _, p := range d.vxlanPorts[:d.nVXLANPorts] {
		if p == port {
			return true
		}
	}
	return false
}

// carried reads the header of the encapsulation kind at b[off:], the
// payload of an IP packet of protocol proto, into nx. It leaves nx.kind
// TunnelNone and returns DropNone when a UDP payload is not the header
// its port promised: the packet is then plain UDP.
func (d *Decoder) carried(kind TunnelKind, proto uint8, b []byte, off int, p *Packet, nx *inner) DropReason {
	var r DropReason
	ok := true
	switch kind {
	case TunnelVXLAN:
		ok = vxlan(b, off, nx)
	case TunnelVXLANGPE:
		ok = vxlanGPE(b, off, nx)
	case TunnelGeneve:
		ok = geneve(b, off, nx)
	case TunnelGTPU:
		r, ok = gtpU(b, off, nx)
	case tunnelVXLANOtherPort:
		if vxlan(b, off, nx) {
			d.stats.Tunnels[TunnelVXLAN].OtherPort++
		}
		nx.kind = TunnelNone
		return DropNone
	case TunnelGRE:
		if r = gre(b, off, nx); nx.hasGREKey && !d.tenantSet && d.tenant == TenantGREKey {
			p.Tenant, d.tenantSet = nx.greKey, true
		}
	case TunnelIPIP:
		nx.start(TunnelIPIP, len(b), false)
		nx.et, nx.off = etIPv4, off
		if proto == ipProtoIPv6 {
			nx.et = etIPv6
		}
	}
	if !ok {
		d.stats.Tunnels[kind].NotTunnel++
		nx.kind = TunnelNone
		return DropNone
	}
	return d.failed(nx.kind, r)
}

// resetIP clears what p says of an IP packet, for the one it carries.
func resetIP(p *Packet) {
	p.Src, p.Dst = netip.Addr{}, netip.Addr{}
	p.Proto, p.TTL, p.IPID = 0, 0, 0
	p.Fragment, p.MoreFragments, p.FragOffset = false, false, 0
	p.HasPorts, p.SrcPort, p.DstPort, p.TCPFlags = false, 0, 0, 0
	p.Payload, p.PayloadLen, p.IPOffset = nil, 0, 0
}

func (d *Decoder) markTunnelFragment(p *Packet) {
	if d.frags == nil {
		d.frags = NewFragments()
	}
	d.frags.markTunnel(p)
}

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
