package sensor

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/echowatch/echowatch/detect"
)

// An encapsulation for TestEveryKindInEveryEncapsulation: wrap returns a
// frame that carries an Ethernet frame; ethernet says whether the frame
// is carried whole, or only its IP packet (then the packet's length, its
// byte counts and its VLANs differ from the plain frame's, as they should).
type encapsulation struct {
	name     string
	kind     string // the incident's tunnel kind
	ethernet bool
	wrap     func(frame []byte) []byte
}

// Outer headers of the sensor's underlay.
var (
	outerMACs = []byte{0x02, 0, 0, 0, 0xee, 1, 0x02, 0, 0, 0, 0xee, 2}
	outerSrc4 = []byte{198, 19, 9, 1}
	outerDst4 = []byte{198, 19, 9, 2}
	outerSrc6 = []byte{0x20, 0x01, 0x0d, 0xb8, 0xee, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}
	outerDst6 = []byte{0x20, 0x01, 0x0d, 0xb8, 0xee, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}
)

// ethOuter returns an Ethernet header of ethertype et.
func ethOuter(et uint16) []byte { return binary.BigEndian.AppendUint16(bytes.Clone(outerMACs), et) }

// ip4Outer returns an IPv4 header of protocol proto for payload, then payload.
func ip4Outer(proto byte, payload []byte) []byte {
	h := []byte{0x45, 0, 0, 0, 0x12, 0x34, 0, 0, 64, proto, 0, 0}
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(payload)))
	h = append(append(h, outerSrc4...), outerDst4...)
	return append(h, payload...)
}

// ip6Outer returns an IPv6 header of next header nh for payload, then payload.
func ip6Outer(nh byte, payload []byte) []byte {
	h := []byte{0x60, 0, 0, 0, 0, 0, nh, 64}
	binary.BigEndian.PutUint16(h[4:], uint16(len(payload)))
	h = append(append(h, outerSrc6...), outerDst6...)
	return append(h, payload...)
}

// udpOuter returns a UDP header to port dport for payload, then payload.
func udpOuter(dport uint16, payload []byte) []byte {
	h := binary.BigEndian.AppendUint16([]byte{0xc3, 0x50}, dport) // from 50000
	h = binary.BigEndian.AppendUint16(h, uint16(8+len(payload)))
	return append(append(h, 0, 0), payload...)
}

// ipOfFrame returns an Ethernet frame's IP packet past its VLAN tags and
// its IP version, or nil when it carries none.
func ipOfFrame(frame []byte) ([]byte, int) {
	off := 12
	for len(frame) >= off+4 {
		switch binary.BigEndian.Uint16(frame[off:]) {
		case 0x8100, 0x88a8:
			off += 4
			continue
		case 0x0800:
			return frame[off+2:], 4
		case 0x86dd:
			return frame[off+2:], 6
		}
		break
	}
	return nil, 0
}

// carryIP returns wrap applied to the frame's IP packet, and a frame
// that carries no IP packet as it is.
func carryIP(wrap func(ip []byte, version int) []byte) func([]byte) []byte {
	return func(frame []byte) []byte {
		ip, v := ipOfFrame(frame)
		if ip == nil {
			return frame
		}
		return wrap(ip, v)
	}
}

func encapsulations() []encapsulation {
	es := []encapsulation{
		{"vxlan", "vxlan", true, func(f []byte) []byte {
			return append(ethOuter(0x0800), ip4Outer(17, udpOuter(4789, append([]byte{8, 0, 0, 0, 0, 0, 42, 0}, f...)))...)
		}},
		{"geneve-ipv6", "geneve", true, func(f []byte) []byte {
			h := []byte{1, 0, 0x65, 0x58, 0, 0, 43, 0, 0x01, 0x08, 0x01, 0x00} // one empty option (AWS GWLB's class 0x0108)
			return append(ethOuter(0x86dd), ip6Outer(17, udpOuter(6081, append(h, f...)))...)
		}},
		{"gre-key-ethernet", "gre", true, func(f []byte) []byte {
			h := []byte{0x20, 0, 0x65, 0x58, 0, 0, 0, 44}
			return append(ethOuter(0x0800), ip4Outer(47, append(h, f...))...)
		}},
		{"erspan-ii", "erspan2", true, func(f []byte) []byte {
			h := []byte{0x10, 0, 0x88, 0xbe, 0, 0, 0, 1, // GRE: sequence number
				0x10, 0, 0, 45, 0, 0, 0, 0} // ERSPAN II: session 45, no VLAN
			return append(ethOuter(0x0800), ip4Outer(47, append(h, f...))...)
		}},
		{"mpls-pseudowire", "mpls", true, func(f []byte) []byte {
			return append(ethOuter(0x8847), append([]byte{0, 0x2e, 0x01, 64, 0, 0, 0, 0}, f...)...) // label 738, control word
		}},
		{"mpls-ip", "mpls", false, carryIP(func(ip []byte, _ int) []byte {
			return append(ethOuter(0x8847), append([]byte{0, 0x2f, 0x01, 64}, ip...)...) // label 754
		})},
		{"pppoe", "pppoe", false, carryIP(func(ip []byte, v int) []byte {
			h := []byte{0x11, 0, 0, 46, 0, 0, 0, 0x21}
			if v == 6 {
				h[7] = 0x57
			}
			binary.BigEndian.PutUint16(h[4:], uint16(2+len(ip)))
			return append(ethOuter(0x8864), append(h, ip...)...)
		})},
		{"ip-in-ipv4", "ipip", false, carryIP(func(ip []byte, v int) []byte {
			proto := byte(4)
			if v == 6 {
				proto = 41
			}
			return append(ethOuter(0x0800), ip4Outer(proto, ip)...)
		})},
		{"gtp-u-ipv6", "gtpu", false, carryIP(func(ip []byte, _ int) []byte {
			h := []byte{0x30, 0xff, 0, 0, 0, 0, 0, 47}
			binary.BigEndian.PutUint16(h[2:], uint16(len(ip)))
			return append(ethOuter(0x86dd), ip6Outer(17, udpOuter(2152, append(h, ip...)))...)
		})},
	}
	// Three deep: VXLAN in an MPLS pseudowire in ERSPAN.
	vx, pw, erspan := es[0].wrap, es[4].wrap, es[3].wrap
	return append(es, encapsulation{"vxlan-in-mpls-in-erspan", "erspan2", true,
		func(f []byte) []byte { return erspan(pw(vx(f))) }})
}

