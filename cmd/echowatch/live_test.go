package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// livePayload is what the sender's datagrams carry.
const livePayload = "echowatch live test: an echo reply toward a victim that did not ask for it"

// sendUDP is the test binary's sender mode, run inside a namespace: it
// sends count datagrams from local port sport to addr, rate per second.
// Arguments: sport count rate.
func sendUDP(addr string, args []string) int {
	if len(args) != 3 {
		fmt.Fprintln(os.Stderr, "sender: want sport count rate")
		return 2
	}
	sport, _ := strconv.Atoi(args[0])
	count, _ := strconv.Atoi(args[1])
	rate, _ := strconv.Atoi(args[2])
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sender:", err)
		return 1
	}
	c, err := net.DialUDP("udp", &net.UDPAddr{Port: sport}, raddr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sender:", err)
		return 1
	}
	defer c.Close()
	payload := []byte(livePayload)
	gap := time.Second / time.Duration(rate)
	next := time.Now()
	for range count {
		c.Write(payload) // ICMP unreachable answers may fail later writes: keep going
		next = next.Add(gap)
		time.Sleep(time.Until(next))
	}
	return 0
}

// sendReplies runs the test binary's sender in namespace ns: 400 echo
// replies from port 7, at 400 a second, toward 198.18.0.2, which never
// asked for them. It returns once they are sent.
func sendReplies(ctx context.Context, t *testing.T, ns string) {
	t.Helper()
	send := exec.CommandContext(ctx, "ip", "netns", "exec", ns, os.Args[0], "7", "400", "400")
	send.Env = append(os.Environ(), "ECHOWATCH_AS_SENDER=198.18.0.2:40000")
	if out, err := send.CombinedOutput(); err != nil {
		t.Fatalf("sender: %v: %s", err, out)
	}
}

// captureMode is a way the live tests run the sensor.
type captureMode struct {
	name string
	args []string
}

// captureModes are libpcap with one reader, and AF_PACKET with a fanout of
// two workers.
var captureModes = []captureMode{
	{"pcap", []string{"--capture", "pcap"}},
	{"afpacket", []string{"--capture", "afpacket", "--workers", "2"}},
}

// chargenLine is one line of RFC 864's rotating pattern.
const chargenLine = " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefgh\r\n"

// serveChargen is the test binary's chargen mode: a UDP chargen on addr
// (RFC 864) that answers every datagram with a line, whatever its source
// port, as the implementations open to loops do, 25 ms later as if across
// a WAN. It runs until killed.
func serveChargen(addr string) int {
	c, err := net.ListenPacket("udp4", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chargen:", err)
		return 1
	}
	buf := make([]byte, 2048)
	for {
		_, from, err := c.ReadFrom(buf)
		if err != nil {
			fmt.Fprintln(os.Stderr, "chargen:", err)
			return 1
		}
		time.Sleep(25 * time.Millisecond)
		c.WriteTo([]byte(chargenLine), from)
	}
}

// ip runs iproute2's ip with args and fails the test if it fails.
func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// netnsPair makes two network namespaces joined by a veth pair, with
// 198.18.0.1 (sender side) and 198.18.0.2 (sensor side): traffic never
// leaves them. It skips the test when it cannot.
func netnsPair(t *testing.T, tag string) (sender, sensor string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("live capture test needs root (network namespaces)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("live capture test needs ip from iproute2")
	}
	sender = fmt.Sprintf("ew-e2e-%d-%s-a", os.Getpid(), tag)
	sensor = fmt.Sprintf("ew-e2e-%d-%s-b", os.Getpid(), tag)
	ip(t, "netns", "add", sender)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", sender).Run() })
	ip(t, "netns", "add", sensor)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", sensor).Run() })
	ip(t, "link", "add", "ew0", "netns", sender, "type", "veth", "peer", "name", "ew1", "netns", sensor)
	ip(t, "-n", sender, "addr", "add", "198.18.0.1/30", "dev", "ew0")
	ip(t, "-n", sensor, "addr", "add", "198.18.0.2/30", "dev", "ew1")
	ip(t, "-n", sender, "link", "set", "ew0", "up")
	ip(t, "-n", sensor, "link", "set", "ew1", "up")
	ip(t, "-n", sender, "link", "set", "lo", "up")
	ip(t, "-n", sensor, "link", "set", "lo", "up")
	return sender, sensor
}

