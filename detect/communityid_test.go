package detect

import (
	"net/netip"
	"testing"

	"github.com/echowatch/echowatch/capture"
)

// The examples published with the Community ID specification
// (corelight/community-id-spec) and its reference implementations.
func TestCommunityID(t *testing.T) {
	tests := []struct {
		src, dst string
		proto    uint8
		want     string
	}{
		{"128.232.110.120:34855", "66.35.250.204:80", capture.ProtoTCP, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="},
		{"192.168.1.52:54585", "8.8.8.8:53", capture.ProtoUDP, "1:d/FP5EW3wiY1vCndhwleRRKHowQ="},
		{"[2001:470:e5bf:dead:4957:2174:e82c:4887]:63943", "[2607:f8b0:400c:c03::1a]:25", capture.ProtoTCP, "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4="},
		{"192.168.170.8:7", "192.168.170.56:7", 132, "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs="}, // SCTP
	}
	for _, tt := range tests {
		s, d := netip.MustParseAddrPort(tt.src), netip.MustParseAddrPort(tt.dst)
		if got := CommunityID(s, d, tt.proto); got != tt.want {
			t.Errorf("%s -> %s: %s, want %s", s, d, got, tt.want)
		}
		if got := CommunityID(d, s, tt.proto); got != tt.want {
			t.Errorf("%s -> %s (reversed): %s, want %s", d, s, got, tt.want)
		}
	}
}
