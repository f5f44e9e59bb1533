//go:build linux

package live

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/echowatch/echowatch/internal/netnstest"
)

// The veth pair between the two namespaces of a test. The addresses are
// from the benchmarking range 198.18.0.0/15 and exist only inside the
// namespaces, which have no other interface and no route: no test frame
// can leave them.
const (
	txIf   = "ew0"
	rxIf   = "ew1"
	txMAC  = "02:00:00:00:00:01"
	rxMAC  = "02:00:00:00:00:02"
	txAddr = "198.18.0.1"
	rxAddr = "198.18.0.2"
)

// requireNetns skips the test unless it can make network namespaces.
func requireNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to create network namespaces and capture")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping: needs iproute2's ip command to create network namespaces")
	}
}

// ip runs the ip command and fails the test if it fails.
func ip(t *testing.T, args ...string) string {
	t.Helper()
	out, err := tryIP(args...)
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return out
}

// tryIP runs the ip command and returns its output.
func tryIP(args ...string) (string, error) {
	out, err := exec.Command("ip", args...).CombinedOutput()
	return string(bytes.TrimSpace(out)), err
}

// newNetns creates a network namespace named after the test's process
// and tag, with its loopback up, and deletes it when the test ends.
func newNetns(t *testing.T, tag string) string {
	t.Helper()
	requireNetns(t)
	name := fmt.Sprintf("echowatch-%d-%s", os.Getpid(), tag)
	out, err := exec.Command("ip", "netns", "add", name).CombinedOutput()
	if err != nil {
		if bytes.Contains(out, []byte("ermission denied")) || bytes.Contains(out, []byte("not permitted")) {
			t.Skipf("skipping: cannot create a network namespace here: %s", bytes.TrimSpace(out))
		}
		t.Fatalf("ip netns add %s: %v: %s", name, err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, bytes.TrimSpace(out))
		}
	})
	ip(t, "-n", name, "link", "set", "lo", "up")
	return name
}

// vethPair is two namespaces joined by a veth pair: tx sends from ew0,
// rx captures on ew1.
type vethPair struct {
	tx, rx string
}

func newVethPair(t *testing.T, tag string) *vethPair {
	t.Helper()
	v := &vethPair{tx: newNetns(t, tag+"-tx"), rx: newNetns(t, tag+"-rx")}
	// Made inside tx and moved into rx at birth, the pair never exists in
	// the test's own namespace.
	ip(t, "-n", v.tx, "link", "add", txIf, "address", txMAC, "type", "veth",
		"peer", "name", rxIf, "address", rxMAC, "netns", v.rx)
	ip(t, "-n", v.tx, "addr", "add", txAddr+"/30", "dev", txIf)
	ip(t, "-n", v.rx, "addr", "add", rxAddr+"/30", "dev", rxIf)
	// Static neighbours: no ARP exchange to wait for or to count.
	ip(t, "-n", v.tx, "neigh", "replace", rxAddr, "lladdr", rxMAC, "dev", txIf, "nud", "permanent")
	ip(t, "-n", v.rx, "neigh", "replace", txAddr, "lladdr", txMAC, "dev", rxIf, "nud", "permanent")
	ip(t, "-n", v.tx, "link", "set", txIf, "up")
	ip(t, "-n", v.rx, "link", "set", rxIf, "up")
	return v
}

// inNetns runs fn in network namespace ns (see netnstest.Do).
func inNetns(ns string, fn func() error) error { return netnstest.Do(ns, fn) }

// ifindex returns the index of interface name in namespace ns.
func ifindex(t *testing.T, ns, name string) int {
	t.Helper()
	var idx int
	err := inNetns(ns, func() error {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return err
		}
		idx = ifi.Index
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

// promiscuity returns how many holders keep interface name in ns in
// promiscuous mode, as ip -d link shows it.
func promiscuity(t *testing.T, ns, name string) int {
	t.Helper()
	m := regexp.MustCompile(`promiscuity (\d+)`).FindStringSubmatch(ip(t, "-n", ns, "-d", "link", "show", name))
	if m == nil {
		t.Fatalf("ip -d link show %s: no promiscuity count", name)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// udpSocket opens a UDP socket on addr inside ns and closes it when the
// test ends.
func udpSocket(t *testing.T, ns string, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := inNetns(ns, func() (err error) {
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// echoServer answers every datagram to rx's port 7 with the same bytes, as
// the echo service does, until the test ends.
func (v *vethPair) echoServer(t *testing.T) {
	c := udpSocket(t, v.rx, netip.AddrPortFrom(netip.MustParseAddr(rxAddr), 7))
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err == nil {
				c.WriteToUDPAddrPort(buf[:n], from)
			}
		}
	}()
}

// send sends n datagrams to rx's port 7 from `ports` sockets in tx, in
// turn, so that they make `ports` flows. Each payload is unique; send
// returns them with the source port each went from.
func (v *vethPair) send(t *testing.T, n, ports int, size int) map[string]uint16 {
	t.Helper()
	conns := make([]*net.UDPConn, ports)
	for i := range conns {
		conns[i] = udpSocket(t, v.tx, netip.AddrPortFrom(netip.MustParseAddr(txAddr), 0))
	}
	dst := netip.AddrPortFrom(netip.MustParseAddr(rxAddr), 7)
	sent := make(map[string]uint16, n)
	for i := range n {
		c := conns[i%ports]
		payload := fmt.Sprintf("echowatch test datagram %04d ", i)
		payload += strings.Repeat(".", max(size-len(payload), 0))
		if _, err := c.WriteToUDPAddrPort([]byte(payload), dst); err != nil {
			t.Fatalf("send datagram %d: %v", i, err)
		}
		sent[payload] = c.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	}
	return sent
}

// inject sends a raw frame out of tx's end of the pair.
func (v *vethPair) inject(t *testing.T, frame []byte) {
	t.Helper()
	err := inNetns(v.tx, func() error {
		ifi, err := net.InterfaceByName(txIf)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: ifi.Index})
	})
	if err != nil {
		t.Fatalf("inject a frame on %s: %v", txIf, err)
	}
}
