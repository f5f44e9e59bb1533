package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

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
