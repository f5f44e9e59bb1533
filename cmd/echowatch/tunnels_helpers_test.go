//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/echowatch/echowatch/internal/netnstest"
)

// overlay is the addressing of the traffic a tunnel carries: the
// reflectors and the loop's echo end on the near side, the victim and the
// loop's chargen end on the far side, all in one subnet of bits.
type overlay struct {
	reflectors    []string
	echo, victim  string
	chargen       string
	bits          int
	victimPort    uint16
	reflectorRate int // datagrams a second from each reflector
}

var (
	overlay4 = overlay{
		reflectors: []string{"203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4", "203.0.113.5", "203.0.113.6"},
		echo:       "203.0.113.7", victim: "203.0.113.100", chargen: "203.0.113.19", bits: 24,
		victimPort: 40000, reflectorRate: 60,
	}
	overlay6 = overlay{
		reflectors: []string{"2001:db8:77::1", "2001:db8:77::2", "2001:db8:77::3", "2001:db8:77::4", "2001:db8:77::5", "2001:db8:77::6"},
		echo:       "2001:db8:77::7", victim: "2001:db8:77::100", chargen: "2001:db8:77::19", bits: 64,
		victimPort: 40000, reflectorRate: 60,
	}
)

// near returns the addresses of the near side, far those of the far side.
func (o overlay) near() []string { return append(slices.Clone(o.reflectors), o.echo) }
func (o overlay) far() []string  { return []string{o.victim, o.chargen} }

// underlay addresses: the sender's side (namespace a, ew0) and the
// sensor's (b, ew1), as netnsPair and tunnelNet set them.
const (
	underA4, underB4 = "198.18.0.1", "198.18.0.2"
	underA6, underB6 = "2001:db8:ff::1", "2001:db8:ff::2"
)

// tunnelNet is the network of a kernel tunnel test: namespace a, where the
// traffic starts, and b, where the sensor captures the underlay on ew1,
// joined by a veth pair with IPv4 and IPv6 addresses.
type tunnelNet struct {
	a, b string
}

func newTunnelNet(t *testing.T, tag string) tunnelNet {
	t.Helper()
	a, b := netnsPair(t, tag)
	ip(t, "-n", a, "addr", "add", underA6+"/64", "dev", "ew0", "nodad")
	ip(t, "-n", b, "addr", "add", underB6+"/64", "dev", "ew1", "nodad")
	return tunnelNet{a: a, b: b}
}

