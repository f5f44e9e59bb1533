package main

import (
	"bytes"
	"encoding/binary"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// committed is where the generated files live, from this package's folder.
const committed = "../../pcaps"

func TestGenerateIsDeterministic(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	for _, dir := range []string{a, b} {
		if err := generateTo(dir, func(string, ...any) {}); err != nil {
			t.Fatal(err)
		}
	}
	filesA, filesB := readTree(t, a), readTree(t, b)
	if len(filesA) == 0 {
		t.Fatal("nothing generated")
	}
	for name, data := range filesA {
		if !bytes.Equal(data, filesB[name]) {
			t.Errorf("%s differs between two runs", name)
		}
	}
	for name := range filesB {
		if _, ok := filesA[name]; !ok {
			t.Errorf("%s written by the second run only", name)
		}
	}
}

// TestCommittedFilesAreFresh fails when a committed file differs from what
// the generator writes now, or when a capture under pcaps/ has no
// generator: run go run ./cmd/pcapgen and commit the result.
func TestCommittedFilesAreFresh(t *testing.T) {
	files, err := generate()
	if err != nil {
		t.Fatal(err)
	}
	generated := map[string]bool{}
	for _, f := range files {
		generated[f.path] = true
		data, err := os.ReadFile(filepath.Join(committed, filepath.FromSlash(f.path)))
		if err != nil {
			t.Errorf("%v (run go run ./cmd/pcapgen)", err)
			continue
		}
		if !bytes.Equal(data, f.data) {
			t.Errorf("pcaps/%s is stale: run go run ./cmd/pcapgen and commit it", f.path)
		}
	}
	for name := range readTree(t, committed) {
		if (strings.HasSuffix(name, ".pcap") || strings.HasSuffix(name, ".pcapng")) && !generated[name] {
			t.Errorf("pcaps/%s is not written by pcapgen: remove it or add its generator", name)
		}
	}
}

func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		rel, _ := filepath.Rel(dir, path)
		files[filepath.ToSlash(rel)] = data
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestFormats reads every format file back, checks the packet count the
// README states, and that each packet decodes to the exchange.
func TestFormats(t *testing.T) {
	linkTypes := map[string][]layers.LinkType{
		"ethernet.pcap": {layers.LinkTypeEthernet}, "ethernet-ipv6.pcap": {layers.LinkTypeEthernet},
		"vlan.pcap": {layers.LinkTypeEthernet}, "qinq.pcap": {layers.LinkTypeEthernet},
		"sll.pcap": {layers.LinkTypeLinuxSLL}, "sll2.pcap": {layers.LinkTypeLinuxSLL2},
		"raw-ipv4.pcap": {layers.LinkTypeRaw}, "raw-ipv6.pcap": {layers.LinkTypeRaw},
		"null.pcap": {layers.LinkTypeNull}, "ipv6-ext-headers.pcap": {layers.LinkTypeEthernet},
		"ipv4-fragments.pcap": {layers.LinkTypeEthernet}, "ipv6-fragments.pcap": {layers.LinkTypeEthernet},
		"big-endian.pcap": {layers.LinkTypeEthernet}, "nanosecond.pcap": {layers.LinkTypeEthernet},
		"two-interfaces.pcapng": {layers.LinkTypeEthernet, layers.LinkTypeRaw},
		"gzip-compressed.pcap":  {layers.LinkTypeEthernet},
	}
	files := formatFiles()
	if len(files) != len(linkTypes) {
		t.Errorf("%d format files, want %d", len(files), len(linkTypes))
	}
	readme := string(formatsReadme(files))
	for _, f := range files {
		t.Run(f.name, func(t *testing.T) {
			if !strings.Contains(readme, "| `"+f.name+"` | "+strconv.Itoa(f.packets)+" |") {
				t.Errorf("README does not list %s with %d packets", f.name, f.packets)
			}
			recs, links := readCapture(t, f.data)
			if len(recs) != f.packets {
				t.Errorf("%d packets, README says %d", len(recs), f.packets)
			}
			if !slices.Equal(links, linkTypes[f.name]) {
				t.Errorf("link types %v, want %v", links, linkTypes[f.name])
			}
			fragments := strings.Contains(f.name, "fragments")
			for i, r := range recs {
				p := gopacket.NewPacket(r.data, r.link, gopacket.Default)
				if e := p.ErrorLayer(); e != nil {
					t.Fatalf("packet %d: %v", i+1, e.Error())
				}
				if fragments {
					// Fragments decode as fragments: find the UDP header
					// where the first one carries it.
					first, after := false, []byte(nil)
					if ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
						first, after = ip.FragOffset == 0, ip.Payload
					}
					if fh, ok := p.Layer(layers.LayerTypeIPv6Fragment).(*layers.IPv6Fragment); ok {
						first, after = fh.FragmentOffset == 0, fh.Payload
					}
					if first != (i%3 == 0) {
						t.Errorf("packet %d: first fragment %v, want every third", i+1, first)
					}
					if first && (len(after) < 8 || !bytes.Equal(after[4:6], []byte{0x0b, 0xc0})) { // UDP length 3008
						t.Errorf("packet %d: no UDP header for 3008 bytes at the start: % x", i+1, after[:min(8, len(after))])
					}
					continue
				}
				udp, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
				if udp == nil || !bytes.Equal(udp.Payload, fmtPayload) {
					t.Fatalf("packet %d: no UDP with the exchange's payload: %v", i+1, p)
				}
				if ports := []layers.UDPPort{udp.SrcPort, udp.DstPort}; !slices.Contains(ports, 7) || !slices.Contains(ports, 40007) {
					t.Errorf("packet %d: ports %v", i+1, ports)
				}
			}
			if f.name == "nanosecond.pcap" && recs[0].ts.Nanosecond() != 123456789 {
				t.Errorf("first timestamp %v, want nanoseconds 123456789", recs[0].ts)
			}
		})
	}
}

