package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Benchmark captures are streamed: frames are serialized with gopacket once,
// as templates, and each packet only picks a template (mixed) or patches a
// few fields of one (flood), so generation runs at several million packets
// a second and the disk is the limit.

// writeBench writes the benchmark capture kind to file ("-": stdout). A
// regular file left incomplete by an error is removed; a device or a pipe
// is only written to.
// With wrap "vxlan" every frame is sent inside VXLAN, as a cloud
// mirror session delivers it.
func writeBench(spec benchSpec, file string, stdout io.Writer, log logf) (err error) {
	kind, wrap, packets, flows := spec.kind, spec.wrap, spec.packets, spec.flows
	w := stdout
	if file != "-" {
		regular := true
		if fi, statErr := os.Stat(file); statErr == nil {
			regular = fi.Mode().IsRegular()
		}
		f, createErr := os.Create(file)
		if createErr != nil {
			return createErr
		}
		defer func() { // err is the named result
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil && regular {
				os.Remove(file)
			}
		}()
		w = f
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	fw := pcapgo.NewWriter(bw)
	// Write errors name the file already (*os.PathError).
	if err := fw.WriteFileHeader(defaultSnaplen, layers.LinkTypeEthernet); err != nil {
		return err
	}
	var pw packetWriter = fw
	switch wrap {
	case "":
	case "vxlan":
		pw = &wrapWriter{w: fw, wrap: vxlan(newUnderlay("198.19.1.10", "198.19.2.20", false), 4789, 1234567)}
	default:
		return fmt.Errorf("-wrap %q: want vxlan", wrap)
	}
	start := time.Now()
	switch kind {
	case "mixed":
		if packets == 0 {
			packets = 10_000_000
		}
		err = benchMixed(pw, packets, flows)
	case "flood":
		if packets == 0 {
			packets = 5_000_000
		}
		err = benchFlood(pw, packets)
	case "telemetry":
		if packets == 0 {
			packets = 1_000_000
		}
		err = benchTelemetry(pw, spec.from, packets, spec.exporters)
	default:
		packets, err = benchMemoryFlood(pw, kind, packets)
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	log("%s: %d packets in %v, %.2f million packets/s", file, packets, elapsed.Round(time.Millisecond),
		float64(packets)/elapsed.Seconds()/1e6)
	return nil
}

// benchSpec is what a benchmark capture is made of: its kind and the
// flags that shape it.
type benchSpec struct {
	kind, wrap     string
	packets, flows int
	from           string // telemetry: the capture of exports to repeat
	exporters      int    // telemetry: the exporters sending in turn
}

// packetWriter takes the frames of a benchmark capture.
type packetWriter interface {
	WritePacket(ci gopacket.CaptureInfo, data []byte) error
}

// wrapWriter writes every frame encapsulated by wrap.
type wrapWriter struct {
	w    packetWriter
	wrap wrapFunc
}

func (w *wrapWriter) WritePacket(ci gopacket.CaptureInfo, data []byte) error {
	frame := w.wrap(0, data)
	ci.Length += len(frame) - len(data)
	ci.CaptureLength = len(frame)
	return w.w.WritePacket(ci, frame)
}

// benchFlow is one conversation of the mixed capture, packed in 256 bytes
// so that a packet costs one cache miss however many flows there are: the
// frame each way, less a payload tail shared by all flows (kept hot in
// cache), and the server's share of packets. Checksums in the heads already
// cover the tails.
type benchFlow struct {
	downPct          uint8
	upLen, downLen   uint8  // head bytes in buf: the up head, then the down head
	upTail, downTail uint16 // payload bytes taken from the shared payload
	heads            [249]byte
}

// setFrame stores frame as the up (or down) frame: payload is its payload,
// which is shared when it is a prefix of shared.
func (f *benchFlow) setFrame(down bool, frame, payload, shared []byte) {
	tail := 0
	if len(payload) > 0 && &payload[0] == &shared[0] && bytes.HasSuffix(frame, payload) {
		tail = len(payload)
	}
	head := frame[:len(frame)-tail]
	off := 0
	if down {
		off = int(f.upLen)
		f.downLen, f.downTail = uint8(len(head)), uint16(tail)
	} else {
		f.upLen, f.upTail = uint8(len(head)), uint16(tail)
	}
	if off+len(head) > len(f.heads) {
		panic(fmt.Sprintf("pcapgen: a %d-byte head does not fit a flow", len(head)))
	}
	copy(f.heads[off:], head)
}

// frame returns the head and the shared tail of one direction's frame.
func (f *benchFlow) frame(down bool, shared []byte) (head, tail []byte) {
	if down {
		return f.heads[f.upLen : f.upLen+f.downLen], shared[:f.downTail]
	}
	return f.heads[:f.upLen], shared[:f.upTail]
}

// flowKind is a kind of ordinary traffic: its share of flows, transport,
// server port, payload sizes each way (0: a bare ACK) and the server's share
// of packets. The mix averages about 420 bytes a frame.
type flowKind struct {
	share   int // per cent of flows
	tcp     bool
	port    uint16
	upLen   int
	downLen int
	downPct uint8
}

var benchKinds = []flowKind{
	{share: 40, tcp: true, port: 443, upLen: 0, downLen: 1200, downPct: 45},
	{share: 8, tcp: true, port: 80, upLen: 0, downLen: 700, downPct: 55},
	{share: 12, port: 443, upLen: 40, downLen: 1100, downPct: 55},
	{share: 18, port: 53, downPct: 50},
	{share: 8, tcp: true, port: 22, upLen: 100, downLen: 100, downPct: 50},
	{share: 6, port: 123, downPct: 50},
	{share: 4, tcp: true, port: 993, upLen: 60, downLen: 500, downPct: 55},
	{share: 4, port: 4500, upLen: 300, downLen: 300, downPct: 50},
}

// benchMixed writes packets frames of ordinary traffic over flows
// conversations, a packet every 5-15 µs (about 100k packets/s), with 1% an
// echo reflection toward 198.51.100.10 from 50 reflectors and 0.2% an
// echo-chargen loop on VLAN 100. Conversations are picked with a heavy tail:
// a few carry most packets, all carry some.
func benchMixed(pw packetWriter, packets, flows int) error {
	rng := newRand("bench-mixed")
	b := newBuilder()
	shared := randomBytes(rng, 1500)

	pickKind := func() flowKind {
		r := rng.IntN(100)
		for _, k := range benchKinds {
			if r < k.share {
				return k
			}
			r -= k.share
		}
		return benchKinds[0]
	}
	vlans := []uint16{10, 20, 30, 40}
	fl := make([]benchFlow, flows)
	for i := range fl {
		k := pickKind()
		var client, server netip.Addr
		if rng.IntN(4) == 0 {
			client = v6("2001:db8:c::", rng.Uint64())
			server = v6("2001:db8:5::", uint64(1+rng.IntN(256)))
		} else {
			client = v4(198, 18+byte(rng.IntN(2)), byte(rng.IntN(256)), byte(1+rng.IntN(254)))
			server = v4(203, 0, 113, byte(1+rng.IntN(254)))
			if rng.IntN(2) == 0 {
				server = v4(192, 0, 2, byte(1+rng.IntN(254)))
			}
		}
		var vlan uint16
		if rng.IntN(10) < 3 {
			vlan = vlans[rng.IntN(len(vlans))]
		}
		up := pkt{src: ap(client, ephemeral(rng)), vlan: vlan, payload: shared[:k.upLen]}
		up.dst = ap(server, k.port)
		down := pkt{src: up.dst, dst: up.src, ttl: 52, vlan: vlan, payload: shared[:k.downLen]}
		switch k.port { // the cleartext protocols get real messages
		case 53:
			id, name := uint16(rng.Uint32()), dnsNames[rng.IntN(len(dnsNames))]
			up.payload, down.payload = dnsQuery(id, name), dnsAnswer(id, name, false, server)
		case 123:
			up.payload, down.payload = ntpPacket(3, 3, 0, 0), ntpPacket(4, 2, time.Millisecond, 0)
		}
		f := &fl[i]
		f.downPct = k.downPct
		if k.tcp {
			seqUp, seqDown := rng.Uint32(), rng.Uint32()
			f.setFrame(false, b.tcp(up, dataFlags(up), seqUp, seqDown, 502), up.payload, shared)
			f.setFrame(true, b.tcp(down, dataFlags(down), seqDown, seqUp, 501), down.payload, shared)
		} else {
			f.setFrame(false, b.udp(up), up.payload, shared)
			f.setFrame(true, b.udp(down), down.payload, shared)
		}
	}

	// The attacks: reflectors that only send "down", a loop both ways.
	victim := v4(198, 51, 100, 10)
	echo := shared[:48]
	refl := make([]benchFlow, 50)
	for i := range refl {
		r := newHost(rng, v4([]byte{203, 192}[i%2], 0, []byte{113, 2}[i%2], byte(100+i)))
		refl[i].downPct = 100
		refl[i].setFrame(true, b.udp(pkt{src: ap(r.addr, 7), dst: ap(victim, ephemeral(rng)), ttl: r.ttl, id: r.nextID(), payload: echo}), echo, shared)
	}
	var loop benchFlow
	loopData := chargen(0, 60) // short: both frames must fit one benchFlow
	echoSrv, chargenSrv := ap(v4(198, 51, 100, 7), 7), ap(v4(198, 51, 100, 19), 19)
	loop.setFrame(false, b.udp(pkt{src: echoSrv, dst: chargenSrv, vlan: 100, payload: loopData}), loopData, shared)
	loop.setFrame(true, b.udp(pkt{src: chargenSrv, dst: echoSrv, vlan: 100, payload: loopData}), loopData, shared)

	var scratch []byte
	now := time.Duration(0)
	for i := range packets {
		now += time.Duration(5000 + rng.IntN(10001))
		var f *benchFlow
		var down bool
		switch r := rng.IntN(1000); {
		case r < 10:
			f, down = &refl[rng.IntN(len(refl))], true
		case r < 12:
			f, down = &loop, i&1 == 1
		default:
			u := rng.Float64()
			f = &fl[int(float64(len(fl))*u*u*u*u)]
			down = rng.IntN(100) < int(f.downPct)
		}
		head, tail := f.frame(down, shared)
		scratch = append(append(scratch[:0], head...), tail...)
		ci := gopacket.CaptureInfo{Timestamp: epoch.Add(now), CaptureLength: len(scratch), Length: len(scratch)}
		if err := pw.WritePacket(ci, scratch); err != nil {
			return err
		}
	}
	return nil
}

// dataFlags returns the TCP flags of an established connection's segment:
// PSH only when it carries data.
func dataFlags(p pkt) tcpFlags {
	if len(p.payload) > 0 {
		return ack | psh
	}
	return ack
}

// benchFlood writes packets UDP requests to 198.51.100.77 port 7, 2 µs
// apart, each from a source address no earlier packet used (a bijection of
// the packet's index, skipping special-purpose space), a random port and a
// random IP ID. The frame is serialized once; per packet the source, port
// and ID are patched and both checksums recomputed.
func benchFlood(pw packetWriter, packets int) error {
	rng := newRand("bench-flood")
	b := newBuilder()
	payload := []byte("XXXXXXXXXXXXXXXX")
	frame := bytes.Clone(b.udp(pkt{
		src: ap(v4(1, 1, 1, 1), 1024), dst: ap(v4(198, 51, 100, 77), 7), ttl: 53, srcMAC: routerMAC, payload: payload,
	}))
	ip := frame[14:] // 20-byte IPv4 header, no options
	udp := frame[14+20:]
	be := binary.BigEndian
	special := newIPv4Set(specialIPv4)
	next := uint32(0)
	for i := range packets {
		var src uint32
		for {
			src = scatter(next)
			next++
			if !special.contains(src) {
				break
			}
		}
		be.PutUint16(ip[4:6], uint16(rng.Uint32())) // IP ID
		be.PutUint32(ip[12:16], src)
		be.PutUint16(ip[10:12], 0)
		be.PutUint16(ip[10:12], gopacket.FoldChecksum(gopacket.ComputeChecksum(ip[:20], 0)))
		be.PutUint16(udp[0:2], uint16(1024+rng.IntN(64512)))
		be.PutUint16(udp[6:8], 0)
		be.PutUint16(udp[6:8], udpChecksum(ip[12:20], udp[:be.Uint16(udp[4:6])]))
		ci := gopacket.CaptureInfo{Timestamp: epoch.Add(time.Duration(i) * 2 * time.Microsecond), CaptureLength: len(frame), Length: len(frame)}
		if err := pw.WritePacket(ci, frame); err != nil {
			return err
		}
	}
	return nil
}

// udpChecksum returns the UDP checksum over IPv4 of the datagram, given
// the source and destination addresses (8 bytes) and the datagram with its
// checksum field zero.
func udpChecksum(addrs, datagram []byte) uint16 {
	sum := gopacket.ComputeChecksum(addrs, 0)
	sum += uint32(layers.IPProtocolUDP) + uint32(len(datagram))
	c := gopacket.FoldChecksum(gopacket.ComputeChecksum(datagram, sum))
	if c == 0 {
		return 0xffff // 0 means "no checksum" in UDP over IPv4
	}
	return c
}

// scatter is a bijection of uint32 (xor-shifts and odd multipliers are
// each invertible) that makes a counter look random: distinct inputs give
// distinct addresses.
func scatter(x uint32) uint32 {
	x ^= x >> 16
	x *= 0x7feb352d
	x ^= x >> 15
	x *= 0x846ca68b
	x ^= x >> 16
	return x
}

// The memory floods: each is a flood shaped to fill one kind of table,
// with the same real incidents planted inside, so that a benchmark can
// check both the peak memory and that the incidents are still reported.
// The flood runs for floodSeconds of packet time; the incidents run from
// plantFrom to plantTo; one DNS exchange a second follows until tailTo,
// so that the incidents end (end_after) while packets still move the clock.
const (
	floodSeconds = 40 * time.Second
	plantFrom    = 10 * time.Second
	plantTo      = 30 * time.Second
	floodTailTo  = 130 * time.Second
)

// The planted incidents: 20 echo servers reflecting 400 packets a second
// toward one victim, and an echo-chargen loop at 200 packets a second
// each way.
var (
	plantedVictim  = ap(v4(198, 51, 100, 10), 40000)
	plantedEcho    = ap(v4(198, 51, 100, 7), 7)
	plantedChargen = ap(v4(198, 51, 100, 19), 19)
)

// floodKinds are the memory floods by -bench name, with the flood's
// default packet count and its packets: flood(i) is the i-th packet's
// source and destination.
var floodKinds = map[string]struct {
	packets int
	flood   func(f *floodGen) func(i int) (src, dst netip.AddrPort)
}{
	// Every packet from a new source, IPv4 and IPv6 in turn, to one
	// target's echo port: the victims of forged requests, the scanners,
	// the one-way flows.
	"sources": {10_000_000, func(f *floodGen) func(int) (netip.AddrPort, netip.AddrPort) {
		t4, t6 := ap(v4(198, 51, 100, 77), 7), ap(v6("2001:db8:77::", 0x77), 7)
		return func(i int) (netip.AddrPort, netip.AddrPort) {
			if i&1 == 1 {
				return ap(f.newAddr(true), f.port()), t6
			}
			return ap(f.newAddr(false), f.port()), t4
		}
	}},
	// Packets to 1,000,000 targets picked at random (about ten each),
	// from new sources: echo replies toward them (reflection victims and
	// prefixes) and requests to their echo port (spoofed-flood targets).
	"targets": {10_000_000, func(f *floodGen) func(int) (netip.AddrPort, netip.AddrPort) {
		const n = 1_000_000
		targets := make([]netip.Addr, n)
		for i := range targets {
			targets[i] = f.newAddr(i&1 == 1)
		}
		return func(i int) (netip.AddrPort, netip.AddrPort) {
			t := targets[f.rng.IntN(n)]
			src := f.newAddr(t.Is6())
			if i&1 == 1 {
				return ap(src, 7), ap(t, f.port())
			}
			return ap(src, f.port()), ap(t, 7)
		}
	}},
	// Two-way echo flows, a request and its reply, each between two new
	// addresses: two-way flows, exposure findings, victims.
	"echo-flows": {4_000_000, func(f *floodGen) func(int) (netip.AddrPort, netip.AddrPort) {
		var client, server netip.AddrPort
		return func(i int) (netip.AddrPort, netip.AddrPort) {
			if i&1 == 1 {
				return server, client
			}
			v6 := i&2 == 2
			client, server = ap(f.newAddr(v6), f.port()), ap(f.newAddr(v6), 7)
			return client, server
		}
	}},
	// Two-way flows between two new addresses on every pair of the loop
	// ports in turn, one packet each way: the loop detector's pairs.
	"loop-flows": {4_000_000, func(f *floodGen) func(int) (netip.AddrPort, netip.AddrPort) {
		ports := []uint16{7, 11, 13, 17, 19, 37}
		var a, b netip.AddrPort
		return func(i int) (netip.AddrPort, netip.AddrPort) {
			if i&1 == 1 {
				return b, a
			}
			flow, v6 := i/2, i&2 == 2
			a = ap(f.newAddr(v6), ports[flow%len(ports)])
			b = ap(f.newAddr(v6), ports[flow/len(ports)%len(ports)])
			return a, b
		}
	}},
}

// floodGen makes the packets of a memory flood: new addresses, and frames
// patched from one template per IP version.
type floodGen struct {
	rng     *rand.Rand
	pw      packetWriter
	special ipv4Set
	next4   uint32
	next6   uint64
	frame4  []byte
	frame6  []byte
	id      uint16
	sent    int // packets written
}

// newAddr returns an address no earlier call returned: a global IPv4
// address outside the special-purpose blocks, or a global IPv6 address
// under 2600::/8 with random upper bits, so that the flood also spreads
// over /24 and /64 prefixes.
func (f *floodGen) newAddr(v6 bool) netip.Addr {
	if v6 {
		var b [16]byte
		binary.BigEndian.PutUint64(b[:8], 0x26<<56|f.rng.Uint64()>>8)
		binary.BigEndian.PutUint32(b[8:], scatter(uint32(f.next6>>32)))
		binary.BigEndian.PutUint32(b[12:], scatter(uint32(f.next6)))
		f.next6++
		return netip.AddrFrom16(b)
	}
	for {
		a := scatter(f.next4)
		f.next4++
		if !f.special.contains(a) {
			return netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, a)))
		}
	}
}