// TestEveryKindInEveryEncapsulation runs every plain case of pcaps/
// (every kind, and the benign ones) through the sensor, with one worker
// and with three, with each frame inside each encapsulation: the alerts
// must be the plain case's golden alerts, each saying which tunnel it came
// in. Only what a tunnel that carries IP rather than Ethernet changes may
// differ: the byte counts and rates (a packet is counted from its IP
// header) and the VLANs.
func TestEveryKindInEveryEncapsulation(t *testing.T) {
	kinds := map[string]bool{}
	for _, dir := range goldenCases(t) {
		golden, err := os.ReadFile(filepath.Join(dir, "alerts.json"))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(golden, []byte(`"tunnel":`)) {
			continue // tunnelled already
		}
		for _, e := range encapsulations() {
			t.Run(filepath.Base(dir)+"/"+e.name, func(t *testing.T) {
				want := normalEVE(t, golden, !e.ethernet, "")
				for _, workers := range goldenWorkers {
					got := replay{dir: dir, workers: workers, wrap: e.wrap}.run(t)
					if have := normalEVE(t, got, !e.ethernet, e.kind); have != want {
						t.Errorf("%d workers: alerts differ from %s/alerts.json inside %s\n%s", workers, dir, e.name, lineDiff(want, have))
					}
				}
				for _, l := range strings.Split(strings.TrimSpace(string(golden)), "\n") {
					var a struct{ Incident struct{ Kind string } }
					if json.Unmarshal([]byte(l), &a) == nil {
						kinds[a.Incident.Kind] = true
					}
				}
			})
		}
	}
	for _, k := range []detect.Kind{detect.KindReflection, detect.KindLoop, detect.KindSpoofedFlood, detect.KindScan, detect.KindExposed} {
		if !kinds[k.String()] {
			t.Errorf("no plain case raises %s", k)
		}
	}
}

// normalEVE returns EVE lines with what a tunnel adds taken out: the
// "tunnel" objects, checked to be there and of kind tunnel unless it is
// "". ipOnly takes out what differs when a tunnel carries IP packets
// rather than Ethernet frames.
func normalEVE(t *testing.T, lines []byte, ipOnly bool, tunnel string) string {
	t.Helper()
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(string(lines)), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		in, _ := m["incident"].(map[string]any)
		if tunnel != "" {
			it, _ := in["tunnel"].(map[string]any)
			if _, ok := m["tunnel"]; it == nil || it["kind"] != tunnel || (!ok && tunnel != "mpls" && tunnel != "pppoe") {
				t.Errorf("alert without the %s tunnel: %s", tunnel, l)
			}
		}
		delete(m, "tunnel")
		delete(in, "tunnel")
		if ipOnly {
			dropKeys(m, "bytes", "bps", "peak_bps", "vlan")
		}
		out, err := json.Marshal(m) // keys sorted
		if err != nil {
			t.Fatal(err)
		}
		b.Write(out)
		b.WriteByte('\n')
	}
	return b.String()
}

// dropKeys deletes keys from v and everything in it.
func dropKeys(v any, keys ...string) {
	switch v := v.(type) {
	case map[string]any:
		for _, k := range keys {
			delete(v, k)
		}
		for _, x := range v {
			dropKeys(x, keys...)
		}
	case []any:
		for _, x := range v {
			dropKeys(x, keys...)
		}
	}
}
