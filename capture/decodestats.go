package capture

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
	Bytes   uint64 // their length on the wire
	Decoded uint64 // frames that yielded an IP packet
	// The packets decoded by layer, as Suricata's decoder counters: the
	// delivered packet's IP version and transport, and the frames with a
	// VLAN tag, and with two or more (QinQ).
	IPv4, IPv6, TCP, UDP, VLAN, VLANQinQ uint64
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

// Add adds o's counters to s, as for the decoders of several workers.
func (s *DecodeStats) Add(o DecodeStats) { s.each(&o, func(a *uint64, b uint64) { *a += b }) }

// Sub takes o's counters, counted into s before, out of s: those of frames
// that turned out not to be the capture's (a region of a file read again).
func (s *DecodeStats) Sub(o DecodeStats) { s.each(&o, func(a *uint64, b uint64) { *a -= b }) }

// each applies f to each counter of s with the same counter of o.
func (s *DecodeStats) each(o *DecodeStats, f func(*uint64, uint64)) {
	for _, c := range [...]struct{ a, b *uint64 }{
		{&s.Frames, &o.Frames}, {&s.Bytes, &o.Bytes}, {&s.Decoded, &o.Decoded},
		{&s.IPv4, &o.IPv4}, {&s.IPv6, &o.IPv6}, {&s.TCP, &o.TCP}, {&s.UDP, &o.UDP},
		{&s.VLAN, &o.VLAN}, {&s.VLANQinQ, &o.VLANQinQ}, {&s.Truncated, &o.Truncated},
		{&s.Fragments, &o.Fragments}, {&s.FragmentsMatched, &o.FragmentsMatched},
		{&s.FragmentsEvicted, &o.FragmentsEvicted},
	} {
		f(c.a, *c.b)
	}
	for i := range s.Dropped {
		f(&s.Dropped[i], o.Dropped[i])
	}
	for i := range s.Tunnels {
		t, u := &s.Tunnels[i], &o.Tunnels[i]
		f(&t.Decoded, u.Decoded)
		f(&t.Malformed, u.Malformed)
		f(&t.UnknownPayload, u.UnknownPayload)
		f(&t.NotTunnel, u.NotTunnel)
		f(&t.OtherPort, u.OtherPort)
	}
}

// layers counts a packet decoded: IPv4 or IPv6, its transport, and the
// VLAN tags of its frame.
func (s *DecodeStats) layers(v4 bool, proto uint8, vlans int) {
	if v4 {
		s.IPv4++
	} else {
		s.IPv6++
	}
	switch proto {
	case ProtoTCP:
		s.TCP++
	case ProtoUDP:
		s.UDP++
	}
	if vlans > 0 {
		s.VLAN++
		if vlans > 1 {
			s.VLANQinQ++
		}
	}
}

// DropReasons lists the reasons in the order of DecodeStats.Dropped.
func DropReasons() []DropReason {
	rs := make([]DropReason, 0, numDropReasons-1)
	for r := DropNone + 1; r < numDropReasons; r++ {
		rs = append(rs, r)
	}
	return rs
}
