package main

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// scenario is one detection case: pcaps/<name>/capture.pcap, and a
// config.yaml next to it when the case needs settings.
type scenario struct {
	name string
	// about says what the capture holds and what a detector should find,
	// for pcaps/README.md.
	about string
	// homeNet, when set, is written to config.yaml as home_net.
	homeNet []string
	// settings, when set, are more lines of config.yaml: what reading the
	// capture needs, such as a VXLAN port.
	settings string
	// snaplen cuts frames like tcpdump -s; 0 keeps them whole.
	snaplen uint32
	// tap, when set, makes the case a passive tap's two outputs, read
	// together: capture-a.pcap holds the frames these hosts send,
	// capture-b.pcap the others.
	tap   []netip.Addr
	build func(t *trace)
}

// The timeline of the cases with a lifecycle: the attack runs from
// attackFrom to attackTo, then ordinary traffic goes on until tailTo. An
// incident that starts in the first seconds gets its first update 60 s
// later, and ends 60 s after the attack stops, both before the input ends.
const (
	attackSeconds = 20
	attackFrom    = 2 * time.Second
	attackTo      = attackFrom + attackSeconds*time.Second
	tailTo        = 100 * time.Second
)

// scenarios returns every detection case, in the order pcaps/README.md
// lists them: the plain ones, then those inside encapsulations.
func scenarios() []scenario {
	return append(plainScenarios(), tunnelScenarios()...)
}

