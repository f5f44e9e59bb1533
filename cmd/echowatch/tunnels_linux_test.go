//go:build linux

package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// kernelTunnel is one way the kernel encapsulates traffic between the two
// namespaces of a tunnelNet.
type kernelTunnel struct {
	name string
	o    overlay
	// args are more sensor flags the encapsulation needs.
	args []string
	// setup makes the tunnel and returns the namespaces where the traffic
	// starts (near) and ends (far); it skips the test, naming what is
	// missing, when the kernel cannot.
	setup func(t *testing.T, tn tunnelNet, o overlay) (near, far string)
}

// TestKernelTunnels sends a real reflection and a real loop through
// encapsulations that the kernel makes, in network namespaces, and
// watches the underlay with echowatch live and with tcpdump, whose file
// echowatch then reads: both must find the attacks inside, and neither
// may take the tunnel's own endpoints for part of them. What this kernel
// cannot make is skipped with a message that names it (pcaps/ has a
// generated capture of each).
func TestKernelTunnels(t *testing.T) {
	vxlanArgs := func(id, port string) func(local, remote, dev string) []string {
		return func(local, remote, dev string) []string {
			return []string{"type", "vxlan", "id", id, "local", local, "remote", remote, "dstport", port, "dev", dev}
		}
	}
	for _, tc := range []kernelTunnel{
		{name: "vxlan", o: overlay4, setup: l2Tunnel("vxlan", false, vxlanArgs("42", "4789"))},
		{name: "vxlan-ipv6-underlay", o: overlay6, setup: l2Tunnel("vxlan", true, vxlanArgs("43", "4789"))},
		{name: "vxlan-ipv4-in-ipv6-underlay", o: overlay4, setup: l2Tunnel("vxlan", true, vxlanArgs("44", "4789"))},
		// Linux's own default port, as flannel uses it: only decoded when
		// the sensor is told.
		{name: "vxlan-8472", o: overlay4, args: []string{"--vxlan-port", "8472"}, setup: l2Tunnel("vxlan", false, vxlanArgs("45", "8472"))},
		{name: "vxlan-gpe", o: overlay4, setup: l3Tunnel("VXLAN-GPE", false,
			func(_, _, _ string) []string { return []string{"type", "vxlan", "gpe", "external", "dstport", "4790"} },
			func(remote string) []string { return []string{"encap", "ip", "id", "46", "dst", remote} })},
		{name: "vxlan-gpe-ipv6", o: overlay6, setup: l3Tunnel("VXLAN-GPE", true,
			func(_, _, _ string) []string { return []string{"type", "vxlan", "gpe", "external", "dstport", "4790"} },
			// An IPv6 underlay wants UDP checksums, which a route's tunnel
			// key leaves out unless asked.
			func(remote string) []string { return []string{"encap", "ip6", "id", "47", "dst", remote, "csum"} })},
		// Cloud traffic mirroring: tc copies both directions of a
		// workload's interface into a VXLAN device toward the sensor.
		{name: "tc-mirror-vxlan", o: overlay4, setup: mirrorInto("vxlan", func(local, remote, dev string) []string {
			return []string{"type", "vxlan", "id", "4242", "local", local, "remote", remote, "dstport", "4789", "dev", dev}
		})},
		{name: "geneve", o: overlay4, setup: l2Tunnel("GENEVE (CONFIG_GENEVE)", false, func(_, remote, _ string) []string {
			return []string{"type", "geneve", "id", "48", "remote", remote}
		})},
		{name: "gretap", o: overlay4, setup: l2Tunnel("GRE taps (CONFIG_NET_IPGRE)", false, func(local, remote, _ string) []string {
			return []string{"type", "gretap", "local", local, "remote", remote, "key", "49"}
		})},
		{name: "ip6gretap", o: overlay6, setup: l2Tunnel("IPv6 GRE taps (CONFIG_IPV6_GRE)", true, func(local, remote, _ string) []string {
			return []string{"type", "ip6gretap", "local", local, "remote", remote, "key", "50", "seq"}
		})},
		{name: "tc-mirror-erspan-ii", o: overlay4, setup: mirrorInto("ERSPAN (CONFIG_NET_IPGRE)", func(local, remote, _ string) []string {
			return []string{"type", "erspan", "seq", "key", "51", "local", local, "remote", remote, "erspan_ver", "1", "erspan", "123"}
		})},
		{name: "tc-mirror-erspan-iii", o: overlay4, setup: mirrorInto("ERSPAN (CONFIG_NET_IPGRE)", func(local, remote, _ string) []string {
			return []string{"type", "erspan", "seq", "key", "52", "local", local, "remote", remote,
				"erspan_ver", "2", "erspan_dir", "ingress", "erspan_hwid", "7"}
		})},
		{name: "ipip", o: overlay4, setup: l3Tunnel("IP in IP (CONFIG_NET_IPIP)", false, func(local, remote, _ string) []string {
			return []string{"type", "ipip", "local", local, "remote", remote}
		}, nil)},
		{name: "sit", o: overlay6, setup: l3Tunnel("IPv6 in IPv4 (CONFIG_IPV6_SIT)", false, func(local, remote, _ string) []string {
			return []string{"type", "sit", "local", local, "remote", remote}
		}, nil)},
		{name: "ip6tnl-4in6", o: overlay4, setup: l3Tunnel("IP in IPv6 (CONFIG_IPV6_TUNNEL)", true, func(local, remote, _ string) []string {
			return []string{"type", "ip6tnl", "mode", "any", "local", local, "remote", remote}
		}, nil)},
		{name: "ip6tnl-6in6", o: overlay6, setup: l3Tunnel("IP in IPv6 (CONFIG_IPV6_TUNNEL)", true, func(local, remote, _ string) []string {
			return []string{"type", "ip6tnl", "mode", "any", "local", local, "remote", remote}
		}, nil)},
		{name: "seg6-ipv4-inner", o: overlay4, setup: seg6Tunnel("encap")},
		{name: "seg6-ipv6-inner-reduced", o: overlay6, setup: seg6Tunnel("encap.red")},
		{name: "mpls", o: overlay4, setup: mplsTunnel},
		{name: "pppoe", o: overlay4, setup: pppoeSession},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tn := newTunnelNet(t, "tn")
			near, far := tc.setup(t, tn, tc.o)
			watchTunnel(t, tn, tc.o, tc.args, func() trafficResult { return sendThrough(t, near, far, tc.o) })
		})
	}
}

