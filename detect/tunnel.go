package detect

import (
	"net/netip"
	"strconv"

	"github.com/echowatch/echowatch/capture"
)

// Tunnels and tenants. Detection looks at the innermost packet, so an
// incident is about the addresses inside a tunnel; its alerts also say
// which tunnel its latest packet came in (Alert.Tunnel), and, when the
// decoder keeps tenants apart (Packet.Tenant, from the tunnel identifier
// the operator chose), every table's key holds the tenant: two VPCs that
// both use 10.0.0.0/8 are two victims, two loops, two flows. Allow lists
// and home_net are about addresses and apply in every tenant alike.

// tunnelCopy is what a track keeps of capture.Tunnel: the same fields in
// 60 bytes, the outer addresses as 16 bytes without netip.Addr's zone
// pointer (so that the entries stay cheap for the garbage collector), the
// four 20-bit MPLS labels in 10. With the times that the track keeps as
// Unix nanoseconds since, a track is no larger than before tunnels.
type tunnelCopy struct {
	src, dst         [16]byte // IPv4 as IPv4-mapped; valid with tunAddr
	id, innerID      uint32
	labels           labels
	srcPort, dstPort uint16
	depth            uint8 // 0: not tunnelled, and every field zero
	kind, innerKind  capture.TunnelKind
	proto            uint8
	nlabels          uint8
	flags            uint8
}

// tunnelCopy's flags.
const (
	tunHasID      = 1 << iota // id is valid
	tunInnerHasID             // innerID is valid
	tunAddr                   // src and dst are valid
	tunIs4                    // src and dst are IPv4
)

// set copies t.
func (c *tunnelCopy) set(t *capture.Tunnel) {
	if t.Depth == 0 {
		*c = tunnelCopy{}
		return
	}
	var f uint8
	if t.HasID {
		f |= tunHasID
	}
	if t.InnerHasID {
		f |= tunInnerHasID
	}
	if t.Src.IsValid() {
		f |= tunAddr
		if t.Src.Is4() {
			f |= tunIs4
		}
	}
	*c = tunnelCopy{src: t.Src.As16(), dst: t.Dst.As16(), id: t.ID, innerID: t.InnerID, labels: packLabels(&t.Labels),
		srcPort: t.SrcPort, dstPort: t.DstPort, depth: t.Depth, kind: t.Kind, innerKind: t.InnerKind,
		proto: t.Proto, nlabels: t.NumLabels, flags: f}
}

// tunnel returns the copy as a capture.Tunnel.
func (c *tunnelCopy) tunnel() capture.Tunnel {
	if c.depth == 0 {
		return capture.Tunnel{}
	}
	t := capture.Tunnel{Depth: c.depth, Kind: c.kind, HasID: c.flags&tunHasID != 0, ID: c.id,
		InnerKind: c.innerKind, InnerHasID: c.flags&tunInnerHasID != 0, InnerID: c.innerID,
		Proto: c.proto, SrcPort: c.srcPort, DstPort: c.dstPort, Labels: c.labels.unpack(), NumLabels: c.nlabels}
	switch {
	case c.flags&tunIs4 != 0:
		t.Src, t.Dst = netip.AddrFrom4([4]byte(c.src[12:])), netip.AddrFrom4([4]byte(c.dst[12:]))
	case c.flags&tunAddr != 0:
		t.Src, t.Dst = netip.AddrFrom16(c.src), netip.AddrFrom16(c.dst)
	}
	return t
}

// labels is four MPLS labels of 20 bits, two in each 5 bytes.
type labels [10]byte

func packLabels(l *[4]uint32) labels {
	var b labels
	for i := 0; i < 4; i += 2 {
		x := uint64(l[i]&0xfffff)<<20 | uint64(l[i+1]&0xfffff)
		for j := range 5 {
			b[i/2*5+j] = byte(x >> (32 - 8*j))
		}
	}
	return b
}

func (b *labels) unpack() [4]uint32 {
	var l [4]uint32
	for i := 0; i < 4; i += 2 {
		var x uint64
		for j := range 5 {
			x = x<<8 | uint64(b[i/2*5+j])
		}
		l[i], l[i+1] = uint32(x>>20), uint32(x&0xfffff)
	}
	return l
}

// tenantSeed is what a table's hash seed is xored with for a tenant's
// keys: 0 for tenant 0 (mix(0) is 0), so that without tenants every hash,
// and so every admission, is what it was before tenants existed. Tenant 0,
// the commonest by far, costs a test rather than a mix.
func tenantSeed(tenant uint32) uint64 {
	if tenant == 0 {
		return 0
	}
	return mix(uint64(tenant))
}

// withTenant returns an incident's key in its tenant: the key alone in
// tenant 0, so that ids without tenants stay what they were.
func withTenant(key string, tenant uint32) string {
	if tenant == 0 {
		return key
	}
	return key + " tenant " + strconv.FormatUint(uint64(tenant), 10)
}

