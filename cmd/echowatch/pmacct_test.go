//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/echowatch/echowatch/internal/netnstest"
	"github.com/echowatch/echowatch/internal/pcaptest"
)

// udpCollector is a UDP socket that receives an exporter's datagrams and
// keeps them as a collector's tcpdump would: a raw IPv4/UDP frame per
// datagram (see exportFrame), stamped by stamp at its arrival.
type udpCollector struct {
	conn  *net.UDPConn
	stamp func(d []byte, arrival time.Time) time.Time
	done  chan struct{}

	mu   sync.Mutex
	recs []pcaptest.Record
	last time.Time
}

// listenUDPCollector opens a collector on 127.0.0.1 in network namespace ns
// ("": the test's own), where the exporter must run too.
func listenUDPCollector(t *testing.T, ns string, stamp func([]byte, time.Time) time.Time) *udpCollector {
	t.Helper()
	c := &udpCollector{stamp: stamp, done: make(chan struct{}), last: time.Now()}
	listen := func() (err error) {
		c.conn, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		return err
	}
	var err error
	if ns == "" {
		err = listen()
	} else {
		err = netnstest.Do(ns, listen)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.conn.Close() })
	if err := c.conn.SetReadBuffer(8 << 20); err != nil {
		t.Fatal(err)
	}
	go c.read()
	return c
}

func (c *udpCollector) read() {
	defer close(c.done)
	buf := make([]byte, 65536)
	for {
		n, err := c.conn.Read(buf)
		if err != nil {
			return
		}
		now := time.Now()
		c.mu.Lock()
		c.recs = append(c.recs, pcaptest.Record{TS: c.stamp(buf[:n], now), Data: exportFrame(buf[:n]), Wire: 28 + n})
		c.last = now
		c.mu.Unlock()
	}
}

// addr is where the exporter sends to.
func (c *udpCollector) addr() string { return c.conn.LocalAddr().String() }