// thirdNetns makes one more namespace, removed when the test ends.
func thirdNetns(t *testing.T, tag string) string {
	t.Helper()
	ns := fmt.Sprintf("ew-e2e-%d-%s-c", os.Getpid(), tag)
	ip(t, "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	ip(t, "-n", ns, "link", "set", "lo", "up")
	return ns
}

// kernelLacks is how iproute2 says that the kernel has no such device
// type or lightweight tunnel.
var kernelLacks = []string{"Unknown device type", "not supported", "Operation not supported", "No such file or directory"}

// ipOrSkip runs ip with args and skips the test, naming what is missing,
// when the kernel lacks what they make; other failures fail the test.
func ipOrSkip(t *testing.T, missing string, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err == nil {
		return
	}
	for _, m := range kernelLacks {
		if strings.Contains(string(out), m) {
			t.Skipf("kernel %s lacks %s: ip %s: %s", kernelRelease(), missing, strings.Join(args, " "), strings.TrimSpace(string(out)))
		}
	}
	t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
}

// tc runs tc with args and fails the test if it fails.
func tc(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("tc", args...).CombinedOutput(); err != nil {
		t.Fatalf("tc %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func kernelRelease() string {
	var u syscall.Utsname
	if syscall.Uname(&u) != nil {
		return "(unknown)"
	}
	var b []byte
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}

// hostBits is the prefix length of one address.
func hostBits(addr string) string {
	if strings.Contains(addr, ":") {
		return "/128"
	}
	return "/32"
}

// addAddrs puts addrs on dev in ns, with prefix length bits (0: host
// routes' length), IPv6 ones without duplicate address detection so that
// they can be bound at once.
func addAddrs(t *testing.T, ns, dev string, bits int, addrs []string) {
	t.Helper()
	for _, a := range addrs {
		p := hostBits(a)
		if bits > 0 {
			p = fmt.Sprintf("/%d", bits)
		}
		args := []string{"-n", ns, "addr", "add", a + p, "dev", dev}
		if strings.Contains(a, ":") {
			args = append(args, "nodad")
		}
		ip(t, args...)
	}
}

// trafficResult is what sendThrough sent.
type trafficResult struct {
	reflected int // datagrams from port 7 toward the victim
	looped    int // datagrams the loop's two ends sent
}

// sendThrough runs the two attacks across the tunnel between namespaces
// near and far, both at once: a reflection (each reflector sends
// datagrams from port 7 to the victim, which never asked) and a loop (one
// datagram from the chargen end's port 19 to the echo end's port 7, after
// which the echo end returns every datagram and the chargen end answers
// each with a line, 20 ms later). Both run for 1.5 s.
func sendThrough(t *testing.T, near, far string, o overlay) trafficResult {
	t.Helper()
	var victim, chargenConn net.PacketConn
	err := netnstest.Do(far, func() (err error) {
		if victim, err = net.ListenPacket("udp", net.JoinHostPort(o.victim, fmt.Sprint(o.victimPort))); err != nil {
			return err
		}
		chargenConn, err = net.ListenPacket("udp", net.JoinHostPort(o.chargen, "19"))
		return err
	})
	if err != nil {
		t.Fatalf("far side %s: %v", far, err)
	}
	defer victim.Close()
	var reflectors []net.PacketConn
	var echoConn net.PacketConn
	err = netnstest.Do(near, func() error {
		for _, a := range o.reflectors {
			c, err := net.ListenPacket("udp", net.JoinHostPort(a, "7"))
			if err != nil {
				return err
			}
			reflectors = append(reflectors, c)
		}
		var err error
		echoConn, err = net.ListenPacket("udp", net.JoinHostPort(o.echo, "7"))
		return err
	})
	for _, c := range reflectors {
		defer c.Close()
	}
	if err != nil {
		t.Fatalf("near side %s: %v", near, err)
	}

	// The victim drains what reaches it, so that no port unreachable
	// comes back.
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := victim.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	var looped atomic.Int64
	var wg sync.WaitGroup
	serve := func(c net.PacketConn, answer func([]byte) []byte, delay time.Duration) {
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			time.Sleep(delay)
			if _, err := c.WriteTo(answer(buf[:n]), from); err == nil {
				looped.Add(1)
			}
		}
	}
	wg.Add(2)
	go serve(echoConn, func(b []byte) []byte { return b }, 0)
	go serve(chargenConn, func([]byte) []byte { return []byte(chargenLine) }, 20*time.Millisecond)

	// The trigger, sent again until the loop turns: the first datagram
	// may wait on address resolution across the tunnel.
	echoAddr := net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(o.echo), 7))
	for deadline := time.Now().Add(3 * time.Second); looped.Load() == 0; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			echoConn.Close()
			chargenConn.Close()
			wg.Wait()
			t.Fatalf("the loop between %s and %s did not start across the tunnel", echoAddr, net.JoinHostPort(o.chargen, "19"))
		}
		chargenConn.WriteTo([]byte("\n"), echoAddr)
	}

	// The reflection: rounds of one datagram from each reflector.
	victimAddr := net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(o.victim), o.victimPort))
	payload := []byte(livePayload)
	gap := time.Second / time.Duration(o.reflectorRate)
	rounds := o.reflectorRate * 3 / 2
	sent := 0
	next := time.Now()
	for range rounds {
		for _, c := range reflectors {
			if _, err := c.WriteTo(payload, victimAddr); err == nil {
				sent++
			}
		}
		next = next.Add(gap)
		time.Sleep(time.Until(next))
	}
	echoConn.Close()
	chargenConn.Close()
	wg.Wait()
	return trafficResult{reflected: sent, looped: int(looped.Load())}
}

// startTcpdump runs tcpdump on iface in namespace ns, writing to file,
// and returns once it listens. stop ends it and waits.
func startTcpdump(ctx context.Context, t *testing.T, ns, iface, file string) (stop func()) {
	t.Helper()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "tcpdump", "-i", iface, "-w", file, "-U", "-n", "--immediate-mode")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	listening := make(chan string, 1)
	go func() {
		var all strings.Builder
		buf := make([]byte, 512)
		for {
			n, err := stderr.Read(buf)
			all.Write(buf[:n])
			if strings.Contains(all.String(), "listening on") {
				listening <- ""
				// Keep reading, so tcpdump never blocks on its stderr.
				for {
					if _, err := stderr.Read(buf); err != nil {
						return
					}
				}
			}
			if err != nil {
				listening <- all.String()
				return
			}
		}
	}()
	select {
	case msg := <-listening:
		if msg != "" {
			cmd.Wait()
			t.Fatalf("tcpdump did not start: %s", msg)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("tcpdump did not say it listens within 10 s")
	}
	return func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}
}