// underlayEnds returns the underlay addresses of namespace a and b.
func underlayEnds(v6 bool) (a, b string) {
	if v6 {
		return underA6, underB6
	}
	return underA4, underB4
}

// l2Tunnel returns the setup of a tunnel device that carries Ethernet
// (vxlan, geneve, gretap): one at each end, made by ip link add ... args,
// the overlay's subnet across them.
func l2Tunnel(missing string, v6 bool, args func(local, remote, dev string) []string) func(*testing.T, tunnelNet, overlay) (string, string) {
	return func(t *testing.T, tn tunnelNet, o overlay) (string, string) {
		a, b := underlayEnds(v6)
		ipOrSkip(t, missing, append([]string{"-n", tn.a, "link", "add", "tun0"}, args(a, b, "ew0")...)...)
		ip(t, append([]string{"-n", tn.b, "link", "add", "tun0"}, args(b, a, "ew1")...)...)
		for _, ns := range []string{tn.a, tn.b} {
			ip(t, "-n", ns, "link", "set", "tun0", "up")
		}
		addAddrs(t, tn.a, "tun0", o.bits, o.near())
		addAddrs(t, tn.b, "tun0", o.bits, o.far())
		return tn.a, tn.b
	}
}

// l3Tunnel returns the setup of a tunnel device that carries IP packets
// (VXLAN-GPE, ipip, sit, ip6tnl): one at each end, made by ip link add
// ... args, each side's overlay addresses on its loopback, and routes to
// the other side's through the device, with the lightweight tunnel that
// encap names (for external devices that take the far end from the route).
func l3Tunnel(missing string, v6 bool, args func(local, remote, dev string) []string, encap func(remote string) []string) func(*testing.T, tunnelNet, overlay) (string, string) {
	return func(t *testing.T, tn tunnelNet, o overlay) (string, string) {
		a, b := underlayEnds(v6)
		ipOrSkip(t, missing, append([]string{"-n", tn.a, "link", "add", "tun0"}, args(a, b, "ew0")...)...)
		ip(t, append([]string{"-n", tn.b, "link", "add", "tun0"}, args(b, a, "ew1")...)...)
		for _, side := range []struct {
			ns, remote  string
			here, there []string
		}{{tn.a, b, o.near(), o.far()}, {tn.b, a, o.far(), o.near()}} {
			ip(t, "-n", side.ns, "link", "set", "tun0", "up")
			addAddrs(t, side.ns, "lo", 0, side.here)
			for _, addr := range side.there {
				route := []string{"-n", side.ns, "route", "add", addr + hostBits(addr)}
				if encap != nil {
					route = append(route, encap(side.remote)...)
				}
				ip(t, append(route, "dev", "tun0")...)
			}
		}
		return tn.a, tn.b
	}
}