// close waits until no datagram came for a quarter second (the exporter
// has gone; its last ones may still be in the socket), closes the socket
// and writes what came as a capture, in time order; it returns the path.
func (c *udpCollector) close(t *testing.T) string {
	t.Helper()
	for {
		c.mu.Lock()
		quiet := time.Since(c.last)
		c.mu.Unlock()
		if quiet > 250*time.Millisecond {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.conn.Close()
	<-c.done
	sort.SliceStable(c.recs, func(i, j int) bool { return c.recs[i].TS.Before(c.recs[j].TS) })
	if len(c.recs) == 0 {
		t.Fatal("the exporter sent nothing")
	}
	return pcaptest.WriteFile(t, t.TempDir(), "export.pcap", pcaptest.Pcap(t, true, layers.LinkTypeRaw, c.recs))
}

// needTools skips the test when a tool it runs is not installed.
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, name := range tools {
		if _, err := exec.LookPath(name); err != nil {
			t.Skipf("%s is not installed (Debian packages pmacct and tcpreplay; scripts/test.sh installs them)", name)
		}
	}
}

// pmacctConfig writes a pmacctd configuration of the given lines, which
// runs in the foreground, and returns its path.
func pmacctConfig(t *testing.T, lines ...string) string {
	t.Helper()
	conf := "daemonize: false\n" + strings.Join(lines, "\n") + "\n"
	return pcaptest.WriteFile(t, t.TempDir(), "pmacctd.conf", []byte(conf))
}

// exporterSeen is an exporter as an incident names it: its address and
// the interfaces its traffic entered and left by (0: not named).
type exporterSeen struct {
	Address string `json:"address"`
	InIf    uint32 `json:"input_ifindex"`
	OutIf   uint32 `json:"output_ifindex"`
}

// telemetrySeen is what an incident says of the telemetry its traffic
// came in: how it was sampled and who exported it.
type telemetrySeen struct {
	Format    string         `json:"format"`
	Rate      int            `json:"rate"`
	Estimated bool           `json:"estimated"`
	Exporters []exporterSeen `json:"exporters"`
}

// telemetryCase is a capture and the settings echowatch reads it with.
type telemetryCase struct {
	name   string
	config string // the case's settings, if any
}

// args returns echowatch's flags for the case's settings.
func (c telemetryCase) args() []string {
	if c.config == "" {
		return nil
	}
	return []string{"--config", filepath.Join(pcap(c.name), c.config)}
}

// captureTruth is what echowatch reports on the capture file itself, EVE.
func captureTruth(t *testing.T, file string, extra []string) string {
	t.Helper()
	code, out, stderr := runMain(t, nil, append([]string{"-r", file, "--format", "eve"}, extra...)...)
	if code != 0 {
		t.Fatalf("capture: exit %d: %s", code, stderr)
	}
	return out
}

// fromTelemetry is what echowatch reports on a capture of exports from
// 127.0.0.1, EVE.
func fromTelemetry(t *testing.T, export string, extra []string) string {
	t.Helper()
	code, out, stderr := runMain(t, nil, append([]string{"-r", export, "--telemetry", "--exporter", "127.0.0.1",
		"--format", "eve"}, extra...)...)
	if code != 0 {
		t.Fatalf("telemetry: exit %d: %s", code, stderr)
	}
	return out
}

// telemetryWant is what the incidents from telemetry must be, besides
// those of the capture.
type telemetryWant struct {
	tolerance float64       // of the peak rate, as a fraction of the capture's
	seen      telemetrySeen // every incident's sampling and exporters
	// skip leaves out the capture's incidents that the export cannot
	// carry.
	skip func(key string) bool
}

// compareEnds checks the end alerts that telemetry gave (got) against the
// capture's own (want), in two subtests. incidents: the same incidents by
// kind and key, none more, each with a peak rate within tolerance of the
// capture's; a benign capture's telemetry gives no alert at all.
// telemetry: each incident's sampling and exporters are those wanted.
func compareEnds(t *testing.T, want, got string, w telemetryWant) {
	t.Helper()
	wantEnds, gotEnds := endsOf(t, want), endsOf(t, got)
	t.Run("incidents", func(t *testing.T) {
		for k, c := range wantEnds {
			if w.skip != nil && w.skip(k) {
				continue
			}
			g, ok := gotEnds[k]
			if !ok {
				t.Errorf("%s: not reported from telemetry; got %v", k, gotEnds)
				continue
			}
			t.Logf("%s: peak %.1f pps from telemetry, %.1f in the capture", k, g.peak, c.peak)
			if math.Abs(g.peak-c.peak) > w.tolerance*c.peak {
				t.Errorf("%s: peak %.1f pps from telemetry, %.1f in the capture: off by more than %.0f%%", k, g.peak, c.peak, w.tolerance*100)
			}
		}
		for k := range gotEnds {
			if _, ok := wantEnds[k]; !ok {
				t.Errorf("%s: reported from telemetry, not in the capture", k)
			}
		}
		if len(wantEnds) == 0 && strings.Contains(got, `"event_type":"alert"`) {
			t.Errorf("benign capture: telemetry gave alerts:\n%s", got)
		}
	})
	t.Run("telemetry", func(t *testing.T) {
		for k := range gotEnds {
			if g := gotEnds[k].seen; !reflect.DeepEqual(g, w.seen) {
				t.Errorf("%s: telemetry %+v, want %+v", k, g, w.seen)
			}
		}
	})
}

// onlyIPv6 reports whether an endsOf key names IPv6 addresses only.
func onlyIPv6(key string) bool { return strings.Contains(key, ":") && !strings.Contains(key, ".") }

// shiftedCapture writes a copy of the capture file in, moved by whole
// seconds and then by phase, to end at or before end and phase, the
// spacing of its frames kept; it returns the path.
func shiftedCapture(t *testing.T, in string, end time.Time, phase time.Duration) string {
	t.Helper()
	p := readFrames(t, in)
	if len(p.cis) == 0 {
		t.Fatalf("%s holds no frames", in)
	}
	by := end.Sub(p.cis[len(p.cis)-1].Timestamp).Truncate(time.Second) + phase
	recs := make([]pcaptest.Record, len(p.cis))
	for i, ci := range p.cis {
		recs[i] = pcaptest.Record{TS: ci.Timestamp.Add(by), Data: p.datas[i], Wire: ci.Length}
	}
	return pcaptest.WriteFile(t, t.TempDir(), "capture.pcap", pcaptest.Pcap(t, false, p.link, recs))
}

// TestTelemetryFromPmacctNfprobe has pmacctd's nfprobe plugin, a real
// exporter, read the bundled captures and export their flows, unsampled,
// as NetFlow v5, NetFlow v9 and IPFIX at once; echowatch replays each
// export (-r --telemetry) and must report the incidents that the capture
// itself gives, with the same victim, target or endpoints, at a peak rate
// within 10% of the capture's, the format and rate 1 in their sampling
// and 127.0.0.1 as their exporter. The benign captures must stay silent.
//
// pmacctd has no clock but the wall clock: the headers of its exports
// say when it sent them, and NetFlow v5 counts a record's times from the
// boot of the plugin, while the records' times are the capture's. A
// capture of 2024 read today would be a flow that ended years before its
// export. So pmacctd reads a copy of the capture moved by whole seconds
// to end as the test starts, as if it had run on the router's link up to
// now; the capture's own incidents are those of the same copy. A router's
// flows fall on any phase of the collector's second: one case moves the
// loop, whose two flows last the whole attack, off the capture's phase.
func TestTelemetryFromPmacctNfprobe(t *testing.T) {
	needTools(t, "pmacctd")
	cases := []struct {
		telemetryCase
		phase time.Duration // past whole seconds
	}{
		{telemetryCase{"reflection-in", "config.yaml"}, 0},
		{telemetryCase{"chargen-reflection", ""}, 0},
		{telemetryCase{"loop-echo-chargen-vlan", ""}, 0},
		{telemetryCase{"loop-echo-chargen-vlan", ""}, 300 * time.Millisecond},
		{telemetryCase{"loop-echo-chargen-vlan", ""}, 700 * time.Millisecond},
		{telemetryCase{"random-source-flood", ""}, 0},
		{telemetryCase{"bogon-flood", ""}, 0},
		{telemetryCase{"benign-dns", ""}, 0},
		{telemetryCase{"benign-ntp-peers", ""}, 0},
		{telemetryCase{"busy-ntp-server", "config.yaml"}, 0},
	}
	versions := []struct{ v, format string }{{"5", "netflow5"}, {"9", "netflow9"}, {"10", "ipfix"}}
	for _, c := range cases {
		name := c.name
		if c.phase != 0 {
			name += "+" + c.phase.String()
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			in := shiftedCapture(t, filepath.Join(pcap(c.name), "capture.pcap"), time.Now().Add(-time.Second), c.phase)
			want := captureTruth(t, in, c.args())
			// One pmacctd, one nfprobe plugin per version, each to its
			// own collector. pmacctd reads the file at full speed, keeps
			// the flows (the capture is shorter than the UDP timeout) and
			// exports them all as it exits.
			conf := []string{"pcap_savefile: " + in}
			var names []string
			colls := make([]*udpCollector, len(versions))
			for i, x := range versions {
				colls[i] = listenUDPCollector(t, "", exportTime)
				name := "v" + x.v
				names = append(names, "nfprobe["+name+"]")
				conf = append(conf,
					"nfprobe_receiver["+name+"]: "+colls[i].addr(),
					"nfprobe_version["+name+"]: "+x.v)
			}
			conf = append(conf, "plugins: "+strings.Join(names, ", "))
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if b, err := exec.CommandContext(ctx, "pmacctd", "-f", pmacctConfig(t, conf...)).CombinedOutput(); err != nil {
				t.Fatalf("pmacctd: %v: %s", err, b)
			}
			for i, x := range versions {
				export := colls[i].close(t)
				t.Run("v"+x.v, func(t *testing.T) {
					got := fromTelemetry(t, export, c.args())
					var skip func(string) bool
					if x.v == "5" {
						skip = onlyIPv6 // NetFlow v5 carries IPv4 flows only
					}
					compareEnds(t, want, got, telemetryWant{tolerance: 0.10, skip: skip,
						seen: telemetrySeen{Format: x.format, Rate: 1, Exporters: []exporterSeen{{Address: "127.0.0.1"}}}})
				})
			}
		})
	}
}

