//go:build linux

package live

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/echowatch/echowatch/capture"
)

// mode is a way to open a live capture, as the tests run each.
type mode struct {
	name string
	open func(cfg Config) ([]capture.Source, error)
}

func modes(workers int) []mode {
	return []mode{
		{"pcap", func(cfg Config) ([]capture.Source, error) {
			p, err := OpenPcap(cfg)
			if err != nil {
				return nil, err
			}
			return []capture.Source{p}, nil
		}},
		{"afpacket", func(cfg Config) ([]capture.Source, error) {
			as, err := OpenAFPacket(cfg, workers)
			if err != nil {
				return nil, err
			}
			srcs := make([]capture.Source, len(as))
			for i, a := range as {
				srcs[i] = a
			}
			return srcs, nil
		}},
	}
}

// openIn opens a capture inside namespace ns and closes it when the test
// ends.
func openIn(t *testing.T, ns string, m mode, cfg Config) []capture.Source {
	t.Helper()
	var srcs []capture.Source
	err := inNetns(ns, func() (err error) {
		srcs, err = m.open(cfg)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, s := range srcs {
			s.Close()
		}
	})
	return srcs
}

// captured is a frame a test read, with its Data copied, and the index of
// the source that read it.
type captured struct {
	worker int
	frame  capture.Frame
}

// collect reads every source on a goroutine of its own until want frames
// have come (or 10 s have passed), and 300 ms more for frames that should
// not come. Then it closes the sources from this goroutine, as a signal
// handler would, while their readers are blocked in ReadFrame: each reader
// must end with io.EOF, soon.
func collect(t *testing.T, want int, srcs ...capture.Source) []captured {
	t.Helper()
	frames := make(chan captured)
	ended := make(chan error, len(srcs))
	done := make(chan struct{}) // lets readers go when the test fails early
	defer close(done)
	for i, s := range srcs {
		go func() {
			var f capture.Frame
			for {
				err := s.ReadFrame(&f)
				if errors.Is(err, capture.ErrTimeout) {
					continue
				}
				if err != nil {
					ended <- err
					return
				}
				c := f
				c.Data = bytes.Clone(f.Data) // f.Data is borrowed until the next read
				select {
				case frames <- captured{i, c}:
				case <-done:
					return
				}
			}
		}()
	}
	var got []captured
	deadline := time.After(10 * time.Second)
	var quiet <-chan time.Time
wait:
	for {
		select {
		case c := <-frames:
			if got = append(got, c); len(got) == want {
				quiet = time.After(300 * time.Millisecond)
			}
		case err := <-ended:
			t.Fatalf("a reader ended before Close: %v", err)
		case <-quiet:
			break wait
		case <-deadline:
			t.Errorf("got %d frames in 10 s, want %d", len(got), want)
			break wait
		}
	}
	closed := make(chan time.Duration)
	go func() {
		start := time.Now()
		for _, s := range srcs {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}
		closed <- time.Since(start)
	}()
	for n := 0; n < len(srcs); {
		select {
		case c := <-frames:
			got = append(got, c)
		case err := <-ended:
			if err != io.EOF {
				t.Errorf("reader ended with %v after Close, want io.EOF", err)
			}
			n++
		}
	}
	if d := <-closed; d > time.Second {
		t.Errorf("closing %d blocked readers took %v, want well under a second", len(srcs), d)
	}
	for _, s := range srcs {
		var f capture.Frame
		if err := s.ReadFrame(&f); err != io.EOF {
			t.Errorf("ReadFrame after Close = %v, want io.EOF", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("second Close = %v, want nil", err)
		}
	}
	return got
}

// udpFrame is what a test frame says, decoded with gopacket's layers.
type udpFrame struct {
	srcMAC, dstMAC string
	src, dst       netip.AddrPort
	payload        string
}

func (u udpFrame) String() string {
	return fmt.Sprintf("%s → %s, %v → %v, %q", u.srcMAC, u.dstMAC, u.src, u.dst, u.payload)
}

func decodeUDP(t *testing.T, data []byte) (udpFrame, bool) {
	t.Helper()
	var (
		eth     layers.Ethernet
		ip4     layers.IPv4
		udp     layers.UDP
		payload gopacket.Payload
		decoded []gopacket.LayerType
	)
	parser := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &ip4, &udp, &payload)
	if err := parser.DecodeLayers(data, &decoded); err != nil || len(decoded) != 4 {
		t.Errorf("frame % x: decoded %v: %v", data, decoded, err)
		return udpFrame{}, false
	}
	src, _ := netip.AddrFromSlice(ip4.SrcIP)
	dst, _ := netip.AddrFromSlice(ip4.DstIP)
	return udpFrame{
		srcMAC:  eth.SrcMAC.String(),
		dstMAC:  eth.DstMAC.String(),
		src:     netip.AddrPortFrom(src, uint16(udp.SrcPort)),
		dst:     netip.AddrPortFrom(dst, uint16(udp.DstPort)),
		payload: string(payload),
	}, true
}

