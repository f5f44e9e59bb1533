package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
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
	_, ok := firstLayer(lt)
	return ok || isRawLinkType(lt)
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

// firstLayer maps a link type to the gopacket layer its frames start with.
func firstLayer(lt layers.LinkType) (gopacket.LayerType, bool) {
	switch lt {
	case layers.LinkTypeEthernet:
		return layers.LayerTypeEthernet, true
	case layers.LinkTypeLinuxSLL:
		return layers.LayerTypeLinuxSLL, true
	case layers.LinkTypeLinuxSLL2:
		return layers.LayerTypeLinuxSLL2, true
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		return layers.LayerTypeLoopback, true
	}
	return 0, false
}

// DropReason says why a frame yielded no IP packet.
type DropReason uint8

const (
	DropNone            DropReason = iota
	DropUnsupportedLink            // the link type is not one we decode
	DropNonIP                      // a valid frame that carries no IP (ARP, LLDP, ...)
	DropMalformedLink              // a link-layer header that does not parse
	DropMalformedIPv4              // a broken IPv4 header
	DropMalformedIPv6              // a broken IPv6 header or extension header
	DropMalformedUDP               // a UDP header that does not parse
	DropMalformedTCP               // a TCP header that does not parse
	numDropReasons
)

var dropReasonNames = [numDropReasons]string{
	DropNone:            "none",
	DropUnsupportedLink: "unsupported_link_type",
	DropNonIP:           "non_ip",
	DropMalformedLink:   "malformed_link",
	DropMalformedIPv4:   "malformed_ipv4",
	DropMalformedIPv6:   "malformed_ipv6",
	DropMalformedUDP:    "malformed_udp",
	DropMalformedTCP:    "malformed_tcp",
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
}

// DropReasons lists the reasons in the order of DecodeStats.Dropped.
func DropReasons() []DropReason {
	rs := make([]DropReason, 0, numDropReasons-1)
	for r := DropNone + 1; r < numDropReasons; r++ {
		rs = append(rs, r)
	}
	return rs
}

// Decoder fills Packet values from frames with a preallocated gopacket
// DecodingLayerParser per link layer. It allocates nothing per frame. A
// Decoder belongs to one goroutine.
type Decoder struct {
	_    cacheLinePad
	eth  ethLayer
	vlan vlanLayer
	sll  sllLayer
	sll2 sll2Layer
	loop loopLayer
	ip4  ipv4Layer
	ip6  ipv6Layer
	ext  layers.IPv6ExtensionSkipper
	frag ipv6FragLayer
	udp  udpLayer
	tcp  tcpLayer

	// parsers, one per first layer; raw-IP link types choose ip4/ip6 by
	// the version nibble.
	ethP, sllP, sll2P, loopP, ip4P, ip6P *gopacket.DecodingLayerParser

	decoded    []gopacket.LayerType // of decodedBuf, kept in the struct
	decodedBuf [16]gopacket.LayerType
	// frags gives later fragments their ports: made at the first
	// fragment (it is large, and most traffic has none), never with
	// skipFrags.
	frags     *Fragments
	skipFrags bool
	stats     DecodeStats
	_         cacheLinePad
}

// cacheLinePad pads a struct that its goroutine writes for every packet,
// so that it shares no cache line with a neighbour on the heap that
// another core writes: the Decoders of two workers, made one after the
// other, would otherwise sit side by side and make each other miss.
type cacheLinePad [64]byte

// fragSlots bounds the fragment table: the first fragments in flight
// whose later fragments we can attribute.
const fragSlots = 1 << 16

// NewDecoder returns a Decoder ready for frames of any supported link type.
func NewDecoder() *Decoder {
	d := &Decoder{}
	d.decoded = d.decodedBuf[:0]
	all := []gopacket.DecodingLayer{&d.eth, &d.vlan, &d.sll, &d.sll2, &d.loop, &d.ip4, &d.ip6,
		&d.ext, &d.frag, &d.udp, &d.tcp}
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
	d.ethP = mk(layers.LayerTypeEthernet)
	d.sllP = mk(layers.LayerTypeLinuxSLL)
	d.sll2P = mk(layers.LayerTypeLinuxSLL2)
	d.loopP = mk(layers.LayerTypeLoopback)
	d.ip4P = mk(layers.LayerTypeIPv4)
	d.ip6P = mk(layers.LayerTypeIPv6)
	return d
}