// trimmedCapture writes the first d of the capture file in (its attack
// and some quiet either side, for a replay in real time) and returns its
// path.
func trimmedCapture(t *testing.T, in string, d time.Duration) string {
	t.Helper()
	p := readFrames(t, in)
	var recs []pcaptest.Record
	for i, ci := range p.cis {
		if ci.Timestamp.Sub(p.cis[0].Timestamp) > d {
			break
		}
		recs = append(recs, pcaptest.Record{TS: ci.Timestamp, Data: p.datas[i], Wire: ci.Length})
	}
	return pcaptest.WriteFile(t, t.TempDir(), "capture.pcap", pcaptest.Pcap(t, false, p.link, recs))
}

// sustainedReflection writes a capture of a sustained echo reflection:
// 50 reflectors (192.0.2.1 to .50, port 7) each answer 100 times a second
// toward 198.51.100.99, 5,000 packets a second for 20 s, after a second
// of nothing. The reflectors' packets come in bursts of 50 every 10 ms:
// a replay then sleeps 100 times a second, not 5,000, which a sleep's
// overshoot would slow by a third.
func sustainedReflection(t *testing.T) string {
	t.Helper()
	start := time.Date(2024, 3, 19, 12, 0, 1, 0, time.UTC)
	var recs []pcaptest.Record
	for i := range 100_000 {
		// Ports from 32768 up: none is a tunnel's that echowatch decodes.
		f := udpFrame([4]byte{192, 0, 2, byte(1 + i%50)}, [4]byte{198, 51, 100, 99}, 7, uint16(32768+i%28000), 64)
		recs = append(recs, pcaptest.Record{TS: start.Add(time.Duration(i/50) * 10 * time.Millisecond), Data: f, Wire: len(f)})
	}
	return pcaptest.WriteFile(t, t.TempDir(), "sustained.pcap", pcaptest.Pcap(t, false, layers.LinkTypeEthernet, recs))
}