// TestLiveCapture sends real datagrams to an echo service across a veth
// pair and checks that the capture sees each request and each echo exactly
// once, whole, decoded, with its metadata; that the kernel counted them;
// that promiscuous mode is on while the capture is open and off after;
// and, with fanout, that each flow, both ways, went to one worker.
func TestLiveCapture(t *testing.T) {
	const (
		n       = 64 // datagrams to port 7
		ports   = 8  // source ports, hence flows
		workers = 2  // afpacket sockets in the fanout group
	)
	for _, m := range modes(workers) {
		t.Run(m.name, func(t *testing.T) {
			v := newVethPair(t, m.name)
			v.echoServer(t)
			srcs := openIn(t, v.rx, m, Config{Interface: rxIf, Promisc: true, BPF: "udp port 7"})
			if p := promiscuity(t, v.rx, rxIf); p != len(srcs) {
				t.Errorf("promiscuity %d with %d sockets open, want %d", p, len(srcs), len(srcs))
			}

			start := time.Now()
			sent := v.send(t, n, ports, 100)
			got := collect(t, 2*n, srcs...)
			end := time.Now()

			if len(got) != 2*n {
				t.Errorf("captured %d frames, want %d: %d requests and %d echoes", len(got), 2*n, n, n)
			}
			idx := ifindex(t, v.rx, rxIf)
			requests := make(map[string]int)
			echoes := make(map[string]int)
			perWorker := make([]int, len(srcs))
			flowWorker := make(map[uint16]int) // by the client's port
			for _, c := range got {
				f := c.frame
				perWorker[c.worker]++
				if f.LinkType != layers.LinkTypeEthernet || f.Interface != idx ||
					f.CaptureLength != len(f.Data) || f.Length != f.CaptureLength ||
					f.Timestamp.Before(start.Add(-time.Second)) || f.Timestamp.After(end.Add(time.Second)) {
					t.Errorf("frame metadata %+v, want Ethernet, interface %d, whole, stamped between %v and %v",
						capture.Frame{Timestamp: f.Timestamp, CaptureLength: f.CaptureLength, Length: f.Length, LinkType: f.LinkType, Interface: f.Interface},
						idx, start, end)
				}
				u, ok := decodeUDP(t, f.Data)
				if !ok {
					continue
				}
				port, known := sent[u.payload]
				client := netip.AddrPortFrom(netip.MustParseAddr(txAddr), port)
				service := netip.AddrPortFrom(netip.MustParseAddr(rxAddr), 7)
				switch {
				case !known:
					t.Errorf("frame with a payload never sent: %q", u.payload)
					continue
				case u.src == client && u.dst == service && u.srcMAC == txMAC && u.dstMAC == rxMAC:
					requests[u.payload]++
				case u.src == service && u.dst == client && u.srcMAC == rxMAC && u.dstMAC == txMAC:
					echoes[u.payload]++
				default:
					t.Errorf("frame %v, want %v → %v or back", u, client, service)
					continue
				}
				if w, seen := flowWorker[port]; seen && w != c.worker {
					t.Errorf("flow %v ↔ %v went to workers %d and %d, want one", client, service, w, c.worker)
				}
				flowWorker[port] = c.worker
			}
			for p := range sent {
				if requests[p] != 1 || echoes[p] != 1 {
					t.Errorf("datagram %q captured %d times and its echo %d times, want once each", p, requests[p], echoes[p])
				}
			}
			t.Logf("frames per worker: %v", perWorker)

			var received uint64
			for _, s := range srcs {
				st, err := s.(capture.StatsSource).Stats()
				if err != nil {
					t.Fatal(err)
				}
				received += st.Received
			}
			if received < 2*n {
				t.Errorf("kernel counted %d frames received, want at least %d", received, 2*n)
			}
			if p := promiscuity(t, v.rx, rxIf); p != 0 {
				t.Errorf("promiscuity %d after Close, want 0", p)
			}
		})
	}
}