type rec struct {
	ts   time.Time
	data []byte
	link layers.LinkType
	wire int
}

// readCapture reads a pcap (gzip-compressed or not) or pcapng file.
func readCapture(t *testing.T, data []byte) (recs []rec, links []layers.LinkType) {
	t.Helper()
	if bytes.HasPrefix(data, []byte{0x0a, 0x0d, 0x0d, 0x0a}) {
		r, err := pcapgo.NewNgReader(bytes.NewReader(data), pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			t.Fatal(err)
		}
		for {
			d, ci, err := r.ReadPacketData()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			intf, _ := r.Interface(ci.InterfaceIndex)
			recs = append(recs, rec{ts: ci.Timestamp, data: d, link: intf.LinkType, wire: ci.Length})
		}
		for i := range r.NInterfaces() {
			intf, _ := r.Interface(i)
			links = append(links, intf.LinkType)
		}
		return recs, links
	}
	r, err := pcapgo.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	for {
		d, ci, err := r.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec{ts: ci.Timestamp, data: d, link: r.LinkType(), wire: ci.Length})
	}
	return recs, []layers.LinkType{r.LinkType()}
}

// decoded is what the threshold checks look at in one packet.
type decoded struct {
	at           time.Duration
	src, dst     netip.Addr
	sport, dport uint16
	tcpFlags     tcpFlags
	vlan         uint16
	wire         int
	// later is set on an IPv4 fragment other than the first.
	later   bool
	payload []byte
}

func decodeAll(t *testing.T, data []byte) []decoded {
	t.Helper()
	recs, _ := readCapture(t, data)
	var out []decoded
	for i, r := range recs {
		p := gopacket.NewPacket(r.data, r.link, gopacket.Default)
		// gopacket guesses application protocols from ports, and fails on
		// what it guesses wrong: only what lies below the transport must
		// decode.
		if e := p.ErrorLayer(); e != nil && p.TransportLayer() == nil {
			t.Fatalf("packet %d: %v", i+1, e.Error())
		}
		d := decoded{at: r.ts.Sub(epoch), wire: r.wire}
		if q, ok := p.Layer(layers.LayerTypeDot1Q).(*layers.Dot1Q); ok {
			d.vlan = q.VLANIdentifier
		}
		switch ip := p.NetworkLayer().(type) {
		case *layers.IPv4:
			d.src, _ = netip.AddrFromSlice(ip.SrcIP)
			d.dst, _ = netip.AddrFromSlice(ip.DstIP)
			d.later = ip.FragOffset != 0
		case *layers.IPv6:
			d.src, _ = netip.AddrFromSlice(ip.SrcIP)
			d.dst, _ = netip.AddrFromSlice(ip.DstIP)
		}
		switch l := p.TransportLayer().(type) {
		case *layers.UDP:
			d.sport, d.dport, d.payload = uint16(l.SrcPort), uint16(l.DstPort), l.Payload
		case *layers.TCP:
			d.sport, d.dport = uint16(l.SrcPort), uint16(l.DstPort)
			if l.SYN {
				d.tcpFlags |= syn
			}
			if l.ACK {
				d.tcpFlags |= ack
			}
		}
		out = append(out, d)
	}
	return out
}

