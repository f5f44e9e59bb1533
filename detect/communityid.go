package detect

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"net/netip"
)

// CommunityID returns the Community ID v1 of a flow (seed 0): the string
// that Zeek, Suricata and others print for the same flow, so an analyst can
// pivot between their logs. The endpoints may be given in either order.
func CommunityID(src, dst netip.AddrPort, proto uint8) string {
	return communityID(0, src, dst, proto)
}

func communityID(seed uint16, src, dst netip.AddrPort, proto uint8) string {
	sa, da := src.Addr().Unmap(), dst.Addr().Unmap()
	sp, dp := src.Port(), dst.Port()
	// The spec orders the endpoints so that both directions hash alike:
	// smaller address first, and on equal addresses the smaller port.
	if c := sa.Compare(da); c > 0 || (c == 0 && sp > dp) {
		sa, da, sp, dp = da, sa, dp, sp
	}
	b := make([]byte, 0, 2+16+16+6)
	b = binary.BigEndian.AppendUint16(b, seed)
	b = append(b, sa.AsSlice()...)
	b = append(b, da.AsSlice()...)
	b = append(b, proto, 0)
	b = binary.BigEndian.AppendUint16(b, sp)
	b = binary.BigEndian.AppendUint16(b, dp)
	sum := sha1.Sum(b)
	return "1:" + base64.StdEncoding.EncodeToString(sum[:])
}
