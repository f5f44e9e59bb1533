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