// port returns a random client port.
func (f *floodGen) port() uint16 { return uint16(1024 + f.rng.IntN(64512)) }

// udp writes a UDP datagram from src to dst at.
func (f *floodGen) udp(at time.Duration, src, dst netip.AddrPort) error {
	be := binary.BigEndian
	var frame, udp []byte
	if src.Addr().Is4() {
		frame = f.frame4
		ip := frame[14:34]
		udp = frame[34:]
		udp = udp[:be.Uint16(udp[4:6])] // not the Ethernet padding
		f.id++
		be.PutUint16(ip[4:6], f.id)
		s, d := src.Addr().As4(), dst.Addr().As4()
		copy(ip[12:16], s[:])
		copy(ip[16:20], d[:])
		be.PutUint16(ip[10:12], 0)
		be.PutUint16(ip[10:12], gopacket.FoldChecksum(gopacket.ComputeChecksum(ip, 0)))
		be.PutUint16(udp[0:2], src.Port())
		be.PutUint16(udp[2:4], dst.Port())
		be.PutUint16(udp[6:8], 0)
		be.PutUint16(udp[6:8], udpChecksum(ip[12:20], udp))
	} else {
		frame = f.frame6
		ip := frame[14:54]
		udp = frame[54:]
		s, d := src.Addr().As16(), dst.Addr().As16()
		copy(ip[8:24], s[:])
		copy(ip[24:40], d[:])
		be.PutUint16(udp[0:2], src.Port())
		be.PutUint16(udp[2:4], dst.Port())
		be.PutUint16(udp[6:8], 0)
		be.PutUint16(udp[6:8], udpChecksum(ip[8:40], udp))
	}
	f.sent++
	ci := gopacket.CaptureInfo{Timestamp: epoch.Add(at), CaptureLength: len(frame), Length: len(frame)}
	return f.pw.WritePacket(ci, frame)
}