func plainScenarios() []scenario {
	return append([]scenario{
		{
			name:    "reflection-in",
			homeNet: []string{"198.51.100.0/24"},
			about: `Echo reflection toward us: 40 echo servers (203.0.113.0/24, 192.0.2.0/24) answer
spoofed requests with UDP from port 7 to random ports of 198.51.100.10, all
returning the attacker's 32-byte payload: 205 packets/s from 2 s to 22 s (4100
replies). Expect one inbound reflection incident for 198.51.100.10, service
echo, 40 reflectors: start, an update 60 s later, end about 60 s after the
attack stops.`,
			build: reflectionIn,
		},
		{
			name:    "reflection-out",
			homeNet: []string{"198.51.100.0/24"},
			about: `Our hosts are the reflectors: spoofed requests "from" 203.0.113.99 (the victim)
come in through the router to six echo servers (198.51.100.7, .17, .27, .37,
.47, .57, UDP 7) and two chargen servers (198.51.100.19, .29, UDP 19), and each
answers: 84 replies/s toward 203.0.113.99 from 2 s to 22 s (1680 requests and
1680 replies; echo replies return the 32-byte request, chargen replies carry
200-512 characters). Expect one outbound reflection incident for 203.0.113.99,
services echo and chargen, severity 1, and the eight servers as exposed.`,
			build: reflectionOut,
		},
		{
			name:    "chargen-reflection",
			snaplen: 96,
			about: `Chargen reflection: 25 chargen servers (documentation and benchmark space)
answer spoofed requests with UDP from port 19 to random ports of 198.51.100.20,
960-1100 characters of RFC 864 text each, 150 packets/s and about 1.3 Mbit/s on
the wire, from 2 s to 22 s (3000 replies). The capture was taken with a snap
length of 96 bytes, like tcpdump -s 96, to keep the file small: each record
still says how long its frame was on the wire, and byte and bit rates count
that length. Expect one reflection incident, service chargen, whose bps is
above 1 Mbit/s.`,
			build: chargenReflection,
		},
		{
			name: "carpet-bombing",
			about: `Echo reflection spread over a whole /24: each of the 254 hosts of
198.51.100.0/24 gets 15 replies from port 7 between 2 s and 22 s (0.75
packets/s, far below the per-host threshold), 190 packets/s for the prefix, from
30 reflectors. Expect one prefix-wide reflection incident for 198.51.100.0/24 and
no per-host incident.`,
			build: carpetBombing,
		},
		{
			name: "loop-echo-chargen-vlan",
			about: `An echo-chargen loop on VLAN 100 (802.1Q): at 2 s one spoofed datagram "from"
198.51.100.19:19 reaches 198.51.100.7:7 through the router; from then on the
echo server returns every datagram to the chargen server, which answers each
with 0-512 characters, 20 packets/s each way, until the loop breaks at 22 s. DNS
lookups on the same VLAN go on. Expect one loop incident between
198.51.100.7:7 and 198.51.100.19:19, and no reflection: start, update, end.`,
			build: loopEchoChargenVLAN,
		},
		{
			name: "loop-echo-echo-ipv6",
			about: `An echo-echo loop over IPv6: at 2 s a spoofed datagram "from"
[2001:db8:200::7]:7 reaches [2001:db8:100::7]:7, and the two echo servers
return the same 40 bytes to each other, 20 packets/s each way, until 22 s. IPv6
DNS lookups go on. Expect one loop incident between the two endpoints: start,
update, end.`,
			build: loopEchoEchoIPv6,
		},
		{
			name:    "tap-two-outputs",
			snaplen: 96,
			tap:     []netip.Addr{v4(198, 51, 100, 7), localClient},
			about: `The two outputs of a passive tap, one file per direction, read together: an
echo-chargen loop between 198.51.100.7:7 and 198.51.100.19:19 at 200
packets/s each way from 2 s to 22 s, and DNS lookups from 198.51.100.100.
capture-a.pcap holds what 198.51.100.7 and 198.51.100.100 send, capture-b.pcap
the rest; frames are cut at 96 bytes. Expect one loop incident with 200 / 200
pps each way: start, update, end, as from one capture of both directions.`,
			build: loopTap,
		},
		{
			name: "random-source-flood",
			about: `A random-source flood: UDP to 198.51.100.77 port 7 from 6000 distinct random
sources, each sending one packet (80%) or two, about 360 packets/s from 2 s to
22 s. One attacker sends them all (TTL 53, random IP IDs and ports, 16-byte
payload). The sources are random routable-looking IPv4 addresses outside every
special-purpose block, so only their number and their one-packet habit give
them away: no bogon evidence. The overwhelmed echo server answers one request
in four. Expect one spoofed_flood incident for 198.51.100.77 with random_source
evidence, no reflection toward any forged source, and the server as exposed.`,
			build: randomSourceFlood,
		},
		{
			name: "bogon-flood",
			about: `Floods from sources that cannot be real, from 2 s to 22 s: 200 packets/s to
198.51.100.80 port 7 from random addresses of 0/8, 10/8, 100.64/10, 127/8,
169.254/16, 172.16/12, 192.168/16, 224/4 and 240/4; and 160 packets/s to
2001:db8:80::80 port 7 from ::, ::1, ::ffff:0:0/96, 100::/64, fc00::/7, fe80::/10
and ff00::/8. One packet in ten of each is a land packet (source address =
destination address, random source port). Nothing answers. Expect one
spoofed_flood incident per target with bogon and land evidence.`,
			build: bogonFlood,
		},
		{
			name: "nmap-udp-sweep",
			about: `Two nmap UDP sweeps of port 7 (nmap -sU -Pn -p7): from 5 s 203.0.113.200 probes
198.51.100.1-.40 with the probe of nmap 7.93 and older ("\r\n\r\n"); from 40 s
192.0.2.66 probes 198.51.100.101-.140 with the probe of nmap 7.94 and later
("help\r\n\r\n"). Each scan uses one source port and random IP IDs, a probe every
15-35 ms in random host order. Hosts .7, .23, .107 and .123 echo the probe back,
some hosts answer ICMP port unreachable, and unanswered probes are sent once
more a second later. Expect two scan incidents with tool nmap, and four exposed
findings.`,
			build: nmapUDPSweep,
		},
		{
			name: "tcp-syn-sweep",
			about: `A TCP SYN sweep of ports 7 and 19 (nmap -sS -Pn -p7,19) from 203.0.113.201 over
198.51.100.1-.36 from 5 s. 198.51.100.7 (tcp/7), .19 (tcp/19) and .33 (tcp/7)
answer SYN-ACK and the scanner resets; other even-numbered hosts answer RST-ACK;
odd-numbered ones stay silent and get the SYN once more. Expect one scan
incident and three exposed findings (TCP).`,
			build: tcpSYNSweep,
		},
		{
			name:    "fragmented-reflection",
			snaplen: 96,
			about: `Reflection of large echoes: 12 echo servers return a 4000-byte payload to
random ports of 198.51.100.30, each reply cut into three IPv4 fragments of 1480,
1480 and 1048 bytes of IP payload (same IP ID, offsets 0, 185 and 370 in 8-byte
units, MF on the first two); only the first carries the UDP header. 35 replies/s
from 2 s to 22 s (2100 fragments). First fragments alone are 35 packets/s and
about 0.42 Mbit/s, under both thresholds; with the later fragments counted it
is 105 packets/s and 1.15 Mbit/s. Taken with a 96-byte snap length. Expect one
reflection incident, service echo.`,
			build: fragmentedReflection,
		},
		{
			name: "benign-ntp-peers",
			about: `NTP must look like neither a loop nor a reflection: 198.51.100.123 peers
123<->123 with 60 servers, each once a second (symmetric active, answered
symmetric passive), and with 198.51.100.124 five times a second, and answers
clients on random ports; 75 packets/s toward it, for 20 s. Expect no alert.`,
			build: benignNTPPeers,
		},
		{
			name: "benign-dns",
			about: `DNS must look like neither a loop nor a reflection: the resolver
198.51.100.53 queries three authoritative servers from port 53 to port 53, 20
times a second each (60 answers/s from port 53 to port 53), while clients query
it from random ports, for 15 s. Expect no alert.`,
			build: benignDNS,
		},
		{
			name: "benign-echo-monitor",
			about: `A monitor (192.0.2.10) sends one echo request a second to 198.51.100.7:7, each
from a new port, and gets each echoed back, for 90 s. Expect one exposed finding
for 198.51.100.7 (UDP echo) and nothing else.`,
			build: benignEchoMonitor,
		},
		{
			name: "benign-wol",
			about: `Wake-on-LAN magic packets (six 0xff bytes, then a MAC 16 times) to UDP port 7
from 198.51.100.250: 150 packets/s to the broadcast addresses 198.51.100.255 and
255.255.255.255 from 2 s to 12 s, some with a 4- or 6-byte SecureOn password
after the MACs; then, from 15 s to 18 s, one unicast packet to each of
198.51.100.1-.25. Expect no alert: no flood, no reflection, no scan.`,
			build: benignWoL,
		},
		{
			name: "benign-slow-reflection",
			about: `Echo reflection far below the threshold: 10 echo servers answer spoofed
requests toward 198.51.100.40 at 5 packets/s in all, for 90 s. Expect no
alert.`,
			build: benignSlowReflection,
		},
	}, serviceScenarios()...)
}

