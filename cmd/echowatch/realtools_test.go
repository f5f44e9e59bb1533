//go:build linux

package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// xinetdConf runs echo and chargen over UDP and TCP as xinetd's internal
// services, as old inetd configurations still do. xinetd's own rate limit
// (cps, 50 a second by default) would switch echo off for ten seconds
// during the forged requests: it is lifted so the test's order does not
// matter.
const xinetdConf = `defaults
{
	cps = 100000 1
}
service echo
{
	type = INTERNAL
	id = echo-dgram
	socket_type = dgram
	protocol = udp
	user = root
	wait = yes
}
service echo
{
	type = INTERNAL
	id = echo-stream
	socket_type = stream
	protocol = tcp
	user = root
	wait = no
}
service chargen
{
	type = INTERNAL
	id = chargen-dgram
	socket_type = dgram
	protocol = udp
	user = root
	wait = yes
}
service chargen
{
	type = INTERNAL
	id = chargen-stream
	socket_type = stream
	protocol = tcp
	user = root
	wait = no
}
`

// realAlert is what TestRealTools reads of an alert.
type realAlert struct {
	EventType string `json:"event_type"`
	SrcIP     string `json:"src_ip"`
	SrcPort   int    `json:"src_port"`
	Alert     struct {
		SID int `json:"signature_id"`
	} `json:"alert"`
	Incident struct {
		Kind, Phase, Tool, Service, Target string
		Victim                             string
		Targets                            int
		Ports                              []int
		Services                           []string
		Endpoints                          []string
		Reflectors                         []struct {
			IP string `json:"ip"`
		}
		Evidence map[string]int
	} `json:"incident"`
}