// sfprobeRun is pmacctd with the sfprobe plugin capturing ew1 in a
// sensor namespace (see netnsPair), exporting sFlow to a collector there.
type sfprobeRun struct {
	cmd  *exec.Cmd
	coll *udpCollector
	done chan struct{} // closed when its output is read to the end

	mu  sync.Mutex
	out strings.Builder
}

// startSfprobe starts pmacctd in namespace ns, sampling 1 in rate on
// ew1, as interface 7, and returns once it captures and its plugin runs.
func startSfprobe(ctx context.Context, t *testing.T, ns string, rate int) *sfprobeRun {
	t.Helper()
	s := &sfprobeRun{coll: listenUDPCollector(t, ns, exportTime), done: make(chan struct{})}
	conf := pmacctConfig(t,
		"pcap_interface: ew1",
		"plugins: sfprobe[sf]",
		"sfprobe_receiver[sf]: "+s.coll.addr(),
		"sfprobe_agentip[sf]: 127.0.0.1",
		"sfprobe_ifindex[sf]: 7",
		fmt.Sprint("sampling_rate: ", rate),
	)
	s.cmd = exec.CommandContext(ctx, "ip", "netns", "exec", ns, "pmacctd", "-f", conf)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stdout, s.cmd.Stderr = w, w
	err = s.cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		t.Fatal(err)
	}
	// The core says the link type once it captures; the plugin its
	// sampling once it runs.
	ready := make(chan struct{})
	go func() {
		defer close(s.done)
		defer r.Close()
		var capturing, sampling bool
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			s.mu.Lock()
			s.out.WriteString(sc.Text() + "\n")
			s.mu.Unlock()
			wasReady := capturing && sampling
			capturing = capturing || strings.Contains(sc.Text(), "link type is")
			sampling = sampling || strings.Contains(sc.Text(), "Sampling at")
			if !wasReady && capturing && sampling {
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-s.done:
		s.cmd.Wait()
		t.Fatalf("pmacctd exited before capturing: %s", s.output())
	case <-ctx.Done():
		t.Fatalf("pmacctd did not start: %s", s.output())
	}
	return s
}