// TestLiveCapture runs echowatch on a veth interface in a namespace while
// real UDP from port 7 floods the address behind it, then stops it with
// SIGTERM: it must report the reflection, end it on the way out, write its
// final stats and exit 0.
func TestLiveCapture(t *testing.T) {
	for _, tc := range []captureMode{
		captureModes[0],
		captureModes[1],
		// Root opens the capture, then the sensor runs as nobody.
		{"pcap-as-nobody", []string{"--capture", "pcap", "--user", "nobody"}},
	} {
		mode := tc.args
		t.Run(tc.name, func(t *testing.T) {
			sender, sensor := netnsPair(t, tc.name[:2]+tc.name[len(tc.name)-2:])
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			// Evidence is written as the user the sensor runs as.
			evidence, err := os.MkdirTemp("", "echowatch-evidence-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(evidence) })
			if err := os.Chmod(evidence, 0o777); err != nil {
				t.Fatal(err)
			}
			args := append([]string{"-i", "ew1", "--format", "eve", "--stats", "--stats-interval", "300ms",
				"--home-net", "198.18.0.0/30", "--sensor-name", "e2e", "--evidence-dir", evidence}, mode...)
			sensorProc := startSensor(ctx, t, sensor, args...)
			// 400 datagrams at 400/s from port 7: 198.18.0.1 "reflects"
			// toward 198.18.0.2, which never asked.
			sendReplies(ctx, t, sender)
			sensorProc.settle(t, 400)
			if err := sensorProc.stop(); err != nil {
				t.Fatalf("echowatch: %v\nstderr:\n%s", err, sensorProc.errors())
			}
			out := sensorProc.stdout.String()
			if slices.Contains(mode, "--user") && !strings.Contains(sensorProc.errors(), "running as") {
				t.Errorf("no word of dropping privileges on stderr:\n%s", sensorProc.errors())
			}
			for _, want := range []string{
				`"kind":"reflection","phase":"start"`,
				`"kind":"reflection","phase":"end"`,
				`"src_ip":"198.18.0.1","src_port":7,"dest_ip":"198.18.0.2"`,
				`"direction":"internal"`,
				`"event_type":"stats"`,
				`"kernel_packets":`,
			} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %s:\n%s", want, out)
				}
			}
			// Stats come every interval while live (the sender runs 1 s), and
			// once more at the end.
			if n := strings.Count(out, `"event_type":"stats"`); n < 3 {
				t.Errorf("%d stats events, want one every 300ms and one at the end", n)
			}
			// Every datagram sent was captured, decoded and counted (ARP and
			// ICMP unreachables come on top).
			frames := regexpInt(t, out, `"decoder":\{"frames":\d+,"decoded":(\d+)`)
			if frames < 400 {
				t.Errorf("decoded %d frames, want at least the 400 sent", frames)
			}
			// The incident's first 100 packets, named by its alerts.
			for name, b := range checkEvidence(t, evidence, out, 100, 0, true) {
				// Ethernet, IPv4 and UDP headers are 42 bytes; pcap's, 24 and
				// 16 per record.
				if want := 24 + 100*(16+42+len(livePayload)); len(b) != want {
					t.Errorf("%s: %d bytes, want %d: 100 frames of the datagram sent", name, len(b), want)
				}
			}
		})
	}
}

func regexpInt(t *testing.T, s, re string) int {
	t.Helper()
	all := regexpMust(re).FindAllStringSubmatch(s, -1)
	if all == nil {
		t.Fatalf("no match for %s in %s", re, s)
	}
	m := all[len(all)-1] // the final stats
	n, _ := strconv.Atoi(m[1])
	return n
}