// most returns the largest sum of weight over the packets that keep
// accepts within any 5-second window: the detection windows' measure.
func most(pkts []decoded, keep func(decoded) bool, weight func(decoded) int) int {
	var in []decoded
	for _, p := range pkts {
		if keep(p) {
			in = append(in, p)
		}
	}
	best, sum, first := 0, 0, 0
	for _, p := range in {
		sum += weight(p)
		for in[first].at <= p.at-5*time.Second {
			sum -= weight(in[first])
			first++
		}
		best = max(best, sum)
	}
	return best
}

func count(decoded) int  { return 1 }
func bits(p decoded) int { return 8 * p.wire }

// TestCasesCrossThresholds checks what each case's README text promises,
// against the default thresholds: so that editing a generator cannot
// quietly turn an attack into one that no detector should see.
func TestCasesCrossThresholds(t *testing.T) {
	addr := netip.MustParseAddr
	from := func(port uint16, dst string) func(decoded) bool {
		return func(p decoded) bool { return p.sport == port && p.dst == addr(dst) }
	}
	between := func(a, b netip.AddrPort) func(decoded) bool {
		return func(p decoded) bool {
			return netip.AddrPortFrom(p.src, p.sport) == a && netip.AddrPortFrom(p.dst, p.dport) == b
		}
	}
	atLeast := func(t *testing.T, what string, got, want int) {
		t.Helper()
		if got < want {
			t.Errorf("%s: %d, want at least %d", what, got, want)
		}
	}
	below := func(t *testing.T, what string, got, limit int) {
		t.Helper()
		if got >= limit {
			t.Errorf("%s: %d, want below %d", what, got, limit)
		}
	}
	distinct := func(pkts []decoded, keep func(decoded) bool, key func(decoded) netip.Addr) int {
		seen := map[netip.Addr]bool{}
		for _, p := range pkts {
			if keep(p) {
				seen[key(p)] = true
			}
		}
		return len(seen)
	}
	src := func(p decoded) netip.Addr { return p.src }
	dst := func(p decoded) netip.Addr { return p.dst }
	const pps, mbit = 5, 5_000_000 // per second, as sums over a 5 s window
	// services checks a reflection off port at rate from n reflectors, every
	// reply as the service writes it.
	services := func(t *testing.T, p []decoded, port uint16, victim string, rate, n int, answer func(decoded) bool) {
		atLeast(t, "replies in 5 s", most(p, from(port, victim), count), rate*pps)
		if got := distinct(p, from(port, victim), src); got != n {
			t.Errorf("%d reflectors, want %d", got, n)
		}
		for _, q := range p {
			if from(port, victim)(q) && !answer(q) {
				t.Fatalf("reply at %v: %q", q.at, q.payload)
			}
		}
	}

	checks := map[string]func(t *testing.T, p []decoded){
		"reflection-in": func(t *testing.T, p []decoded) {
			atLeast(t, "replies in 5 s", most(p, from(7, "198.51.100.10"), count), 4*50*pps)
			if n := distinct(p, from(7, "198.51.100.10"), src); n != 40 {
				t.Errorf("%d reflectors, want 40", n)
			}
		},
		"reflection-out": func(t *testing.T, p []decoded) {
			out := func(p decoded) bool { return (p.sport == 7 || p.sport == 19) && p.dst == addr("203.0.113.99") }
			atLeast(t, "replies in 5 s", most(p, out, count), 3*50*pps/2)
		},
		"chargen-reflection": func(t *testing.T, p []decoded) {
			atLeast(t, "bits in 5 s", most(p, from(19, "198.51.100.20"), bits), 6*mbit/5)
		},
		"qotd-reflection": func(t *testing.T, p []decoded) {
			// Cut at 96 bytes: the quote's start, and its length on the wire.
			services(t, p, 17, "198.51.100.17", 300, 30, func(q decoded) bool { return q.wire-42 <= 512 && bytes.HasPrefix(q.payload, []byte(`"`)) })
		},
		"daytime-reflection": func(t *testing.T, p []decoded) {
			services(t, p, 13, "198.51.100.13", 120, 20, func(q decoded) bool {
				_, err := time.Parse("Mon Jan _2 15:04:05 2006\r\n", string(q.payload))
				return err == nil
			})
		},
		"time-reflection": func(t *testing.T, p []decoded) {
			services(t, p, 37, "198.51.100.37", 90, 15, func(q decoded) bool {
				if len(q.payload) != 4 {
					return false
				}
				at := time.Unix(int64(binary.BigEndian.Uint32(q.payload))-secondsFrom1900To1970, 0).Sub(epoch)
				return at == q.at.Truncate(time.Second)
			})
		},
		"carpet-bombing": func(t *testing.T, p []decoded) {
			prefix := netip.MustParsePrefix("198.51.100.0/24")
			atLeast(t, "replies to the /24 in 5 s", most(p, func(p decoded) bool { return p.sport == 7 && prefix.Contains(p.dst) }, count), 3*50*pps)
			for h := range 254 {
				below(t, "replies to one host in 5 s", most(p, from(7, v4(198, 51, 100, byte(h+1)).String()), count), 50*pps/10)
			}
		},
		"tap-two-outputs": func(t *testing.T, p []decoded) {
			e, c := netip.MustParseAddrPort("198.51.100.7:7"), netip.MustParseAddrPort("198.51.100.19:19")
			atLeast(t, "echo to chargen in 5 s", most(p, between(e, c), count), 5*199)
			atLeast(t, "chargen to echo in 5 s", most(p, between(c, e), count), 5*199)
		},
		"loop-echo-chargen-vlan": func(t *testing.T, p []decoded) {
			e, c := netip.MustParseAddrPort("198.51.100.7:7"), netip.MustParseAddrPort("198.51.100.19:19")
			atLeast(t, "echo to chargen in 5 s", most(p, between(e, c), count), 5*10)
			atLeast(t, "chargen to echo in 5 s", most(p, between(c, e), count), 5*10)
			for _, q := range p {
				if q.vlan != 100 {
					t.Fatalf("packet at %v not on VLAN 100", q.at)
				}
			}
		},
		"loop-echo-echo-ipv6": func(t *testing.T, p []decoded) {
			a, b := netip.MustParseAddrPort("[2001:db8:100::7]:7"), netip.MustParseAddrPort("[2001:db8:200::7]:7")
			atLeast(t, "a to b in 5 s", most(p, between(a, b), count), 5*10)
			atLeast(t, "b to a in 5 s", most(p, between(b, a), count), 5*10)
		},
		"random-source-flood": func(t *testing.T, p []decoded) {
			special := newIPv4Set(specialIPv4)
			perSource := map[netip.Addr]int{}
			for _, q := range p {
				if q.dst == addr("198.51.100.77") && q.dport == 7 {
					if special.contains(ipv4Number(q.src)) {
						t.Fatalf("source %v is special-purpose", q.src)
					}
					if q.at >= 10*time.Second && q.at < 15*time.Second {
						perSource[q.src]++
					}
				}
			}
			atLeast(t, "distinct sources in 5 s", len(perSource), 1000*3/2)
			few := 0
			for _, n := range perSource {
				if n <= 2 {
					few++
				}
			}
			atLeast(t, "per cent of them sending at most 2", 100*few/len(perSource), 90)
		},
		"bogon-flood": func(t *testing.T, p []decoded) {
			for _, target := range []string{"198.51.100.80", "2001:db8:80::80"} {
				atLeast(t, "forged packets in 5 s to "+target, most(p, func(p decoded) bool { return p.dst == addr(target) }, count), 3*100*pps/2)
			}
		},
		"nmap-udp-sweep": func(t *testing.T, p []decoded) {
			for _, scanner := range []string{"203.0.113.200", "192.0.2.66"} {
				n := distinct(p, func(p decoded) bool { return p.src == addr(scanner) && p.dport == 7 && len(p.payload) > 0 }, dst)
				atLeast(t, scanner+" targets", n, 30)
			}
		},
		"tcp-syn-sweep": func(t *testing.T, p []decoded) {
			atLeast(t, "SYN targets", distinct(p, func(p decoded) bool { return p.tcpFlags == syn }, dst), 30)
			if n := distinct(p, func(p decoded) bool { return p.tcpFlags == syn|ack }, src); n != 3 {
				t.Errorf("%d hosts answer SYN-ACK, want 3", n)
			}
		},
		"fragmented-reflection": func(t *testing.T, p []decoded) {
			toVictim := func(p decoded) bool { return p.dst == addr("198.51.100.30") && p.sport != 53 && p.dport != 53 }
			first := func(p decoded) bool { return toVictim(p) && !p.later }
			below(t, "first fragments in 5 s", most(p, first, count), 50*pps)
			below(t, "bits of first fragments in 5 s", most(p, first, bits), mbit)
			atLeast(t, "fragments in 5 s", most(p, toVictim, count), 2*50*pps)
			atLeast(t, "bits of all fragments in 5 s", most(p, toVictim, bits), 11*mbit/10)
		},
		"benign-ntp-peers": func(t *testing.T, p []decoded) {
			server := netip.MustParseAddrPort("198.51.100.123:123")
			local := netip.MustParseAddrPort("198.51.100.124:123")
			atLeast(t, "to the server in 5 s", most(p, func(p decoded) bool { return p.dst == server.Addr() }, count), 50*pps)
			atLeast(t, "local peer to server in 5 s", most(p, between(local, server), count), 2*10)
			atLeast(t, "server to local peer in 5 s", most(p, between(server, local), count), 2*10)
		},
		"benign-dns": func(t *testing.T, p []decoded) {
			atLeast(t, "53 to 53 toward the resolver in 5 s", most(p, func(p decoded) bool { return p.sport == 53 && p.dport == 53 && p.dst == addr("198.51.100.53") }, count), 50*pps)
		},
		"benign-wol": func(t *testing.T, p []decoded) {
			atLeast(t, "magic packets in 5 s", most(p, func(p decoded) bool { return p.dport == 7 }, count), 100*pps)
			atLeast(t, "unicast targets", distinct(p, func(p decoded) bool { return p.dport == 7 && p.dst.As4()[3] < 255 }, dst), 20)
			for _, q := range p {
				if !bytes.HasPrefix(q.payload, bytes.Repeat([]byte{0xff}, 6)) || !bytes.Equal(q.payload[6:12], q.payload[96:102]) {
					t.Fatalf("packet at %v is not a magic packet", q.at)
				}
			}
		},
		"benign-echo-monitor": func(t *testing.T, p []decoded) {
			server, monitor := netip.MustParseAddrPort("198.51.100.7:7"), addr("192.0.2.10")
			probe := func(p decoded) bool { return p.src == monitor && netip.AddrPortFrom(p.dst, p.dport) == server }
			below(t, "echo replies to the monitor in 5 s", most(p, from(7, monitor.String()), count), 50*pps/10)
			if n := distinct(p, probe, dst); n != 1 {
				t.Errorf("the monitor probes %d hosts, want 1", n)
			}
			// The exposed finding needs each probe answered with its own bytes.
			var probes, echoed int
			for i, q := range p {
				if !probe(q) {
					continue
				}
				probes++
				for _, r := range p[i+1:] {
					if netip.AddrPortFrom(r.src, r.sport) == server && r.dst == monitor && r.dport == q.sport && bytes.Equal(r.payload, q.payload) {
						echoed++
						break
					}
				}
			}
			atLeast(t, "probes", probes, 90)
			if echoed != probes {
				t.Errorf("%d of %d probes echoed back, want all", echoed, probes)
			}
		},
		"benign-slow-reflection": func(t *testing.T, p []decoded) {
			below(t, "replies in 5 s", most(p, from(7, "198.51.100.40"), count), 50*pps/2)
		},
	}
	lifecycle := []string{"reflection-in", "reflection-out", "chargen-reflection", "qotd-reflection",
		"daytime-reflection", "time-reflection", "carpet-bombing",
		"loop-echo-chargen-vlan", "loop-echo-echo-ipv6", "random-source-flood", "bogon-flood", "fragmented-reflection"}

	// The tunnel cases have their own test (TestTunnelCases): gopacket
	// does not decode all of them.
	plain := plainScenarios()
	for name := range checks {
		if !slices.ContainsFunc(plain, func(s scenario) bool { return s.name == name }) {
			t.Errorf("check for %s, which is no plain scenario", name)
		}
	}
	for _, s := range plain {
		t.Run(s.name, func(t *testing.T) {
			data, _, _, err := s.generate()
			if err != nil {
				t.Fatal(err)
			}
			p := decodeAll(t, data)
			check, ok := checks[s.name]
			if !ok {
				t.Fatalf("no check for %s: add what its README text promises to checks", s.name)
			}
			check(t, p)
			if slices.Contains(lifecycle, s.name) {
				// An incident must be able to end by its 60 s timer before
				// the input ends, after its last 5 s window has passed.
				if last := p[len(p)-1].at; last < attackTo+70*time.Second {
					t.Errorf("input ends at %v, %v after the attack: too early for an end by timer", last, last-attackTo)
				}
			}
		})
	}
}