// The snap length cuts frames, in the kernel, and Length keeps the length
// on the wire.
func TestLiveSnaplen(t *testing.T) {
	const snaplen = 96
	for _, m := range modes(1) {
		t.Run(m.name, func(t *testing.T) {
			v := newVethPair(t, m.name+"-snap")
			srcs := openIn(t, v.rx, m, Config{Interface: rxIf, Snaplen: snaplen, BPF: "udp dst port 7"})
			v.send(t, 1, 1, 400)
			got := collect(t, 1, srcs...)
			if len(got) != 1 {
				t.Fatalf("captured %d frames, want 1", len(got))
			}
			f := got[0].frame
			wire := 14 + 20 + 8 + 400 // Ethernet, IPv4, UDP, payload
			if len(f.Data) != snaplen || f.CaptureLength != snaplen || f.Length != wire {
				t.Errorf("len(Data) %d, CaptureLength %d, Length %d; want %d, %d, %d",
					len(f.Data), f.CaptureLength, f.Length, snaplen, snaplen, wire)
			}
		})
	}
}

// An interface that is down says so when the capture opens, in both
// modes (an AF_PACKET socket bound to it would open, then fail its first
// read).
func TestOpenDownInterface(t *testing.T) {
	for _, m := range modes(2) {
		t.Run(m.name, func(t *testing.T) {
			v := newVethPair(t, m.name+"-down")
			ip(t, "-n", v.rx, "link", "set", rxIf, "down")
			err := inNetns(v.rx, func() error {
				srcs, err := m.open(Config{Interface: rxIf})
				for _, s := range srcs {
					s.Close()
				}
				return err
			})
			want := "capture/live: " + rxIf + ": interface is down"
			if err == nil || err.Error() != want {
				t.Errorf("open = %v, want %s", err, want)
			}
		})
	}
}

// An interface that goes down under an afpacket capture ends its read
// with the kernel's reason.
func TestLiveInterfaceGoesDown(t *testing.T) {
	v := newVethPair(t, "afpacket-goes-down")
	srcs := openIn(t, v.rx, modes(1)[1], Config{Interface: rxIf}) // afpacket
	ip(t, "-n", v.rx, "link", "set", rxIf, "down")
	var f capture.Frame
	err := srcs[0].ReadFrame(&f)
	for i := 0; errors.Is(err, capture.ErrTimeout) && i < 20; i++ {
		err = srcs[0].ReadFrame(&f)
	}
	want := "capture/live: " + rxIf + ": read: network is down"
	if err == nil || err.Error() != want {
		t.Errorf("read = %v, want %s", err, want)
	}
}

