package detect

import (
	"net/netip"
	"testing"
)

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestClassify(t *testing.T) {
	tests := []struct {
		addr string
		want srcClass
	}{
		{"8.8.8.8", srcGlobal},
		{"45.33.0.1", srcGlobal},
		{"192.0.2.10", srcGlobal},   // documentation: lab addresses
		{"198.51.100.7", srcGlobal}, // documentation
		{"203.0.113.9", srcGlobal},  // documentation
		{"192.0.0.9", srcGlobal},    // PCP anycast
		{"198.18.0.1", srcPrivate},  // benchmarking
		{"0.0.0.0", srcPrivate},
		{"0.1.2.3", srcPrivate},
		{"10.1.2.3", srcPrivate},
		{"100.64.0.1", srcPrivate},
		{"169.254.1.1", srcPrivate},
		{"172.31.255.255", srcPrivate},
		{"172.32.0.1", srcGlobal},
		{"192.168.1.1", srcPrivate},
		{"127.0.0.1", srcBogon},
		{"192.0.0.1", srcPrivate}, // DS-Lite
		{"192.0.0.100", srcBogon},
		{"192.0.0.170", srcBogon},
		{"192.88.99.1", srcBogon},
		{"224.0.0.1", srcBogon},
		{"239.255.255.250", srcBogon},
		{"240.0.0.1", srcBogon},
		{"255.255.255.255", srcBogon},
		{"2a00:1450::1", srcGlobal},
		{"2001:db8::1", srcGlobal}, // documentation
		{"2001:4860::8888", srcGlobal},
		{"2001::1", srcGlobal}, // TEREDO
		{"2001:2::1", srcPrivate},
		{"2001:5::1", srcBogon}, // IETF protocol assignments
		{"::", srcPrivate},
		{"::1", srcBogon},
		{"::ffff:10.0.0.1", srcBogon},
		{"64:ff9b::1", srcGlobal},
		{"64:ff9b:1::1", srcPrivate},
		{"100::1", srcPrivate},
		{"fd12::1", srcPrivate},
		{"fe80::1", srcPrivate},
		{"ff02::1", srcBogon},
		{"5f00::1", srcPrivate},
	}
	for _, tt := range tests {
		if got := classify(mustAddr(tt.addr)); got != tt.want {
			t.Errorf("%s: class %d, want %d", tt.addr, got, tt.want)
		}
	}
}

// TestClassifyMatchesTable: classify, with its shortcuts (leading bits,
// IPv4 blocks compared as numbers and listed first), says what the first
// matching block of specials says, for addresses in, at the edges of and
// around every block.
func TestClassifyMatchesTable(t *testing.T) {
	seenV6 := false
	for _, s := range specials {
		if s.prefix.Addr().Is4() && seenV6 {
			t.Fatalf("%v listed after an IPv6 block: classify stops at the first", s.prefix)
		}
		seenV6 = seenV6 || !s.prefix.Addr().Is4()
	}
	table := func(a netip.Addr) srcClass {
		if a.Is4In6() {
			return srcBogon
		}
		for _, s := range specials {
			if s.prefix.Contains(a) {
				return s.class
			}
		}
		return srcGlobal
	}
	check := func(a netip.Addr) {
		if got, want := classify(a), table(a); got != want {
			t.Errorf("%v: %v, the table says %v", a, got, want)
		}
	}
	for _, s := range specials {
		first := s.prefix.Masked().Addr()
		last := first
		for i := s.prefix.Bits(); i < first.BitLen(); i++ {
			b := last.AsSlice()
			b[i/8] |= 0x80 >> (i % 8)
			last, _ = netip.AddrFromSlice(b)
		}
		for _, a := range []netip.Addr{first, last, first.Prev(), last.Next(), first.Next(), last.Prev()} {
			if a.IsValid() {
				check(a)
			}
		}
	}
	for i := range uint32(100_000) {
		check(distinctAddr(i))
	}
}