func ipv4Number(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// writeBenchTwice writes the benchmark capture kind twice and returns it,
// failing unless both runs wrote the same bytes.
func writeBenchTwice(t *testing.T, kind string, packets, flows int) []byte {
	return writeWrappedBenchTwice(t, kind, "", packets, flows)
}

// writeWrappedBenchTwice is writeBenchTwice with -wrap wrap.
func writeWrappedBenchTwice(t *testing.T, kind, wrap string, packets, flows int) []byte {
	t.Helper()
	dir := t.TempDir()
	var files [2][]byte
	for i := range files {
		name := filepath.Join(dir, kind+strconv.Itoa(i)+".pcap")
		if err := writeBench(benchSpec{kind: kind, wrap: wrap, packets: packets, flows: flows}, name, io.Discard, func(string, ...any) {}); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		files[i] = data
	}
	if !bytes.Equal(files[0], files[1]) {
		t.Fatal("two runs differ")
	}
	return files[0]
}

func TestBenchIsDeterministicAndValid(t *testing.T) {
	for _, kind := range []string{"mixed", "flood"} {
		t.Run(kind, func(t *testing.T) {
			data := writeBenchTwice(t, kind, 20000, 2000)
			p := decodeAll(t, data)
			if len(p) != 20000 {
				t.Fatalf("%d packets, want 20000", len(p))
			}
			if kind == "flood" {
				sources := map[netip.Addr]bool{}
				for _, q := range p {
					sources[q.src] = true
				}
				if len(sources) != len(p) {
					t.Errorf("%d distinct sources in %d packets", len(sources), len(p))
				}
				checkFloodChecksums(t, data)
			}
		})
	}
}

// TestBenchWrapVXLAN checks that -wrap vxlan writes the same frames, each
// inside Ethernet, IPv4, UDP 4789 and VXLAN.
func TestBenchWrapVXLAN(t *testing.T) {
	plain, _ := readCapture(t, writeBenchTwice(t, "mixed", 2000, 200))
	wrapped, _ := readCapture(t, writeWrappedBenchTwice(t, "mixed", "vxlan", 2000, 200))
	if len(wrapped) != len(plain) {
		t.Fatalf("%d frames wrapped, want %d", len(wrapped), len(plain))
	}
	for i, w := range wrapped {
		p := gopacket.NewPacket(w.data, layers.LinkTypeEthernet, gopacket.Default)
		vx, ok := p.Layer(layers.LayerTypeVXLAN).(*layers.VXLAN)
		if !ok {
			t.Fatalf("frame %d: no VXLAN header: %v", i, p)
		}
		if vx.VNI != 1234567 || !bytes.Equal(vx.Payload, plain[i].data) || !w.ts.Equal(plain[i].ts) || w.wire != plain[i].wire+len(w.data)-len(plain[i].data) {
			t.Fatalf("frame %d: VNI %d, at %v: does not carry frame %d of the plain capture", i, vx.VNI, w.ts, i)
		}
	}
}

// checkFloodChecksums re-serializes flood packets with gopacket: patching
// fields and checksums in place must give the bytes gopacket would write.
func checkFloodChecksums(t *testing.T, data []byte) {
	recs, _ := readCapture(t, data)
	buf := gopacket.NewSerializeBuffer()
	for _, r := range recs[:min(len(recs), 1000)] {
		p := gopacket.NewPacket(r.data, layers.LinkTypeEthernet, gopacket.Default)
		eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		ip := p.NetworkLayer().(gopacket.SerializableLayer)
		udp := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if err := udp.SetNetworkLayerForChecksum(p.NetworkLayer()); err != nil {
			t.Fatal(err)
		}
		err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
			eth, ip, udp, gopacket.Payload(udp.Payload))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), r.data) {
			t.Fatalf("frame differs from gopacket's:\n got %x\nwant %x", r.data, buf.Bytes())
		}
	}
}

