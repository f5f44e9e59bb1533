package main

import (
	"net/netip"
	"testing"
	"time"
)

// TestServerCases checks what each server case's README text promises:
// the busy servers look like a random-source flood within any one window
// (at least 1000 sources, 90% of them of one or two packets, the default
// thresholds) but their clients come back in the next window; the SYN
// flood's sources never come back, at its rate.
func TestServerCases(t *testing.T) {
	perWindow := func(p []decoded, to netip.AddrPort) []map[netip.Addr]int {
		var w []map[netip.Addr]int
		for _, q := range p {
			if netip.AddrPortFrom(q.dst, q.dport) != to {
				continue
			}
			i := int(q.at / (5 * time.Second))
			for len(w) <= i {
				w = append(w, map[netip.Addr]int{})
			}
			w[i][q.src]++
		}
		return w
	}
	servers := map[string]netip.AddrPort{
		"busy-dns-authoritative": netip.MustParseAddrPort("198.51.100.54:53"),
		"busy-syslog-collector":  netip.MustParseAddrPort("198.51.100.114:514"),
		"busy-ntp-server":        netip.MustParseAddrPort("198.51.100.123:123"),
	}
	cases := serverScenarios()
	if len(cases) != len(servers)+1 {
		t.Fatalf("%d server cases, checks for %d", len(cases), len(servers)+1)
	}
	for _, s := range cases {
		t.Run(s.name, func(t *testing.T) {
			if string(s.config()) != everyPort {
				t.Errorf("config.yaml %q, want %q", s.config(), everyPort)
			}
			data, _, _, err := s.generate()
			if err != nil {
				t.Fatal(err)
			}
			p := decodeAll(t, data)
			if s.name == "syn-flood-random-sources" {
				checkSYNFlood(t, p)
				return
			}
			server, ok := servers[s.name]
			if !ok {
				t.Fatalf("no check for %s", s.name)
			}
			w := perWindow(p, server)
			if len(w) < 2 {
				t.Fatalf("%d windows of traffic, want at least 2", len(w))
			}
			for i, srcs := range w[:2] {
				few := 0
				for _, n := range srcs {
					if n <= 2 {
						few++
					}
				}
				if len(srcs) < 1000 || few*10 < len(srcs)*9 {
					t.Errorf("window %d: %d sources, %d of them of one or two packets: not like a random-source flood", i, len(srcs), few)
				}
			}
			back := 0
			for a := range w[1] {
				if w[0][a] > 0 {
					back++
				}
			}
			if back*10 < len(w[1])*9 {
				t.Errorf("%d of the %d sources of the second window came in the first: want 90%%", back, len(w[1]))
			}
		})
	}
}

func checkSYNFlood(t *testing.T, p []decoded) {
	t.Helper()
	target := netip.MustParseAddrPort("198.51.100.65:25565")
	toTarget := func(q decoded) bool { return netip.AddrPortFrom(q.dst, q.dport) == target }
	seen := map[netip.Addr]bool{}
	special := newIPv4Set(specialIPv4)
	for _, q := range p {
		if !toTarget(q) {
			continue
		}
		if q.tcpFlags != syn || q.at < synFloodFrom || q.at >= synFloodTo {
			t.Fatalf("packet at %v to the target: flags %v", q.at, q.tcpFlags)
		}
		if seen[q.src] || special.contains(ipv4Number(q.src)) {
			t.Fatalf("source %v repeats or is special-purpose", q.src)
		}
		seen[q.src] = true
	}
	if n := len(seen); n != synFloodPPS*int((synFloodTo-synFloodFrom)/time.Second) {
		t.Errorf("%d SYNs", n)
	}
	// The rate, as a 5 s window measures it: within 1%.
	if n := most(p, toTarget, count); n < synFloodPPS*5*99/100 || n > synFloodPPS*5*101/100 {
		t.Errorf("%d SYNs in 5 s, want %d", n, synFloodPPS*5)
	}
	if last := p[len(p)-1].at; last < synFloodTo+70*time.Second {
		t.Errorf("input ends at %v: too early for an end by timer", last)
	}
}