// benchMemoryFlood writes the flood kind of packets packets (0: its
// default), with the planted incidents and the tail, and returns the
// number of packets written.
func benchMemoryFlood(pw packetWriter, kind string, packets int) (int, error) {
	k := floodKinds[kind]
	if packets == 0 {
		packets = k.packets
	}
	b := newBuilder()
	payload := []byte("XXXXXXXXXXXXXXXX")
	f := &floodGen{rng: newRand("bench-" + kind), pw: pw, special: newIPv4Set(specialIPv4)}
	f.frame4 = bytes.Clone(b.udp(pkt{src: ap(v4(1, 1, 1, 1), 1), dst: ap(v4(1, 1, 1, 2), 2), ttl: 53, srcMAC: routerMAC, dstMAC: routerMAC, payload: payload}))
	f.frame6 = bytes.Clone(b.udp(pkt{src: ap(v6("2600::", 1), 1), dst: ap(v6("2600::", 2), 2), ttl: 53, srcMAC: routerMAC, dstMAC: routerMAC, payload: payload}))
	flood := k.flood(f)

	// The planted incidents send in rounds of every 5 ms: 2 replies from
	// the reflectors in turn, one packet each way of the loop.
	const round = 5 * time.Millisecond
	reflectors := make([]netip.AddrPort, 20)
	for i := range reflectors {
		reflectors[i] = ap(v4(203, 0, 113, byte(100+i)), 7)
	}
	nextRound, r := plantFrom, 0
	plant := func(upTo time.Duration) error {
		for ; nextRound <= upTo && nextRound < plantTo; nextRound += round {
			for j := range 2 {
				if err := f.udp(nextRound, reflectors[(2*r+j)%len(reflectors)], plantedVictim); err != nil {
					return err
				}
			}
			r++
			if err := f.udp(nextRound, plantedEcho, plantedChargen); err != nil {
				return err
			}
			if err := f.udp(nextRound, plantedChargen, plantedEcho); err != nil {
				return err
			}
		}
		return nil
	}
	for i := range packets {
		at := time.Duration(int64(floodSeconds) * int64(i) / int64(packets))
		if err := plant(at); err != nil {
			return f.sent, err
		}
		src, dst := flood(i)
		if err := f.udp(at, src, dst); err != nil {
			return f.sent, err
		}
	}
	if err := plant(plantTo); err != nil {
		return f.sent, err
	}
	client, resolver := ap(v4(192, 0, 2, 20), 40001), ap(v4(192, 0, 2, 53), 53)
	for at := floodSeconds; at <= floodTailTo; at += time.Second {
		if err := f.udp(at, client, resolver); err != nil {
			return f.sent, err
		}
		if err := f.udp(at+time.Millisecond, resolver, client); err != nil {
			return f.sent, err
		}
	}
	return f.sent, nil
}
