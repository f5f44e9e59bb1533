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
// call, so a Packet can be reused without clearing.
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
	// bits per second count.
	Length int

	// Raw is the frame as captured, from its link-layer header on,
	// borrowed like Payload; it may be cut short of what was captured
	// where a stage keeps only a prefix (see the Packet's users). It is
	// what evidence files keep.
	Raw []byte
}

// IsUDP reports whether the packet is UDP.
func (p *Packet) IsUDP() bool { return p.Proto == ProtoUDP }

// IsTCP reports whether the packet is TCP.
func (p *Packet) IsTCP() bool { return p.Proto == ProtoTCP }

// SrcAddrPort returns the source as an address and port.
func (p *Packet) SrcAddrPort() netip.AddrPort { return netip.AddrPortFrom(p.Src, p.SrcPort) }

// DstAddrPort returns the destination as an address and port.
func (p *Packet) DstAddrPort() netip.AddrPort { return netip.AddrPortFrom(p.Dst, p.DstPort) }