func (s *sfprobeRun) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// stop ends pmacctd as an operator would (SIGINT) and returns the
// capture of the sFlow it sent.
func (s *sfprobeRun) stop(t *testing.T) string {
	t.Helper()
	if err := s.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	<-s.done
	if err := s.cmd.Wait(); err != nil {
		t.Fatalf("pmacctd: %v: %s", err, s.output())
	}
	return s.coll.close(t)
}

// TestTelemetryFromPmacctSfprobe replays captures in real time with
// tcpreplay on a veth pair between two network namespaces, where
// pmacctd's sfprobe plugin, a real exporter, samples the link and sends
// sFlow v5 to a collector beside it; echowatch replays what the collector
// received (-r --telemetry) and must report the incidents that the
// replayed capture itself gives, with the same victim, target or
// endpoints, the sampling rate in their sampling, and 127.0.0.1 on
// interface 7 as their exporter. sFlow says nothing of time: a sample is
// timed by its arrival, so only a replay in real time measures rates.
// Unsampled, on bundled attacks, the peak rate must be within 10% of the
// capture's; at 1 in 100, on a generated sustained reflection of 5,000
// packets a second, within 30%. A benign capture must stay silent.
//
// The replays run at once, each in its own pair of namespaces: they take
// 25 s together rather than each. tcpreplay sleeps between packets
// (--timer nano): its default busy-waits, and five of them on two cores
// would keep no time.
func TestTelemetryFromPmacctSfprobe(t *testing.T) {
	needTools(t, "pmacctd", "tcpreplay", "ip")
	if os.Geteuid() != 0 {
		t.Skip("the replay in real time needs root (network namespaces and veth pairs)")
	}
	type sfCase struct {
		telemetryCase
		file string // the capture replayed
		rate int
		want telemetryWant

		sender   string
		probe    *sfprobeRun
		replayed string // tcpreplay's output
		err      error
	}
	seen := func(rate int) telemetrySeen {
		return telemetrySeen{Format: "sflow", Rate: rate, Estimated: rate > 1,
			Exporters: []exporterSeen{{Address: "127.0.0.1", InIf: 7}}}
	}
	// The bundled attacks run from the capture's second second to its
	// 22nd.
	bundled := func(name, config string) *sfCase {
		return &sfCase{telemetryCase: telemetryCase{name, config},
			file: trimmedCapture(t, filepath.Join(pcap(name), "capture.pcap"), 23*time.Second), rate: 1,
			want: telemetryWant{tolerance: 0.10, seen: seen(1)}}
	}
	cases := []*sfCase{
		bundled("reflection-in", "config.yaml"),
		bundled("loop-echo-chargen-vlan", ""),
		bundled("random-source-flood", ""),
		bundled("benign-ntp-peers", ""),
		{telemetryCase: telemetryCase{name: "sustained-reflection"}, file: sustainedReflection(t), rate: 100,
			want: telemetryWant{tolerance: 0.30, seen: seen(100)}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i, c := range cases {
		var sensor string
		c.sender, sensor = netnsPair(t, fmt.Sprint("sf", i))
		c.probe = startSfprobe(ctx, t, sensor, c.rate)
	}
	var wg sync.WaitGroup
	for _, c := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := exec.CommandContext(ctx, "ip", "netns", "exec", c.sender, "tcpreplay", "--timer", "nano", "-i", "ew0", c.file).CombinedOutput()
			c.replayed, c.err = string(out), err
		}()
	}
	wg.Wait()
	// The last samples wait for sfprobe's next second.
	time.Sleep(1500 * time.Millisecond)
	for _, c := range cases {
		export := c.probe.stop(t)
		t.Run(c.name, func(t *testing.T) {
			if c.err != nil {
				t.Fatalf("tcpreplay: %v: %s", c.err, c.replayed)
			}
			sent, _, _ := strings.Cut(c.replayed, "\n")
			t.Logf("tcpreplay: %s", sent)
			want := captureTruth(t, c.file, c.args())
			got := fromTelemetry(t, export, c.args())
			compareEnds(t, want, got, c.want)
		})
	}
}