func TestOpenMissingInterface(t *testing.T) {
	for _, m := range modes(2) {
		t.Run(m.name, func(t *testing.T) {
			_, err := m.open(Config{Interface: "ew-nosuch0", Promisc: true})
			want := "capture/live: ew-nosuch0: no such device"
			if err == nil || err.Error() != want || !errors.Is(err, ErrNoDevice) {
				t.Errorf("open = %v, want %s", err, want)
			}
		})
	}
}

func TestOpenBadFilter(t *testing.T) {
	ns := newNetns(t, "bpf")
	for _, m := range modes(2) {
		t.Run(m.name, func(t *testing.T) {
			err := inNetns(ns, func() error {
				srcs, err := m.open(Config{Interface: "lo", BPF: "udp prot 7"})
				for _, s := range srcs {
					s.Close()
				}
				return err
			})
			want := `capture/live: lo: bpf "udp prot 7": syntax error`
			if err == nil || err.Error() != want {
				t.Errorf("open = %v, want %s", err, want)
			}
		})
	}
}

func TestOpenBadConfig(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{}, "capture/live: no interface given"},
		{Config{Interface: "lo", Snaplen: -1}, "capture/live: lo: snap length -1 is not in 1..262144"},
		{Config{Interface: "lo", Snaplen: 1 << 20}, "capture/live: lo: snap length 1048576 is not in 1..262144"},
		{Config{Interface: "lo", BufferSize: -1}, "capture/live: lo: buffer size -1 is negative"},
	}
	for _, m := range modes(1) {
		for _, tt := range tests {
			if _, err := m.open(tt.cfg); err == nil || err.Error() != tt.want {
				t.Errorf("%s: open(%+v) = %v, want %s", m.name, tt.cfg, err, tt.want)
			}
		}
	}
	if _, err := OpenAFPacket(Config{Interface: "lo"}, 0); err == nil || !strings.Contains(err.Error(), "0 workers") {
		t.Errorf("OpenAFPacket with 0 workers = %v, want an error naming the count", err)
	}
}

