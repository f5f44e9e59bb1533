//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/echowatch/echowatch/sinks/sinkstest"
)

// TestLiveSmallQueue: a live sensor whose syslog output has a queue of
// ten events delivers every alert of 200 alerts/s to a healthy rsyslog:
// the queue bounds what an outage holds, not the rate. (Before, each event
// waited 250 ms after rsyslog's acknowledgement, so ten of them made 33
// alerts/s; and a burst larger than the queue was dropped, though rsyslog
// kept up.) The sensor runs here, beside rsyslog on loopback, and captures
// the end of a veth pair whose other end, in a namespace, sends what
// makes a finding, a request to UDP echo and its answer, for 2,000 hosts
// in 10 s, twenty at a time.
func TestLiveSmallQueue(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("live capture test needs root (network namespaces)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("live capture test needs ip from iproute2")
	}
	sender := fmt.Sprintf("ew-sq-%d", os.Getpid())
	iface := fmt.Sprintf("ewq%d", os.Getpid()%100000)
	ip(t, "netns", "add", sender)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", sender).Run() })
	ip(t, "link", "add", "ew0", "netns", sender, "type", "veth", "peer", "name", iface)
	t.Cleanup(func() { exec.Command("ip", "link", "del", iface).Run() })
	ip(t, "-n", sender, "link", "set", "ew0", "up")
	ip(t, "link", "set", iface, "up")

	rs := sinkstest.StartRsyslog(t, "tcp")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	s := startSensorAs(ctx, t, "", []string{os.Args[0], "-i", iface, "--format", "eve", "--stats", "--stats-interval", "200ms",
		"--max-alerts-per-second", "0", "--queue-size", "10", "--output", "stdout", "--output", "syslog+tcp://" + rs.Addr})
	const hosts, perTick = 2000, 20
	for tick := 0; tick < hosts/perTick; tick++ {
		var frames [][]byte
		for j := range perTick {
			i := tick*perTick + j
			host, client := [4]byte{45, 33, byte(i >> 8), byte(i)}, [4]byte{81, 2, byte(i >> 8), byte(i)}
			frames = append(frames, udpFrame(client, host, 40000, 7, 16), udpFrame(host, client, 7, 40000, 16))
		}
		if _, _, err := replay(sender, "ew0", frames, 1); err != nil {
			t.Fatalf("replay: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.settle(t, 2*hosts)
	if err := s.stop(); err != nil {
		t.Fatalf("echowatch: %v\nstderr:\n%s", err, s.errors())
	}
	// As the sensor stops, the exposures end, all at once: a burst that
	// a queue of ten holds only in part, so the outputs wait for room
	// (Draining) rather than drop it.
	starts := strings.Count(s.stdout.String(), `"kind":"exposed","phase":"start"`)
	ends := strings.Count(s.stdout.String(), `"kind":"exposed","phase":"end"`)
	if starts != hosts || ends != hosts {
		t.Fatalf("%d exposures and %d ends on stdout, want %d each\nstderr:\n%s", starts, ends, hosts, s.errors())
	}
	var exposures int
	for _, m := range rs.WaitMessages(2*hosts, 15*time.Second) {
		if m.MsgID == "exposed" {
			exposures++
		}
	}
	stats := finalOutputStats(t, lastStatsEvent(t, s.stdout.String()))["syslog+tcp://"+rs.Addr]
	// A loaded machine (the other tests running beside this one) may
	// leave rsyslog behind for a moment: a few drops, each counted, are
	// its doing. Before, a quarter to a half were dropped.
	if exposures+int(stats.Dropped) < 2*hosts || stats.Dropped > hosts/20 {
		t.Fatalf("rsyslog got %d exposures' starts and ends of %d; the output's counters: %+v\nstderr:\n%s", exposures, 2*hosts, stats.QueueStats, s.errors())
	}
	// The engine ended every exposure as the sensor stopped.
	var final struct {
		Stats struct {
			Echowatch struct {
				Detect struct {
					Kinds map[string]struct{ Start, End int }
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(lastStatsEvent(t, s.stdout.String())), &final); err != nil {
		t.Fatal(err)
	}
	if ex := final.Stats.Echowatch.Detect.Kinds["exposed"]; ex.Start != hosts || ex.End != hosts {
		t.Errorf("the engine wrote %d exposures' starts and %d ends, want %d each", ex.Start, ex.End, hosts)
	}
	t.Logf("rsyslog got %d exposures' starts and ends of %d; the output: %+v", exposures, 2*hosts, stats.QueueStats)
}

// lastStatsEvent returns the last stats event of eve, a line.
func lastStatsEvent(t *testing.T, eve string) string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(eve), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], `"event_type":"stats"`) {
			return lines[i]
		}
	}
	t.Fatal("no stats event")
	return ""
}