// TestMemoryFloods checks the memory floods: the same bytes on every run,
// frames as gopacket writes them, in time order, each kind's shape, and the
// planted incidents whole in every one.
func TestMemoryFloods(t *testing.T) {
	loopPorts := map[uint16]bool{7: true, 11: true, 13: true, 17: true, 19: true, 37: true}
	for kind := range floodKinds {
		t.Run(kind, func(t *testing.T) {
			const n = 4000
			data := writeBenchTwice(t, kind, n, 0)
			checkFloodChecksums(t, data)
			var refl, loop, flood []decoded
			var last time.Duration
			for i, p := range decodeAll(t, data) {
				if p.at < last {
					t.Fatalf("packet %d at %v goes back in time", i+1, p.at)
				}
				last = p.at
				switch {
				case p.dst == plantedVictim.Addr():
					refl = append(refl, p)
				case p.src == plantedEcho.Addr() || p.src == plantedChargen.Addr():
					loop = append(loop, p)
				case p.at < floodSeconds:
					flood = append(flood, p)
				}
			}
			// 20 s of 5 ms rounds: two replies toward the victim, one packet
			// each way of the loop.
			if len(refl) != 8000 || len(loop) != 8000 || len(flood) != n {
				t.Errorf("%d reflected, %d loop, %d flood packets; want 8000, 8000, %d", len(refl), len(loop), len(flood), n)
			}
			sources := map[netip.Addr]bool{}
			for i, p := range flood {
				sources[p.src] = true
				switch kind {
				case "echo-flows", "loop-flows":
					if i%2 == 1 && (p.src != flood[i-1].dst || p.dst != flood[i-1].src || p.sport != flood[i-1].dport) {
						t.Fatalf("packet %d does not answer the one before", i)
					}
					if kind == "loop-flows" && !(loopPorts[p.sport] && loopPorts[p.dport]) {
						t.Fatalf("packet %d: ports %d, %d", i, p.sport, p.dport)
					}
				}
			}
			want := n
			if kind == "echo-flows" || kind == "loop-flows" {
				want = n / 2 // each address sends once, and answers once
			}
			if len(sources) < want {
				t.Errorf("%d distinct sources in %d flood packets", len(sources), n)
			}
		})
	}
}