// generate builds the capture and returns it with its packet count and
// duration.
func (s scenario) generate() (data []byte, packets int, duration time.Duration, err error) {
	t := newTrace(s.name, s.snaplen)
	s.build(t)
	first, last := t.span()
	data, err = t.pcap()
	if err != nil {
		return nil, 0, 0, fmt.Errorf("%s: %w", s.name, err)
	}
	return data, len(t.recs), last - first, nil
}

// config returns the case's config.yaml, or nil when it needs none.
func (s scenario) config() []byte {
	var b []byte
	if len(s.homeNet) > 0 {
		b = append(b, "home_net: ["+strings.Join(s.homeNet, ", ")+"]\n"...)
	}
	b = append(b, s.settings...)
	if len(b) == 0 {
		return nil
	}
	return b
}

// lookups adds a client's ordinary DNS lookups, one every 2 s from from to
// to: the background that keeps packet time moving after an attack stops,
// so that incidents end by their timer rather than at the end of the input.
func lookups(t *trace, client, resolver netip.Addr, vlan uint16, from, to time.Duration) {
	for at := from; at < to; at += 2 * time.Second {
		lookup(t, at+time.Duration(t.rng.IntN(200_000))*time.Microsecond, client, resolver, vlan)
	}
}

// lookup adds one A query from client to resolver and its answer.
func lookup(t *trace, at time.Duration, client, resolver netip.Addr, vlan uint16) {
	id := uint16(t.rng.Uint32())
	name := dnsNames[t.rng.IntN(len(dnsNames))]
	q := pkt{src: ap(client, ephemeral(t.rng)), dst: ap(resolver, 53), id: t.id(), vlan: vlan, payload: dnsQuery(id, name)}
	t.udp(at, q)
	answer := v4(203, 0, 113, byte(1+t.rng.IntN(254)))
	r := pkt{src: q.dst, dst: q.src, id: t.id(), vlan: vlan, payload: dnsAnswer(id, name, false, answer)}
	t.udp(at+time.Duration(800+t.rng.IntN(20000))*time.Microsecond, r)
}
