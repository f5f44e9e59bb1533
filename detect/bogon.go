package detect

import (
	"encoding/binary"
	"net/netip"
)

// Source-address classes, from the IANA IPv4 and IPv6 Special-Purpose
// Address Registries (RFC 6890 and its updates).
type srcClass uint8

const (
	srcGlobal  srcClass = iota // an ordinary, globally reachable address
	srcPrivate                 // valid as a source but not globally reachable (RFC 1918, ULA, ...)
	srcBogon                   // never valid as a source on the wire: evidently forged
)

type special struct {
	prefix netip.Prefix
	class  srcClass
}

// specials lists the special-purpose blocks, most specific first, so that
// the first match decides. Blocks the registries mark "Source: False" are
// bogons; blocks marked "Globally Reachable: False" but valid as a source
// are private. Multicast (224.0.0.0/4, ff00::/8) is not in the registries
// but is never a unicast source either.
//
// The documentation prefixes (RFC 5737, RFC 3849, RFC 9637) are "Source:
// False" too, but they are what lab captures, test suites and examples
// use for ordinary hosts: treating them as forged would turn every example
// into a flood, so they count as ordinary addresses here.
var specials = [...]special{
	// IPv4
	{mustPrefix("0.0.0.0/32"), srcPrivate},     // "this host", DHCP clients
	{mustPrefix("0.0.0.0/8"), srcPrivate},      // "this network"
	{mustPrefix("10.0.0.0/8"), srcPrivate},     // private use
	{mustPrefix("100.64.0.0/10"), srcPrivate},  // shared address space (CGN)
	{mustPrefix("127.0.0.0/8"), srcBogon},      // loopback
	{mustPrefix("169.254.0.0/16"), srcPrivate}, // link local
	{mustPrefix("172.16.0.0/12"), srcPrivate},  // private use
	{mustPrefix("192.0.0.0/29"), srcPrivate},   // DS-Lite
	{mustPrefix("192.0.0.8/32"), srcPrivate},   // IPv4 dummy address
	{mustPrefix("192.0.0.9/32"), srcGlobal},    // PCP anycast
	{mustPrefix("192.0.0.10/32"), srcGlobal},   // TURN anycast
	{mustPrefix("192.0.0.170/31"), srcBogon},   // NAT64/DNS64 discovery
	{mustPrefix("192.0.0.0/24"), srcBogon},     // IETF protocol assignments
	{mustPrefix("192.0.2.0/24"), srcGlobal},    // documentation (TEST-NET-1)
	{mustPrefix("192.88.99.0/24"), srcBogon},   // deprecated 6to4 relay anycast
	{mustPrefix("192.168.0.0/16"), srcPrivate}, // private use
	{mustPrefix("198.18.0.0/15"), srcPrivate},  // benchmarking
	{mustPrefix("198.51.100.0/24"), srcGlobal}, // documentation (TEST-NET-2)
	{mustPrefix("203.0.113.0/24"), srcGlobal},  // documentation (TEST-NET-3)
	{mustPrefix("224.0.0.0/4"), srcBogon},      // multicast
	{mustPrefix("240.0.0.0/4"), srcBogon},      // reserved, and limited broadcast
	// IPv6
	{mustPrefix("::/128"), srcPrivate},         // unspecified (duplicate address detection)
	{mustPrefix("::1/128"), srcBogon},          // loopback
	{mustPrefix("::ffff:0:0/96"), srcBogon},    // IPv4-mapped
	{mustPrefix("64:ff9b:1::/48"), srcPrivate}, // local-use IPv4/IPv6 translation
	{mustPrefix("100::/64"), srcPrivate},       // discard-only
	{mustPrefix("2001::/32"), srcGlobal},       // TEREDO
	{mustPrefix("2001:1::1/128"), srcGlobal},   // PCP anycast
	{mustPrefix("2001:1::2/128"), srcGlobal},   // TURN anycast
	{mustPrefix("2001:2::/48"), srcPrivate},    // benchmarking
	{mustPrefix("2001:3::/32"), srcGlobal},     // AMT
	{mustPrefix("2001:4:112::/48"), srcGlobal}, // AS112-v6
	{mustPrefix("2001:20::/28"), srcGlobal},    // ORCHIDv2
	{mustPrefix("2001:30::/28"), srcGlobal},    // drone remote ID
	{mustPrefix("2001:db8::/32"), srcGlobal},   // documentation
	{mustPrefix("2001::/23"), srcBogon},        // IETF protocol assignments
	{mustPrefix("3fff::/20"), srcGlobal},       // documentation
	{mustPrefix("5f00::/16"), srcPrivate},      // segment routing SIDs
	{mustPrefix("fc00::/7"), srcPrivate},       // unique local
	{mustPrefix("fe80::/10"), srcPrivate},      // link local
	{mustPrefix("ff00::/8"), srcBogon},         // multicast
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// classify returns the source class of a. It first rules out, by the
// leading bits alone, the addresses that no block of another class than
// global contains (the documentation blocks are global too), so that
// ordinary traffic costs a switch; TestClassifyMatchesTable holds the
// switch to the table.
func classify(a netip.Addr) srcClass {
	if a.Is4In6() {
		return srcBogon // an IPv4-mapped address never appears in an IPv6 header
	}
	if a.Is4() {
		b := a.As4()
		switch b[0] {
		case 0, 10, 127:
		case 100: // 100.64.0.0/10
			if b[1]&0xc0 != 64 {
				return srcGlobal
			}
		case 169: // 169.254.0.0/16
			if b[1] != 254 {
				return srcGlobal
			}
		case 172: // 172.16.0.0/12
			if b[1]&0xf0 != 16 {
				return srcGlobal
			}
		case 192: // 192.0.0.0/24, 192.88.99.0/24, 192.168.0.0/16
			if !(b[1] == 0 && b[2] == 0 || b[1] == 88 && b[2] == 99 || b[1] == 168) {
				return srcGlobal
			}
		case 198: // 198.18.0.0/15
			if b[1]&0xfe != 18 {
				return srcGlobal
			}
		default:
			if b[0] < 224 {
				return srcGlobal
			}
		}
		// The IPv4 blocks lead the list: compared as numbers, not
		// netip.Prefix.Contains, for the many real sources in them.
		x := binary.BigEndian.Uint32(b[:])
		for i := range specials {
			p := &specials[i].prefix
			if !p.Addr().Is4() {
				break
			}
			n, shift := p.Addr().As4(), 32-p.Bits()
			if x>>shift == binary.BigEndian.Uint32(n[:])>>shift {
				return specials[i].class
			}
		}
		return srcGlobal
	} else {
		b := a.As16()
		switch {
		case b[0] == 0x00, b[0] == 0x01 && b[1] == 0x00, b[0] == 0x20 && b[1] == 0x01,
			b[0] == 0x3f, b[0] == 0x5f, b[0] >= 0xfc:
		default:
			return srcGlobal
		}
	}
	for i := range specials {
		if specials[i].prefix.Contains(a) {
			return specials[i].class
		}
	}
	return srcGlobal
}