// mirrorInto returns the setup of a mirror session as clouds and switches
// run them: the traffic flows on a veth between namespace a and a third
// one, untunnelled, and tc copies both directions of a's side into a
// device made by ip link add ... args toward the sensor, which has no
// tunnel device and only captures.
func mirrorInto(missing string, args func(local, remote, dev string) []string) func(*testing.T, tunnelNet, overlay) (string, string) {
	return func(t *testing.T, tn tunnelNet, o overlay) (string, string) {
		ipOrSkip(t, missing, append([]string{"-n", tn.a, "link", "add", "mir0"}, args(underA4, underB4, "ew0")...)...)
		ip(t, "-n", tn.a, "link", "set", "mir0", "up")
		c := thirdNetns(t, "mi")
		ip(t, "link", "add", "wl0", "netns", tn.a, "type", "veth", "peer", "name", "wl1", "netns", c)
		ip(t, "-n", tn.a, "link", "set", "wl0", "up")
		ip(t, "-n", c, "link", "set", "wl1", "up")
		addAddrs(t, tn.a, "wl0", o.bits, o.near())
		addAddrs(t, c, "wl1", o.bits, o.far())
		tc(t, "-n", tn.a, "qdisc", "add", "dev", "wl0", "clsact")
		for _, dir := range []string{"ingress", "egress"} {
			tc(t, "-n", tn.a, "filter", "add", "dev", "wl0", dir, "protocol", "all",
				"u32", "match", "u32", "0", "0", "action", "mirred", "egress", "mirror", "dev", "mir0")
		}
		return tn.a, c
	}
}

// sysctl sets keys (key=value) in namespace ns, and skips the test,
// naming what is missing, when the kernel has no such key.
func sysctl(t *testing.T, ns, missing string, kv ...string) {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "sysctl", "-q", "-w"}, kv...)...).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "cannot stat") || strings.Contains(string(out), "No such file") {
			t.Skipf("kernel %s lacks %s: sysctl %s: %s", kernelRelease(), missing, strings.Join(kv, " "), strings.TrimSpace(string(out)))
		}
		t.Fatalf("sysctl %s in %s: %v: %s", strings.Join(kv, " "), ns, err, out)
	}
}