// Stats returns the decoder's counters.
func (d *Decoder) Stats() DecodeStats {
	s := d.stats
	if d.frags != nil {
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
	parser := d.parser(f.LinkType, f.Data)
	if parser == nil {
		return d.drop(DropUnsupportedLink)
	}
	d.vlan.pkt = p
	d.frag.pkt = p
	err := parser.DecodeLayers(f.Data, &d.decoded)
	r := d.fill(p, err, parser)
	if r != DropNone {
		return d.drop(r)
	}
	if parser.Truncated {
		d.stats.Truncated++
	}
	if p.Fragment {
		d.stats.Fragments++
		if !d.skipFrags {
			if d.frags == nil {
				d.frags = NewFragments()
			}
			d.frags.Attribute(p)
		}
	}
	d.stats.Decoded++
	return DropNone
}

func (d *Decoder) drop(r DropReason) DropReason {
	d.stats.Dropped[r]++
	return r
}

func (d *Decoder) parser(lt layers.LinkType, data []byte) *gopacket.DecodingLayerParser {
	if isRawLinkType(lt) {
		if len(data) == 0 {
			return d.ip4P // fails as a malformed IPv4 header
		}
		if data[0]>>4 == 6 {
			return d.ip6P
		}
		return d.ip4P
	}
	switch lt {
	case layers.LinkTypeEthernet:
		return d.ethP
	case layers.LinkTypeLinuxSLL:
		return d.sllP
	case layers.LinkTypeLinuxSLL2:
		return d.sll2P
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		return d.loopP
	}
	return nil
}

// fill copies what the parser decoded into p and classifies failures by
// the layer that should have come next.
func (d *Decoder) fill(p *Packet, err error, parser *gopacket.DecodingLayerParser) DropReason {
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
			p.Proto = uint8(d.frag.NextHeader)
			if p.FragOffset != 0 {
				p.Payload = d.frag.Payload
				p.PayloadLen = len(d.frag.Payload)
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
	if err == nil {
		if !haveIP {
			return DropNonIP
		}
		return DropNone
	}
	// The parser stopped on a layer it could not decode: blame the layer
	// that should have followed the last good one.
	if !haveIP {
		// Raw-IP frames have no link layer: the IP header itself failed.
		switch {
		case len(d.decoded) == 0 && parser == d.ip4P:
			return DropMalformedIPv4
		case len(d.decoded) == 0 && parser == d.ip6P:
			return DropMalformedIPv6
		}
		return d.linkFailure()
	}
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

// linkFailure says which header failed when no IP header was decoded.
func (d *Decoder) linkFailure() DropReason {
	if n := len(d.decoded); n > 0 {
		switch d.decoded[n-1] {
		case layers.LayerTypeEthernet, layers.LayerTypeDot1Q, layers.LayerTypeLinuxSLL,
			layers.LayerTypeLinuxSLL2, layers.LayerTypeLoopback:
			// The link layer decoded and named IP next, which failed.
			switch d.nextAfterLink() {
			case layers.LayerTypeIPv6:
				return DropMalformedIPv6
			case layers.LayerTypeIPv4:
				return DropMalformedIPv4
			}
		}
	}
	return DropMalformedLink
}

func (d *Decoder) nextAfterLink() gopacket.LayerType {
	switch d.decoded[len(d.decoded)-1] {
	case layers.LayerTypeEthernet:
		return d.eth.NextLayerType()
	case layers.LayerTypeDot1Q:
		return d.vlan.NextLayerType()
	case layers.LayerTypeLinuxSLL:
		return d.sll.NextLayerType()
	case layers.LayerTypeLinuxSLL2:
		return d.sll2.NextLayerType()
	case layers.LayerTypeLoopback:
		return d.loop.NextLayerType()
	}
	return gopacket.LayerTypeZero
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
	k := fragKey{src: p.Src, dst: p.Dst, proto: p.Proto, id: p.IPID}
	if p.FragOffset == 0 {
		if p.HasPorts && f.t.put(k, p.SrcPort, p.DstPort, p.Timestamp) {
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

// Stats returns how many later fragments got ports, and how many first
// fragments were pushed out of the table before their datagram ended.
func (f *Fragments) Stats() (matched, evicted uint64) { return f.matched, f.evicted }

// vlanLayer is a Dot1Q decoder that also records each tag in the packet
// being decoded: a QinQ frame runs it twice, and the parser keeps only the
// last decode.
type vlanLayer struct {
	layers.Dot1Q
	pkt *Packet
}

func (v *vlanLayer) DecodeFromBytes(data []byte, df gopacket.DecodeFeedback) error {
	if len(data) < 4 {
		return errMalformed
	}
	if err := v.Dot1Q.DecodeFromBytes(data, df); err != nil {
		return err
	}
	if n := v.pkt.NumVLANs; int(n) < len(v.pkt.VLANs) {
		v.pkt.VLANs[n] = v.VLANIdentifier
		v.pkt.NumVLANs++
	}
	return nil
}

// ipv4Layer lets a first fragment (offset 0) go on to its UDP or TCP
// header, which it carries; gopacket stops at every fragment. It refuses
// a header that is not IPv4 (version), like the kernel.
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
	return ip.IPv4.DecodeFromBytes(data, df)
}

func (ip *ipv4Layer) NextLayerType() gopacket.LayerType {
	if ip.FragOffset == 0 && ip.Flags&layers.IPv4MoreFragments != 0 {
		switch ip.Protocol {
		case layers.IPProtocolUDP, layers.IPProtocolTCP:
			return ip.Protocol.LayerType()
		}
	}
	return ip.IPv4.NextLayerType()
}

// ipv6FragLayer records the fragment header in the packet and, like
// ipv4Layer, lets a first fragment go on to its transport header.
type ipv6FragLayer struct {
	layers.IPv6Fragment
	pkt *Packet
}

func (f *ipv6FragLayer) DecodeFromBytes(data []byte, df gopacket.DecodeFeedback) error {
	if err := f.IPv6Fragment.DecodeFromBytes(data, df); err != nil {
		return err
	}
	f.pkt.Fragment = f.FragmentOffset != 0 || f.MoreFragments
	f.pkt.MoreFragments = f.MoreFragments
	f.pkt.FragOffset = f.FragmentOffset * 8
	f.pkt.IPID = f.Identification
	return nil
}

func (f *ipv6FragLayer) NextLayerType() gopacket.LayerType {
	if f.FragmentOffset == 0 {
		switch f.NextHeader {
		case layers.IPProtocolUDP, layers.IPProtocolTCP:
			return f.NextHeader.LayerType()
		}
	}
	return f.IPv6Fragment.NextLayerType()
}

// The layers below check, before gopacket does, what the headers of
// hostile or broken frames most often get wrong (too short, lengths that
// do not add up), and fail with one preallocated error: gopacket's own
// errors are built with fmt.Errorf, an allocation for every such frame.
// What they let through, gopacket still checks.
var errMalformed = errors.New("capture: malformed header")

type ethLayer struct{ layers.Ethernet }

func (l *ethLayer) DecodeFromBytes(data []byte, df gopacket.DecodeFeedback) error {
	if len(data) < 14 {
		return errMalformed
	}
	return l.Ethernet.DecodeFromBytes(data, df)
}

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

// fragKey names one fragmented datagram.
type fragKey struct {
	src, dst netip.Addr
	proto    uint8
	id       uint32
}

// fragTable remembers the ports of recent first fragments so that later
// fragments of the same datagram count toward its flow. It is a
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
func (t *fragTable) put(k fragKey, sp, dp uint16, now time.Time) (evicted bool) {
	s := t.slot(k)
	evicted = s.used && s.key != k && now.Sub(s.seen) <= fragTimeout
	*s = fragSlot{key: k, srcPort: sp, dstPort: dp, seen: now, used: true}
	return evicted
}

func (t *fragTable) get(k fragKey, now time.Time) (sp, dp uint16, ok bool) {
	s := t.slot(k)
	if !s.used || s.key != k || now.Sub(s.seen) > fragTimeout {
		return 0, 0, false
	}
	return s.srcPort, s.dstPort, true
}