// A tun device carries raw IP: libpcap captures it as such, and afpacket,
// which labels every frame Ethernet, refuses it.
func TestOpenTun(t *testing.T) {
	ns := newNetns(t, "tun")
	if out, err := tryIP("-n", ns, "tuntap", "add", "dev", "ewtun0", "mode", "tun"); err != nil {
		t.Skipf("skipping: cannot create a tun device: %v: %s", err, out)
	}
	ip(t, "-n", ns, "link", "set", "ewtun0", "up")
	pcapMode, afMode := modes(1)[0], modes(1)[1]
	srcs := openIn(t, ns, pcapMode, Config{Interface: "ewtun0"})
	if lt := srcs[0].(*Pcap).LinkType(); lt != layers.LinkTypeRaw {
		t.Errorf("pcap link type on a tun device: %v, want %v", lt, layers.LinkTypeRaw)
	}
	err := inNetns(ns, func() error {
		_, err := afMode.open(Config{Interface: "ewtun0"})
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "capture/live: ewtun0: afpacket captures Ethernet interfaces only") {
		t.Errorf("afpacket on a tun device: %v, want a refusal naming the interface", err)
	}
}

// A device whose frames the decoder cannot read is refused when the
// capture opens, with the error a file of such frames gets: here a tun
// device that says it carries 802.11 frames behind a radiotap header, as
// a Wi-Fi card in monitor mode does.
func TestOpenUnsupportedLinkType(t *testing.T) {
	ns := newNetns(t, "radiotap")
	const dev = "ewradio0"
	if out, err := tryIP("-n", ns, "tuntap", "add", "dev", dev, "mode", "tun"); err != nil {
		t.Skipf("skipping: cannot create a tun device: %v: %s", err, out)
	}
	if err := inNetns(ns, func() error { return setHardwareType(dev, unix.ARPHRD_IEEE80211_RADIOTAP) }); err != nil {
		t.Fatalf("make %s a radiotap device: %v", dev, err)
	}
	ip(t, "-n", ns, "link", "set", dev, "up")
	err := inNetns(ns, func() error {
		srcs, err := modes(1)[0].open(Config{Interface: dev})
		for _, s := range srcs {
			s.Close()
		}
		return err
	})
	want := "capture/live: ewradio0: unsupported link type 127 (RadioTap): " +
		"echowatch decodes Ethernet, Linux cooked (SLL, SLL2), raw IP and BSD loopback"
	if err == nil || err.Error() != want || !errors.Is(err, capture.ErrUnsupportedLinkType) {
		t.Errorf("pcap on a radiotap device: %v,\nwant %s, wrapping capture.ErrUnsupportedLinkType", err, want)
	}
}

// setHardwareType sets the hardware type (ARPHRD_*) of the tun device dev,
// which must be down, with TUNSETLINK.
func setHardwareType(dev string, arphrd int) error {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(dev)
	if err != nil {
		return err
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETLINK, arphrd); err != nil {
		return fmt.Errorf("TUNSETLINK: %w", err)
	}
	return nil
}

func TestRingFor(t *testing.T) {
	for _, tt := range []struct{ snaplen, buffer int }{
		{DefaultSnaplen, DefaultBufferSize},
		{64, DefaultBufferSize},
		{1500, 1 << 20},
		{9000, 0},
	} {
		r := ringFor(tt.snaplen, tt.buffer)
		if r.blockSize%r.frameSize != 0 || r.blockSize%4096 != 0 || r.frameSize < tt.snaplen+64 ||
			r.blockSize < r.frameSize || r.numBlocks < 2 || r.numBlocks*r.blockSize < tt.buffer {
			t.Errorf("ringFor(%d, %d) = %+v: blocks must hold whole frames of the snap length, in whole pages, and add up to the buffer",
				tt.snaplen, tt.buffer, r)
		}
	}
}

// Frames that arrive while the capture opens must meet the filter too:
// with traffic to another port flowing all along, only port 7 is seen.
func TestLiveFilterFromFirstFrame(t *testing.T) {
	const n = 16
	for _, m := range modes(2) {
		t.Run(m.name, func(t *testing.T) {
			v := newVethPair(t, m.name+"-noise")
			noise := udpSocket(t, v.tx, netip.AddrPortFrom(netip.MustParseAddr(txAddr), 0))
			discard := netip.AddrPortFrom(netip.MustParseAddr(rxAddr), 9)
			stop := make(chan struct{})
			stopped := make(chan struct{})
			go func() {
				defer close(stopped)
				for {
					select {
					case <-stop:
						return
					default:
						noise.WriteToUDPAddrPort([]byte("noise"), discard)
					}
				}
			}()
			defer func() { close(stop); <-stopped }()
			time.Sleep(50 * time.Millisecond) // the noise is flowing
			srcs := openIn(t, v.rx, m, Config{Interface: rxIf, BPF: "udp dst port 7"})
			v.send(t, n, 4, 64)
			got := collect(t, n, srcs...)
			if len(got) != n {
				t.Errorf("captured %d frames, want %d", len(got), n)
			}
			for _, c := range got {
				if u, ok := decodeUDP(t, c.frame.Data); ok && u.dst.Port() != 7 {
					t.Fatalf("captured a frame the filter rejects: %v", u)
				}
			}
		})
	}
}

// Reading a frame allocates nothing: the frames wait in the ring, and
// nothing else runs while they are read.
func TestLiveReadAllocs(t *testing.T) {
	const runs = 50
	for _, m := range modes(1) {
		t.Run(m.name, func(t *testing.T) {
			v := newVethPair(t, m.name+"-allocs")
			srcs := openIn(t, v.rx, m, Config{Interface: rxIf, BPF: "udp dst port 7"})
			v.send(t, runs+2, 4, 64)
			time.Sleep(3 * readTimeout) // every ring block is handed over
			var f capture.Frame
			read := func() {
				err := srcs[0].ReadFrame(&f)
				for errors.Is(err, capture.ErrTimeout) {
					err = srcs[0].ReadFrame(&f)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			read()
			allocs := testing.AllocsPerRun(runs, read)
			if allocs != 0 {
				t.Errorf("ReadFrame allocates %v times per frame, want 0", allocs)
			}
		})
	}
}

// Linux takes the VLAN tag off before the capture sees a frame, and the
// kernel filter runs on the untagged frame; both captures put the tag
// back, so the frame reaches the decoder as it was on the wire: an 802.1Q
// tag, a priority tag (VLAN 0, which is still a tag), and the outer
// 802.1ad tag of a QinQ frame, whose inner tag the kernel leaves.
func TestLiveVLAN(t *testing.T) {
	frames := []struct {
		name  string
		frame func(t *testing.T) []byte
	}{
		{"802.1Q", func(t *testing.T) []byte { return taggedFrame(t, []uint16{100}, []byte("tagged")) }},
		{"priority", func(t *testing.T) []byte { return taggedFrame(t, []uint16{5 << 13}, []byte("priority")) }},
		{"QinQ", func(t *testing.T) []byte { return taggedFrame(t, []uint16{3<<13 | 200, 100}, []byte("qinq")) }},
	}
	for _, m := range modes(1) {
		t.Run(m.name, func(t *testing.T) {
			v := newVethPair(t, m.name+"-vlan")
			// The MAC addresses are where they were, so the filter passes
			// every frame injected, and none of tx's IPv6 neighbour talk.
			srcs := openIn(t, v.rx, m, Config{Interface: rxIf, BPF: "ether src " + txMAC + " and not ip6"})
			var want [][]byte
			for _, fr := range frames {
				frame := fr.frame(t)
				want = append(want, frame)
				v.inject(t, frame)
			}
			got := collect(t, len(want), srcs...)
			if len(got) != len(want) {
				t.Fatalf("captured %d frames, want %d", len(got), len(want))
			}
			for i, c := range got {
				f := c.frame
				if !bytes.Equal(f.Data, want[i]) || f.Length != len(want[i]) || f.CaptureLength != len(want[i]) {
					t.Errorf("%s: captured % x (length %d, captured %d),\nwant the frame sent, tags included: % x",
						frames[i].name, f.Data, f.Length, f.CaptureLength, want[i])
				}
			}
		})
	}
}

// taggedFrame returns an Ethernet frame that carries a UDP datagram from
// tx to rx's port 7 behind the tags tcis: an 802.1Q tag when there is
// one, an 802.1ad tag then an 802.1Q one when there are two.
func taggedFrame(t *testing.T, tcis []uint16, payload []byte) []byte {
	t.Helper()
	txHW, _ := net.ParseMAC(txMAC)
	rxHW, _ := net.ParseMAC(rxMAC)
	outer := layers.EthernetTypeDot1Q
	if len(tcis) == 2 {
		outer = layers.EthernetTypeQinQ
	}
	ls := []gopacket.SerializableLayer{&layers.Ethernet{SrcMAC: txHW, DstMAC: rxHW, EthernetType: outer}}
	for i, tci := range tcis {
		next := layers.EthernetTypeIPv4
		if i+1 < len(tcis) {
			next = layers.EthernetTypeDot1Q
		}
		ls = append(ls, &layers.Dot1Q{Priority: uint8(tci >> 13), DropEligible: tci&0x1000 != 0, VLANIdentifier: tci & 0xfff, Type: next})
	}
	ip4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP,
		SrcIP: net.ParseIP(txAddr).To4(), DstIP: net.ParseIP(rxAddr).To4()}
	udp := &layers.UDP{SrcPort: 40007, DstPort: 7}
	udp.SetNetworkLayerForChecksum(ip4)
	ls = append(ls, ip4, udp, gopacket.Payload(payload))
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