// seg6Tunnel returns the setup of SRv6 encapsulation (mode encap, with a
// segment routing header, or encap.red, without one for a single
// segment): each side's overlay addresses on its loopback, routes to the
// other side's that encapsulate toward the other side's segment ID, and a
// seg6local route at each segment ID that decapsulates (End.DX4 or
// End.DX6, whose next hop :: or 0.0.0.0 is the inner destination).
func seg6Tunnel(mode string) func(*testing.T, tunnelNet, overlay) (string, string) {
	return func(t *testing.T, tn tunnelNet, o overlay) (string, string) {
		const missing = "SRv6 lightweight tunnels (CONFIG_IPV6_SEG6_LWTUNNEL)"
		sides := []struct {
			ns, dev, sid, peer, peerSID, peerNet string
			here, there                          []string
		}{
			{tn.a, "ew0", "2001:db8:5a::1", underB6, "2001:db8:5b::1", "2001:db8:5b::/64", o.near(), o.far()},
			{tn.b, "ew1", "2001:db8:5b::1", underA6, "2001:db8:5a::1", "2001:db8:5a::/64", o.far(), o.near()},
		}
		action, nh := "End.DX4", []string{"nh4", "0.0.0.0"}
		if strings.Contains(o.victim, ":") {
			action, nh = "End.DX6", []string{"nh6", "::"}
		}
		for i, s := range sides {
			args := []string{"-n", s.ns, "-6", "route", "add", s.sid + "/128", "encap", "seg6local", "action", action}
			args = append(append(args, nh...), "dev", s.dev)
			if i == 0 {
				ipOrSkip(t, missing, args...)
			} else {
				ip(t, args...)
			}
			sysctl(t, s.ns, missing, "net.ipv6.conf.all.forwarding=1", "net.ipv6.conf.all.seg6_enabled=1", "net.ipv6.conf."+s.dev+".seg6_enabled=1")
			ip(t, "-n", s.ns, "-6", "route", "add", s.peerNet, "via", s.peer, "dev", s.dev)
			addAddrs(t, s.ns, "lo", 0, s.here)
			for _, addr := range s.there {
				ipOrSkip(t, missing+" in mode "+mode, "-n", s.ns, "route", "add", addr+hostBits(addr),
					"encap", "seg6", "mode", mode, "segs", s.peerSID, "dev", s.dev)
			}
		}
		return tn.a, tn.b
	}
}

// mplsTunnel is the setup of MPLS across the underlay: each side's
// overlay addresses on its loopback, routes to the other side's that push
// a label (100 toward b, 200 toward a), and at each side a route that pops
// its label and delivers the packet.
func mplsTunnel(t *testing.T, tn tunnelNet, o overlay) (string, string) {
	const missing = "MPLS routing (CONFIG_MPLS_ROUTING, CONFIG_MPLS_IPTUNNEL)"
	sides := []struct {
		ns, dev, via, label, peerLabel string
		here, there                    []string
	}{
		{tn.a, "ew0", underB4, "200", "100", o.near(), o.far()},
		{tn.b, "ew1", underA4, "100", "200", o.far(), o.near()},
	}
	for _, s := range sides {
		sysctl(t, s.ns, missing, "net.mpls.platform_labels=1000", "net.mpls.conf."+s.dev+".input=1")
		ipOrSkip(t, missing, "-n", s.ns, "-f", "mpls", "route", "add", s.label, "dev", "lo")
		addAddrs(t, s.ns, "lo", 0, s.here)
		for _, addr := range s.there {
			ipOrSkip(t, missing, "-n", s.ns, "route", "add", addr+hostBits(addr), "encap", "mpls", s.peerLabel, "via", "inet", s.via, "dev", s.dev)
		}
	}
	return tn.a, tn.b
}

// pppoeSession would carry the traffic in a PPPoE session between pppd
// and pppoe-server; it names what this machine lacks for it.
func pppoeSession(t *testing.T, tn tunnelNet, o overlay) (string, string) {
	if _, err := os.Stat("/dev/ppp"); err != nil {
		t.Skipf("kernel %s lacks PPP over Ethernet (CONFIG_PPP, CONFIG_PPPOE): %v", kernelRelease(), err)
	}
	for _, tool := range []string{"pppd", "pppoe-server"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (Debian packages ppp and pppoe)", tool)
		}
	}
	t.Skip("a PPPoE session between pppd and pppoe-server is not set up by this test; pcaps/pppoe is the generated case")
	return "", ""
}