func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"-h"}, 0, "Usage:"},
		{[]string{"extra"}, 2, `unexpected argument "extra"`},
		{[]string{"-bench", "nope", "-o", "x"}, 2, "want mixed, flood, sources, targets, echo-flows, loop-flows or telemetry"},
		{[]string{"-bench", "mixed"}, 2, "-bench needs -o FILE"},
		{[]string{"-o", "x"}, 2, "-o needs -bench"},
		{[]string{"-bench", "flood", "-flows", "3", "-o", "x"}, 2, "-flows applies to -bench mixed only"},
		{[]string{"-bench", "mixed", "-out", "d", "-o", "x"}, 2, "with -bench use -o"},
		{[]string{"-bench", "mixed", "-packets", "-1", "-o", "x"}, 2, "want a positive count"},
		{[]string{"-nope"}, 2, "flag provided but not defined"},
		{[]string{"-bench", "flood", "-packets", "10", "-o", "/nonexistent/dir/x.pcap"}, 1, "pcapgen: open /nonexistent/dir/x.pcap"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(tc.args, &stdout, &stderr)
		out := &stderr
		if tc.code == 0 {
			out = &stdout
		}
		if code != tc.code || !strings.Contains(out.String(), tc.says) {
			t.Errorf("pcapgen %s: exit %d, stdout %q, stderr %q; want exit %d and %q",
				strings.Join(tc.args, " "), code, stdout.String(), stderr.String(), tc.code, tc.says)
		}
	}
}