// liveSensor is echowatch running as its own process in a network
// namespace.
type liveSensor struct {
	cmd     *exec.Cmd
	stdout  syncBuffer // read while the sensor writes (settle)
	mu      sync.Mutex
	stderr  strings.Builder
	scanned chan struct{} // closed once all of stderr is read
}

// startSensor runs echowatch with args inside namespace ns and returns
// once it says its capture started.
func startSensor(ctx context.Context, t *testing.T, ns string, args ...string) *liveSensor {
	t.Helper()
	return startSensorAs(ctx, t, ns, append([]string{os.Args[0]}, args...))
}

// startSensorAs is startSensor with the whole command line: echowatch's
// binary (the test binary) and its arguments, or a command that runs it.
// An empty ns runs it where the test runs.
func startSensorAs(ctx context.Context, t *testing.T, ns string, argv []string) *liveSensor {
	t.Helper()
	s := &liveSensor{scanned: make(chan struct{})}
	if ns == "" {
		s.cmd = exec.CommandContext(ctx, argv[0], argv[1:]...)
	} else {
		s.cmd = exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, argv...)...)
	}
	s.cmd.Env = append(os.Environ(), "ECHOWATCH_AS_MAIN=1")
	s.cmd.Stdout = &s.stdout
	pipe, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	var once sync.Once
	go func() {
		defer close(s.scanned)
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			s.mu.Lock()
			s.stderr.WriteString(sc.Text() + "\n")
			s.mu.Unlock()
			if strings.Contains(sc.Text(), "capture started") {
				once.Do(func() { close(started) })
			}
		}
	}()
	select {
	case <-started:
	case <-s.scanned:
		s.cmd.Wait()
		t.Fatalf("echowatch exited before capturing: %s", s.errors())
	case <-ctx.Done():
		t.Fatalf("echowatch did not start: %s", s.errors())
	}
	return s
}

// stop sends SIGTERM and waits for the sensor to exit; its output is
// complete after.
func (s *liveSensor) stop() error {
	s.cmd.Process.Signal(syscall.SIGTERM)
	<-s.scanned // all of stderr is read before Wait closes the pipe
	return s.cmd.Wait()
}

// settled matches what a stats event says of the frames the sensor read
// and the packets that reached detection.
var settled = regexp.MustCompile(`"event_type":"stats".*?"decoder":\{"frames":(\d+).*?"detect":\{"packets":(\d+)`)

// settle waits until the sensor has read at least frames frames and then
// nothing more for three stats events in a row: what the kernel held for
// it has been read and reached detection. It is how a test knows the
// sensor is done with what was sent, however slow the machine; the sensor
// must run with --stats and a short --stats-interval.
func (s *liveSensor) settle(t *testing.T, frames int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		all := settled.FindAllStringSubmatch(s.stdout.String(), -1)
		if n := len(all); n >= 3 {
			last := all[n-3:]
			read, _ := strconv.Atoi(last[2][1])
			if read >= frames && last[0][1] == last[2][1] && last[1][1] == last[2][1] &&
				last[0][2] == last[2][2] && last[1][2] == last[2][2] {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sensor did not settle with %d frames read within 30s; its stats: %q", frames, all)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// reload writes yaml to the configuration file at conf, sends the sensor
// SIGHUP, and returns what it wrote to stderr from then until it said
// what it made of the file ("configuration reloaded" or "configuration
// refused: ...").
func (s *liveSensor) reload(t *testing.T, conf, yaml string) string {
	t.Helper()
	if err := os.WriteFile(conf, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	before := len(s.errors())
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if news := s.errors()[before:]; strings.Contains(news, "configuration ") {
			return news
		}
		if time.Now().After(deadline) {
			t.Fatalf("no word of the reload after SIGHUP; stderr:\n%s", s.errors())
		}
	}
}

// errors returns what the sensor wrote to stderr so far.
func (s *liveSensor) errors() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}
