package capture

import (
	"fmt"
	"math/bits"
	"strings"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/cpu"
)

// Decoder fills Packet values from frames. Link layers and
// encapsulations are read by hand, in a loop that follows them to the
// innermost packet; each IP packet is decoded by a preallocated gopacket
// DecodingLayerParser. It allocates nothing per frame. A Decoder belongs
// to one goroutine.
type Decoder struct {
	// The pads keep a Decoder, written for every frame, off the cache
	// lines of its neighbour on the heap: the Decoders of two workers,
	// made one after the other, would otherwise make each other miss.
	_    cpu.CacheLinePad
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
	interest    Interest // nil: every frame is decoded in full

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
	_     cpu.CacheLinePad
}

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
	if cfg.Tenant == TenantNone {
		// A tenant comes from headers the pre-filter does not read.
		d.interest = cfg.Interest
	}
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
	// Interest, when not nil, lets the decoder skip the commonest frames
	// that it says are of no interest (see Packet.Skipped), and read those
	// of interest from their raw bytes, without gopacket, into the same
	// Packet as the full decoding. It is ignored with a Tenant, which only
	// the full decoding finds.
	Interest Interest
}

// Interest tells a Decoder which TCP and UDP packets its caller needs
// decoded in full: the others it may only count (Packet.Skipped).
type Interest interface {
	// Interesting reports whether a TCP or UDP packet from port src to
	// port dst may matter to the caller. The Decoder's goroutine calls it
	// for every frame the pre-filter reads, while the answer may change
	// (a reload): it must be safe for that, and allocate nothing.
	Interesting(src, dst uint16) bool
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
//
// With DecoderConfig.Interest, a frame that the pre-filter reads whole
// (see readPlain) and finds of no interest is counted as decoded, and
// returns DropNone with p.Skipped set and only p.Timestamp filled; one of
// interest is filled from its raw bytes (fillPlain).
func (d *Decoder) Decode(f *Frame, p *Packet) DropReason {
	d.stats.Frames++
	d.stats.Bytes += uint64(max(f.Length, len(f.Data)))
	var pl plainFrame
	plain := d.interest != nil && d.readPlain(f, &pl)
	if plain && !d.interest.Interesting(pl.ports()) {
		d.stats.Decoded++
		d.stats.layers(!pl.v6, pl.proto, int(pl.tags))
		// Not cleared: the caller reads nothing else.
		p.Timestamp, p.Skipped = f.Timestamp, true
		return DropNone
	}
	// Cleared, then set field by field: a composite literal is built on
	// the stack and copied, which stalls on every frame.
	*p = Packet{}
	p.Timestamp, p.LinkType, p.Length = f.Timestamp, f.LinkType, f.Length
	p.Raw = f.Data
	if f.Sample.Packets != 0 {
		p.Sample = f.Sample
	}
	if p.Length < len(f.Data) {
		p.Length = len(f.Data)
	}
	d.raw = f.Data
	d.depth, d.kinds, d.trunc, d.tenantSet, d.spanVLAN = 0, 0, false, false, 0
	switch {
	case f.Sample.Record:
		// A flow record's packet: IP and UDP or TCP headers made from its
		// fields, no payload. Whatever its protocol or ports promise (GRE,
		// IP in IP, VXLAN's port), there is no packet inside to look for.
		if r := d.parseIP(f.Data, 0, f.LinkType == layers.LinkTypeIPv6, p); r != DropNone {
			return d.drop(r)
		}
	case plain:
		fillPlain(&pl, p) // an interesting packet of the commonest kind
	default:
		if r := d.link(f.LinkType, f.Data, p); r != DropNone {
			return d.dropTunnelled(r)
		}
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
	d.stats.layers(p.Src.Is4(), p.Proto, int(p.NumVLANs))
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