// tunnelIDName names the identifier of a kind of encapsulation, in EVE
// and in text.
func tunnelIDName(k capture.TunnelKind) string {
	switch k {
	case capture.TunnelVXLAN, capture.TunnelVXLANGPE, capture.TunnelGeneve:
		return "vni"
	case capture.TunnelGRE:
		return "key"
	case capture.TunnelERSPAN2, capture.TunnelERSPAN3, capture.TunnelPPPoE:
		return "session_id"
	case capture.TunnelMPLS:
		return "label"
	case capture.TunnelGTPU:
		return "teid"
	case capture.TunnelNSH:
		return "spi"
	}
	return "id"
}

// appendTunnelEVE appends Suricata's top-level "tunnel" object: the
// outermost IP header that carried an encapsulation, with its ports for
// UDP, and the depth. Suricata has none for a packet that no IP header
// carried (MPLS or PPPoE on the link), and neither do we.
func appendTunnelEVE(b []byte, t *capture.Tunnel) []byte {
	if t.Depth == 0 || !t.Src.IsValid() {
		return b
	}
	udp := t.Proto == capture.ProtoUDP
	b = append(b, `,"tunnel":{"src_ip":"`...)
	b = t.Src.AppendTo(b)
	b = append(b, '"')
	if udp {
		b = appendUintField(b, "src_port", uint64(t.SrcPort))
	}
	b = append(b, `,"dest_ip":"`...)
	b = t.Dst.AppendTo(b)
	b = append(b, '"')
	if udp {
		b = appendUintField(b, "dest_port", uint64(t.DstPort))
	}
	b = append(b, `,"proto":`...)
	b = appendJSONString(b, protoName(t.Proto))
	b = appendUintField(b, "depth", uint64(t.Depth))
	return append(b, '}')
}

// appendIncidentTunnel appends the incident's "tenant" and "tunnel"
// members: the tenant unless 0, and the outermost encapsulation's kind
// and identifier, the outermost MPLS label stack, and the innermost
// encapsulation when there are several:
//
//	"tunnel":{"kind":"erspan3","session_id":5,"inner":{"kind":"gtpu","teid":4660}}
func appendIncidentTunnel(b []byte, tenant uint32, t *capture.Tunnel) []byte {
	if tenant != 0 {
		b = appendUintField(b, "tenant", uint64(tenant))
	}
	if t.Depth == 0 {
		return b
	}
	b = append(b, `,"tunnel":`...)
	b = appendTunnelKind(b, t.Kind, t.HasID, t.ID)
	if t.NumLabels > 0 {
		b = append(b, `,"labels":[`...)
		for i, l := range t.Labels[:min(t.NumLabels, 4)] {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendUint(b, uint64(l), 10)
		}
		b = append(b, ']')
	}
	if t.Depth > 1 {
		b = append(b, `,"inner":`...)
		b = appendTunnelKind(b, t.InnerKind, t.InnerHasID, t.InnerID)
		b = append(b, '}')
	}
	return append(b, '}')
}

// appendTunnelKind appends {"kind":..,"<id name>":id, unclosed.
func appendTunnelKind(b []byte, k capture.TunnelKind, hasID bool, id uint32) []byte {
	b = append(b, `{"kind":`...)
	b = appendJSONString(b, k.String())
	if hasID {
		b = appendUintField(b, tunnelIDName(k), uint64(id))
	}
	return b
}

// AppendTunnel appends, in words, the tunnel the incident's latest packet
// came in, as the text line, syslog and CEF say it: the outermost
// encapsulation and its identifier, the MPLS labels, the innermost
// encapsulation after '>', and the outer IP header's addresses:
//
//	vxlan vni 42 203.0.113.1->198.51.100.2
//	erspan3 session_id 5 > gtpu teid 4660 192.0.2.1->192.0.2.2
//
// It appends nothing for a packet that came in no tunnel.
func (a *Alert) AppendTunnel(b []byte) []byte {
	t := &a.Tunnel
	if t.Depth == 0 {
		return b
	}
	b = appendTunnelWords(b, t.Kind, t.HasID, t.ID)
	if t.NumLabels > 0 {
		b = append(b, " labels "...)
		for i, l := range t.Labels[:min(t.NumLabels, 4)] {
			if i > 0 {
				b = append(b, '/')
			}
			b = strconv.AppendUint(b, uint64(l), 10)
		}
	}
	if t.Depth > 1 {
		b = append(b, " > "...)
		b = appendTunnelWords(b, t.InnerKind, t.InnerHasID, t.InnerID)
	}
	if t.Src.IsValid() {
		b = append(b, ' ')
		b = t.Src.AppendTo(b)
		b = append(b, "->"...)
		b = t.Dst.AppendTo(b)
	}
	return b
}

func appendTunnelWords(b []byte, k capture.TunnelKind, hasID bool, id uint32) []byte {
	b = append(b, k.String()...)
	if hasID {
		b = append(b, ' ')
		b = append(b, tunnelIDName(k)...)
		b = append(b, ' ')
		b = strconv.AppendUint(b, uint64(id), 10)
	}
	return b
}