// tunnelAlert is what the kernel tunnel tests read of an EVE line.
type tunnelAlert struct {
	EventType string `json:"event_type"`
	SrcIP     string `json:"src_ip"`
	DestIP    string `json:"dest_ip"`
	Incident  struct {
		Kind, Phase, Victim string
		Endpoints           []string
		Reflectors          []struct {
			IP string `json:"ip"`
		}
		ReflectorCount int `json:"reflector_count"`
	} `json:"incident"`
}

// checkTunnelIncidents checks the EVE output of a sensor that watched the
// underlay: a reflection toward the victim from the reflectors and a loop
// between the two ends, each started and ended, and nothing that names an
// address of the underlay, whose packets only carried the traffic.
func checkTunnelIncidents(t *testing.T, what, out string, o overlay) {
	t.Helper()
	seen := map[string]bool{}
	var alerts []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var a tunnelAlert
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			t.Fatalf("%s: %v: %q", what, err, line)
		}
		if a.EventType != "alert" {
			continue
		}
		alerts = append(alerts, line)
		in := a.Incident
		for _, addr := range []string{a.SrcIP, a.DestIP, in.Victim} {
			if addr == underA4 || addr == underB4 || addr == underA6 || addr == underB6 {
				t.Errorf("%s: an alert names the underlay's %s: %s", what, addr, line)
			}
		}
		switch in.Kind {
		case "reflection":
			if in.Victim != o.victim {
				t.Errorf("%s: reflection toward %s, want %s", what, in.Victim, o.victim)
			}
			for _, r := range in.Reflectors {
				if !slices.Contains(o.reflectors, r.IP) {
					t.Errorf("%s: reflector %s is not one of %v", what, r.IP, o.reflectors)
				}
			}
			if in.Phase == "start" && in.ReflectorCount < 2 {
				t.Errorf("%s: reflection started with %d reflectors", what, in.ReflectorCount)
			}
		case "loop":
			want := []string{
				netip.AddrPortFrom(netip.MustParseAddr(o.echo), 7).String(),
				netip.AddrPortFrom(netip.MustParseAddr(o.chargen), 19).String(),
			}
			got := slices.Clone(in.Endpoints)
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("%s: loop between %v, want %v", what, in.Endpoints, want)
			}
		}
		seen[in.Kind+"/"+in.Phase] = true
	}
	for _, want := range []string{"reflection/start", "reflection/end", "loop/start", "loop/end"} {
		if !seen[want] {
			t.Errorf("%s: no %s alert", what, want)
		}
	}
	if t.Failed() {
		t.Logf("%s: alerts:\n%s", what, strings.Join(alerts, "\n"))
	}
}

// watchTunnel captures the underlay (ew1 in tn.b) with echowatch live and
// with tcpdump while send runs, then reads tcpdump's file back with
// echowatch -r: both must report the incidents. args are more sensor
// flags, for both runs.
func watchTunnel(t *testing.T, tn tunnelNet, o overlay, args []string, send func() trafficResult) {
	t.Helper()
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Skip("tcpdump is not installed (scripts/test.sh installs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	file := filepath.Join(t.TempDir(), "underlay.pcap")
	stopDump := startTcpdump(ctx, t, tn.b, "ew1", file)
	s := startSensor(ctx, t, tn.b, append([]string{"-i", "ew1", "--format", "eve", "--stats", "--stats-interval", "300ms"}, args...)...)
	sent := send()
	if sent.looped < 20 {
		t.Errorf("the loop sent %d datagrams, want at least 20", sent.looped)
	}
	s.settle(t, sent.reflected)
	stopDump()
	if err := s.stop(); err != nil {
		t.Fatalf("echowatch: %v\nstderr:\n%s", err, s.errors())
	}
	checkTunnelIncidents(t, "live", s.stdout.String(), o)

	code, out, errOut := runMain(t, nil, append([]string{"-r", file, "--format", "eve"}, args...)...)
	if code != 0 {
		t.Fatalf("echowatch -r %s: exit %d: %s", file, code, errOut)
	}
	checkTunnelIncidents(t, "tcpdump file", out, o)
	if t.Failed() {
		hex, _ := exec.Command("tcpdump", "-r", file, "-nn", "-xx", "-c", "4").CombinedOutput()
		t.Logf("the underlay as tcpdump saw it:\n%s", hex)
	}
}
