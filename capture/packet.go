// Package capture turns frames from capture files and live interfaces into
// decoded packet values. It is the first stage of the pipeline:
// capture → detect → sinks.
package capture

import (
	"net/netip"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// Frame is one captured frame as a Source delivers it.
//
// Data is borrowed: it stays valid only until the next call to ReadFrame on
// the Source that filled it. Copy it to keep it.
type Frame struct {
	Data      []byte
	Timestamp time.Time
	// CaptureLength is len(Data); Length is the frame's length on the wire,
	// which is larger when the capture was cut by a snap length.
	CaptureLength int
	Length        int
	LinkType      layers.LinkType
	// Interface is the index of the capture interface (pcapng interface
	// id, or the worker's interface for live capture); 0 otherwise.
	Interface int
	// Sample is set when the frame is not a captured one but what a
	// router's telemetry reported (see Sampled): the zero value for a
	// captured frame.
	Sample Sampled
}

// Protocol numbers the decoder fills into Packet.Proto.
const (
	ProtoTCP = 6
	ProtoUDP = 17
)

// TCP flag bits as they appear in Packet.TCPFlags (the low byte of the TCP
// header's flags field).
const (
	TCPFin = 0x01
	TCPSyn = 0x02
	TCPRst = 0x04
	TCPPsh = 0x08
	TCPAck = 0x10
	TCPUrg = 0x20
)

// Packet is one decoded packet. The decoder overwrites every field on each
// call, so a Packet can be reused without clearing; except for a packet it
// Skipped, of which only Timestamp and Skipped are valid.
//
// Src and Dst are valid when the frame carried IPv4 or IPv6 (Src.IsValid()).
// SrcPort, DstPort and TCPFlags are valid when HasPorts is true: for TCP and
// UDP datagrams that are not fragments, for first fragments, and for later
// fragments whose first fragment was seen (ports then come from the fragment
// table).
type Packet struct {
	Timestamp time.Time
	LinkType  layers.LinkType
	// VLANs holds up to two 802.1Q/802.1ad tags, outermost first; NumVLANs
	// says how many are valid (more tags are skipped and not recorded).
	// They are the tags of the Ethernet header nearest the packet: in a
	// tunnel that carries Ethernet, the inner frame's, or ERSPAN's VLAN
	// field when the mirrored frame has no tag of its own.
	VLANs    [2]uint16
	NumVLANs uint8

	Src, Dst netip.Addr
	// Proto is the transport protocol number (ProtoUDP, ProtoTCP, ...),
	// after any IPv6 extension headers.
	Proto uint8
	// TTL is the IPv4 TTL or the IPv6 hop limit.
	TTL uint8
	// IPID is the IPv4 identification, or the IPv6 fragment header's
	// identification (0 when the IPv6 packet has none).
	IPID uint32

	// Fragment is true for any IP fragment (first or later).
	// FragOffset is the fragment's offset in bytes; MoreFragments the MF bit.
	Fragment      bool
	MoreFragments bool
	FragOffset    uint16

	HasPorts         bool
	SrcPort, DstPort uint16
	TCPFlags         uint8

	// Payload is the transport payload (after the UDP or TCP header, or
	// after the IP header of a later fragment), borrowed from the frame: it
	// is valid only until the Source reads the next frame. PayloadLen is the
	// payload's length as the headers declare it, which exceeds
	// len(Payload) when the capture was cut by a snap length.
	Payload    []byte
	PayloadLen int

	// Length is the frame's length on the wire: what rates in bytes and
	// bits per second count. For a tunnelled packet it leaves the
	// encapsulation out, so that rates are those of the packet on its own
	// link: it counts from the Ethernet header nearest the packet inside
	// the tunnel, or from its IP header when the tunnel carries IP.
	Length int

	// Raw is the frame as captured, from its link-layer header on,
	// borrowed like Payload; it may be cut short of what was captured
	// where a stage keeps only a prefix (see the Packet's users). It is
	// what evidence files keep: for a tunnelled packet, the whole
	// encapsulated frame.
	Raw []byte
	// IPOffset is where the IP header of the packet (the innermost one)
	// starts in Raw; valid when Src.IsValid().
	IPOffset int

	// Tunnel says which encapsulations the packet was found in; every
	// field above describes the innermost packet.
	Tunnel Tunnel
	// Tenant is the tunnel identifier that DecoderConfig.Tenant chose, for
	// keeping the state of tenants that reuse addresses apart: 0 when the
	// decoder was not asked for one or the frame has none (and when the
	// identifier is 0).
	Tenant uint32

	// Skipped says the decoder found a TCP or UDP packet on no port of
	// DecoderConfig.Interest by a look at its raw bytes, counted it as
	// decoded, and filled Timestamp only: every other field is stale.
	Skipped bool

	// Sample is the frame's Sample: the zero value for a captured
	// packet, which stands for itself; for router telemetry, what the
	// packet stands for and where it was seen.
	Sample Sampled
}

// Sampled describes a packet that a router's telemetry reported rather
// than one captured here: an sFlow flow sample's packet header, which
// stands for Rate packets of its length, or a NetFlow or IPFIX flow
// record, which stands for its packets and bytes, spread over Span. The
// zero value (Packets 0) is a captured packet: one packet of its Length.
type Sampled struct {
	// Exporter is the router (sFlow agent, NetFlow/IPFIX exporter) that
	// sent it; Format how.
	Exporter netip.Addr
	Format   TelemetryFormat
	// InIf and OutIf are the interface indexes (ifIndex) where the
	// traffic entered and left the exporter; 0 when not known.
	InIf, OutIf uint32
	// Rate is the exporter's sampling: one packet in Rate was looked at
	// (1: all of them). Counts are estimates when it is above 1.
	Rate uint32
	// Packets and Bytes are what the packet stands for, the sampling
	// rate applied: at least 1 packet for telemetry.
	Packets, Bytes uint64
	// Span is how long those packets took: a flow record's duration;
	// 0 for a sampled packet, which stands for one moment.
	Span time.Duration
	// Record says the packet was made from a flow record's fields: it has
	// addresses, ports and lengths but none of the packet's bytes (no
	// payload, no TTL or IP ID).
	Record bool
}

// TelemetryFormat names the telemetry a Sampled packet came in.
type TelemetryFormat uint8

// The telemetry formats.
const (
	TelemetryNone TelemetryFormat = iota
	TelemetrySFlow
	TelemetryNetFlow5
	TelemetryNetFlow9
	TelemetryIPFIX
)

func (f TelemetryFormat) String() string {
	switch f {
	case TelemetrySFlow:
		return "sflow"
	case TelemetryNetFlow5:
		return "netflow5"
	case TelemetryNetFlow9:
		return "netflow9"
	case TelemetryIPFIX:
		return "ipfix"
	}
	return "none"
}

// Tunnel describes the encapsulation a packet arrived in: the outermost
// IP header that carried it, as Suricata's EVE "tunnel" object reports it,
// and the kind and identifier of the outermost and innermost encapsulation
// headers. The zero value (Depth 0) is a packet that was not tunnelled;
// every other field is then zero too.
type Tunnel struct {
	// Depth is the number of encapsulation headers peeled to reach the
	// packet: 1 for VXLAN, 2 for MPLS in GRE. VLAN tags do not count.
	Depth uint8
	// Kind is the outermost encapsulation; ID its identifier where HasID
	// (see TunnelKind for which identifier each kind has).
	Kind  TunnelKind
	HasID bool
	ID    uint32
	// InnerKind, InnerHasID and InnerID are the same for the innermost
	// encapsulation, the one right around the packet; they equal Kind,
	// HasID and ID when Depth is 1.
	InnerKind  TunnelKind
	InnerHasID bool
	InnerID    uint32

	// Src, Dst and Proto are the outermost IP header that carried an
	// encapsulation (Proto: ProtoUDP for VXLAN, GENEVE and GTP-U, 47 for
	// GRE and ERSPAN, 4 or 41 for IP in IP), and SrcPort and DstPort its
	// UDP ports when Proto is ProtoUDP. Src is invalid when none did: MPLS
	// or PPPoE right on the link.
	Src, Dst         netip.Addr
	Proto            uint8
	SrcPort, DstPort uint16

	// Labels holds the labels of the outermost MPLS label stack, outermost
	// first; NumLabels says how many are valid (a deeper stack keeps its
	// first four).
	Labels    [4]uint32
	NumLabels uint8
}

// TunnelKind names an encapsulation the decoder looks into.
type TunnelKind uint8

// The encapsulations, and the identifier each puts in Tunnel.ID.
const (
	TunnelNone     TunnelKind = iota
	TunnelVXLAN               // VXLAN, UDP 4789 and configured ports: the VNI
	TunnelVXLANGPE            // VXLAN-GPE, UDP 4790: the VNI
	TunnelGeneve              // GENEVE, UDP 6081: the VNI
	TunnelGRE                 // GRE carrying IP, Ethernet or MPLS: the key, when the header has one
	TunnelERSPAN1             // ERSPAN type I (GRE 0x88be without sequence number): none
	TunnelERSPAN2             // ERSPAN type II (GRE 0x88be): the session ID
	TunnelERSPAN3             // ERSPAN type III (GRE 0x22eb): the session ID
	TunnelMPLS                // an MPLS label stack: its bottom label, which names the VPN or pseudowire
	TunnelPPPoE               // a PPPoE session: the session ID
	TunnelIPIP                // IPv4 or IPv6 in IPv4 or IPv6 (protocol 4 or 41): none
	TunnelGTPU                // GTP-U, UDP 2152: the TEID
	TunnelNSH                 // a network service header: the service path identifier
	numTunnelKinds
)

var tunnelKindNames = [numTunnelKinds]string{
	TunnelNone:     "none",
	TunnelVXLAN:    "vxlan",
	TunnelVXLANGPE: "vxlan-gpe",
	TunnelGeneve:   "geneve",
	TunnelGRE:      "gre",
	TunnelERSPAN1:  "erspan1",
	TunnelERSPAN2:  "erspan2",
	TunnelERSPAN3:  "erspan3",
	TunnelMPLS:     "mpls",
	TunnelPPPoE:    "pppoe",
	TunnelIPIP:     "ipip",
	TunnelGTPU:     "gtpu",
	TunnelNSH:      "nsh",
}

// String returns the kind's name as stats and alerts spell it.
func (k TunnelKind) String() string {
	if k < numTunnelKinds {
		return tunnelKindNames[k]
	}
	return "unknown"
}

// TunnelKinds lists the kinds in the order of DecodeStats.Tunnels, without
// TunnelNone.
func TunnelKinds() []TunnelKind {
	ks := make([]TunnelKind, 0, numTunnelKinds-1)
	for k := TunnelNone + 1; k < numTunnelKinds; k++ {
		ks = append(ks, k)
	}
	return ks
}

// IsUDP reports whether the packet is UDP.
func (p *Packet) IsUDP() bool { return p.Proto == ProtoUDP }

// IsTCP reports whether the packet is TCP.
func (p *Packet) IsTCP() bool { return p.Proto == ProtoTCP }

// SrcAddrPort returns the source as an address and port.
func (p *Packet) SrcAddrPort() netip.AddrPort { return netip.AddrPortFrom(p.Src, p.SrcPort) }

// DstAddrPort returns the destination as an address and port.
func (p *Packet) DstAddrPort() netip.AddrPort { return netip.AddrPortFrom(p.Dst, p.DstPort) }