// TestRealTools points real attack tools at a real inetd and watches with
// echowatch on the server's interface: xinetd runs echo and chargen in the
// sensor's namespace (198.18.0.2, and 24 more addresses in 198.18.1.0/24
// for a sweep), and from the other namespace nmap sweeps UDP echo and TCP
// chargen, hping3 sends the one forged packet from chargen's port that
// starts a loop between xinetd's echo and an unguarded chargen, hping3
// forges requests that make xinetd reflect toward a victim, and hping3
// floods from random sources. Each must be reported as what it is, by
// the signature meant for it, and nothing else may be.
func TestRealTools(t *testing.T) {
	for _, tool := range []string{"xinetd", "nmap", "hping3"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (scripts/test.sh installs nmap, hping3 and xinetd)", tool)
		}
	}
	sender, sensor := netnsPair(t, "rt")
	var targets []string
	for i := 10; i < 34; i++ {
		addr := "198.18.1." + strconv.Itoa(i)
		ip(t, "-n", sensor, "addr", "add", addr+"/24", "dev", "ew1")
		targets = append(targets, addr)
	}
	ip(t, "-n", sender, "route", "add", "198.18.1.0/24", "dev", "ew0")
	ip(t, "-n", sensor, "route", "add", "203.0.113.0/24", "via", "198.18.0.1") // toward the victim

	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	dir := t.TempDir()
	conf := filepath.Join(dir, "xinetd.conf")
	if err := os.WriteFile(conf, []byte(xinetdConf), 0o644); err != nil {
		t.Fatal(err)
	}
	inetd := exec.CommandContext(ctx, "ip", "netns", "exec", sensor, "xinetd", "-dontfork", "-f", conf, "-pidfile", filepath.Join(dir, "xinetd.pid"))
	if err := inetd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inetd.Process.Kill(); inetd.Wait() })
	listening(t, sensor, "xinetd", "udp", 19)
	listening(t, sensor, "xinetd", "tcp", 19)

	s := startSensor(ctx, t, sensor, "-i", "ew1", "--format", "eve", "--sensor-name", "real",
		"--home-net", "198.18.0.0/30,198.18.1.0/24", "--end-after", "2s", "--max-alerts-per-second", "0",
		"--stats", "--stats-interval", "200ms")
	attack := func(name string, args ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", sender}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil && !strings.Contains(name, "flood") {
			t.Fatalf("%s: %v: %s", name, err, out)
		}
	}
	// Sweeps: nmap's UDP echo probe, then a SYN scan of chargen.
	attack("nmap -sU", append([]string{"nmap", "-n", "-Pn", "-sU", "-p7", "-T4", "--max-retries", "1", "198.18.0.2"}, targets...)...)
	attack("nmap -sS", append([]string{"nmap", "-n", "-Pn", "-sS", "-p19", "-T4", "--max-retries", "1", "198.18.0.2"}, targets...)...)
	// A loop: an unguarded UDP chargen on the sender's side, and one
	// packet from its port to xinetd's echo. It runs until reported (or
	// 30s), then chargen goes away.
	chargen := exec.CommandContext(ctx, "ip", "netns", "exec", sender, os.Args[0])
	chargen.Env = append(os.Environ(), "ECHOWATCH_AS_CHARGEN=198.18.0.1:19")
	if err := chargen.Start(); err != nil {
		t.Fatal(err)
	}
	listening(t, sender, "chargen", "udp", 19)
	attack("hping3 loop trigger", "hping3", "-q", "--udp", "-s", "19", "-k", "-p", "7", "-d", "40", "-c", "1", "198.18.0.2")
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(s.stdout.String(), `"kind":"loop","phase":"start"`); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			break // reported below
		}
	}
	chargen.Process.Kill()
	chargen.Wait()
	// Reflection: 1,500 requests at 500/s, forged from the victim.
	attack("hping3 reflection", "hping3", "-q", "--udp", "-a", "203.0.113.99", "-p", "7", "-d", "64", "-i", "u2000", "-c", "1500", "198.18.0.2")
	// A flood from random sources, two seconds of it.
	attack("hping3 flood", "timeout", "2", "hping3", "-q", "--udp", "--rand-source", "--flood", "-p", "7", "198.18.0.2")
	s.settle(t, 1)
	if err := s.stop(); err != nil {
		t.Fatalf("echowatch: %v\nstderr:\n%s", err, s.errors())
	}

	var starts, all []realAlert
	var alerts strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(s.stdout.String()), "\n") {
		var a realAlert
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			t.Fatalf("%v: %q", err, line)
		}
		if a.EventType == "alert" {
			alerts.WriteString(line + "\n")
			all = append(all, a)
			if a.Incident.Phase == "start" {
				starts = append(starts, a)
			}
		}
	}
	found := func(what string, ok func(a realAlert) bool) {
		t.Helper()
		if !slices.ContainsFunc(starts, ok) {
			t.Errorf("no alert for %s", what)
		}
	}
	found("nmap's UDP sweep (9000006, tool nmap, 20 or more hosts on port 7)", func(a realAlert) bool {
		in := a.Incident
		return a.Alert.SID == 9000006 && a.SrcIP == "198.18.0.1" && in.Tool == "nmap" && in.Targets >= 20 && slices.Equal(in.Ports, []int{7})
	})
	found("nmap's SYN sweep (9000007, 20 or more hosts on port 19)", func(a realAlert) bool {
		return a.Alert.SID == 9000007 && a.SrcIP == "198.18.0.1" && a.Incident.Targets >= 20 && slices.Equal(a.Incident.Ports, []int{19})
	})
	found("xinetd answering UDP echo (9000008)", func(a realAlert) bool {
		return a.Alert.SID == 9000008 && a.SrcIP == "198.18.0.2" && a.SrcPort == 7 && a.Incident.Service == "echo"
	})
	found("xinetd answering TCP chargen (9000009)", func(a realAlert) bool {
		return a.Alert.SID == 9000009 && a.SrcPort == 19 && a.Incident.Service == "chargen"
	})
	found("our xinetd reflecting toward 203.0.113.99 (9000002, outbound)", func(a realAlert) bool {
		in := a.Incident
		return a.Alert.SID == 9000002 && in.Victim == "203.0.113.99" && len(in.Reflectors) == 1 &&
			in.Reflectors[0].IP == "198.18.0.2" && slices.Equal(in.Services, []string{"echo"})
	})
	found("the echo-chargen loop (9000004)", func(a realAlert) bool {
		return a.Alert.SID == 9000004 && slices.Equal(a.Incident.Endpoints, []string{"198.18.0.1:19", "198.18.0.2:7"})
	})
	found("hping3's flood (9000005)", func(a realAlert) bool {
		return a.Alert.SID == 9000005 && a.Incident.Target == "198.18.0.2"
	})
	// Its random sources count once the target's memory of its sources
	// has judged them new: by the incident's end, if not at its start
	// (the forged requests of the reflection, from a bogon, may start it).
	if !slices.ContainsFunc(all, func(a realAlert) bool {
		return a.Alert.SID == 9000005 && a.Incident.Phase == "end" && a.Incident.Evidence["random_source"] > 0
	}) {
		t.Errorf("no random-source evidence by the end of hping3's flood (9000005)")
	}
	// Nothing else: one incident of each attack kind, exposures aside.
	kinds := map[string]int{}
	for _, a := range starts {
		kinds[a.Incident.Kind]++
	}
	if kinds["scan"] != 2 || kinds["reflection"] != 1 || kinds["loop"] != 1 || kinds["spoofed_flood"] != 1 {
		t.Errorf("incidents started by kind %v, want 2 scans and one each of reflection, loop and spoofed_flood", kinds)
	}
	if t.Failed() {
		t.Logf("alerts:\n%s", alerts.String())
	}
}

// listening waits until a process of namespace ns listens on port over
// proto ("udp" or "tcp").
func listening(t *testing.T, ns, what, proto string, port int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		out, _ := exec.Command("ip", "netns", "exec", ns, "ss", "-Hln", "--"+proto, "sport", "= :"+strconv.Itoa(port)).CombinedOutput()
		if len(strings.TrimSpace(string(out))) > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not listen on %s %d", what, proto, port)
		}
	}
}
