//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/echowatch/echowatch/internal/pcaptest"
)

// exported runs a real exporter (its command line, with ADDR in place of
// the collector's address) and returns a capture of the datagrams it sent,
// written as a collector's tcpdump would: a raw IPv4/UDP frame per datagram,
// from 127.0.0.1 to port 2055, at the time it arrived (see exportTime).
func exported(t *testing.T, name string, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s is not installed (scripts/test.sh installs softflowd and pmacct)", name)
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i, a := range args {
		args[i] = strings.ReplaceAll(a, "ADDR", conn.LocalAddr().String())
	}
	if err := conn.SetReadBuffer(8 << 20); err != nil {
		t.Fatal(err)
	}
	// The reader stamps each datagram as it arrives; it stops when the
	// socket closes.
	var (
		mu   sync.Mutex
		recs []pcaptest.Record
		last = time.Now()
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			now := time.Now()
			mu.Lock()
			recs = append(recs, pcaptest.Record{TS: exportTime(buf[:n], now), Data: exportFrame(buf[:n]), Wire: 28 + n})
			last = now
			mu.Unlock()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", name, err, b)
	}
	// The exporter has gone; its last datagrams may still be in the
	// socket. Wait until none came for a quarter second.
	for {
		mu.Lock()
		quiet := time.Since(last)
		mu.Unlock()
		if quiet > 250*time.Millisecond {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	conn.Close()
	<-done
	// Export times come in order from one exporter, yet stamps of equal
	// seconds keep the order they arrived in.
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].TS.Before(recs[j].TS) })
	if len(recs) == 0 {
		t.Fatalf("%s exported nothing", name)
	}
	return pcaptest.WriteFile(t, t.TempDir(), "export.pcap", pcaptest.Pcap(t, true, layers.LinkTypeRaw, recs))
}

// exportTime is when a collector would have received a NetFlow or IPFIX
// datagram had its exporter run in real time: the export time its header
// states. softflowd -r reads a capture at full speed while its clock (-a)
// follows the capture's, so the wall clock of arrival says nothing of the
// capture's time. sFlow headers state no time: the wall clock of arrival,
// which is right for an exporter run in real time.
func exportTime(d []byte, arrival time.Time) time.Time {
	if len(d) < 16 {
		return arrival
	}
	switch binary.BigEndian.Uint16(d) {
	case 5: // sysUptime, unix_secs, unix_nsecs
		return time.Unix(int64(binary.BigEndian.Uint32(d[8:])), int64(binary.BigEndian.Uint32(d[12:])))
	case 9: // sysUptime, unix_secs
		return time.Unix(int64(binary.BigEndian.Uint32(d[8:])), 0)
	case 10: // length, export time
		return time.Unix(int64(binary.BigEndian.Uint32(d[4:])), 0)
	}
	return arrival
}

// exportFrame wraps a datagram in IPv4 and UDP headers, 127.0.0.1 to itself,
// port 40000 to 2055.
func exportFrame(payload []byte) []byte {
	b := make([]byte, 28+len(payload))
	b[0], b[8], b[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	copy(b[12:], []byte{127, 0, 0, 1, 127, 0, 0, 1})
	binary.BigEndian.PutUint16(b[20:], 40000)
	binary.BigEndian.PutUint16(b[22:], 2055)
	binary.BigEndian.PutUint16(b[24:], uint16(8+len(payload)))
	copy(b[28:], payload)
	return b
}

// incidentSummary is what the telemetry tests compare of an incident: its
// kind, its key (victim, target, or the two endpoints), and its peak rate.
type incidentSummary struct {
	kind, key string
	peak      float64
	sampling  map[string]any
}

// endsOf reads the end alerts of the detected kinds that telemetry must
// report (reflection, loop, spoofed flood) from EVE lines.
func endsOf(t *testing.T, eve string) map[string]incidentSummary {
	t.Helper()
	out := map[string]incidentSummary{}
	sc := bufio.NewScanner(strings.NewReader(eve))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var a struct {
			EventType string `json:"event_type"`
			Incident  struct {
				Kind      string         `json:"kind"`
				Phase     string         `json:"phase"`
				Victim    string         `json:"victim"`
				Target    string         `json:"target"`
				Endpoints []string       `json:"endpoints"`
				PeakPPS   float64        `json:"peak_pps"`
				Sampling  map[string]any `json:"sampling"`
			} `json:"incident"`
		}
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			t.Fatalf("%v: %s", err, sc.Text())
		}
		in := a.Incident
		if a.EventType != "alert" || in.Phase != "end" {
			continue
		}
		var key string
		switch in.Kind {
		case "reflection":
			key = in.Victim
		case "spoofed_flood":
			key = in.Target
		case "loop":
			key = strings.Join(in.Endpoints, " ")
		default:
			continue
		}
		out[in.Kind+" "+key] = incidentSummary{kind: in.Kind, key: key, peak: in.PeakPPS, sampling: in.Sampling}
	}
	return out
}

// TestTelemetryFromSoftflowd has softflowd, a real exporter, read the
// bundled attack captures and export their flows as NetFlow v5, NetFlow v9
// and IPFIX; echowatch replays the exports (-r --telemetry) and must report
// the incidents that the captures themselves give, with the same victim,
// target or endpoints, at a peak rate within 10% of the capture's. At 1 in
// 10 sampling, the estimate must stay within 30%. The benign captures must
// stay silent.
func TestTelemetryFromSoftflowd(t *testing.T) {
	cases := []struct {
		name   string
		config string // the case's settings, if any
	}{
		{"reflection-in", "config.yaml"},
		{"chargen-reflection", ""},
		{"loop-echo-chargen-vlan", ""},
		{"random-source-flood", ""},
		{"bogon-flood", ""},
		{"benign-dns", ""},
		{"benign-ntp-peers", ""},
		{"busy-ntp-server", "config.yaml"},
	}
	for _, c := range cases {
		for _, v := range []string{"5", "9", "10"} {
			for _, sampling := range []int{1, 10} {
				if sampling > 1 && !strings.Contains(c.name, "reflection") {
					continue // a sustained attack: the reflections
				}
				t.Run(fmt.Sprintf("%s/v%s/1in%d", c.name, v, sampling), func(t *testing.T) {
					t.Parallel()
					in := filepath.Join(pcap(c.name), "capture.pcap")
					var extra []string
					if c.config != "" {
						extra = []string{"--config", filepath.Join(pcap(c.name), c.config)}
					}
					// The truth: what the capture itself gives.
					code, want, stderr := runMain(t, nil, append([]string{"-r", in, "--format", "eve"}, extra...)...)
					if code != 0 {
						t.Fatalf("capture: exit %d: %s", code, stderr)
					}
					// -a: flow times from the capture, not the wall clock;
					// -A milli: v9 and IPFIX with absolute times.
					args := []string{"-c", filepath.Join(t.TempDir(), "ctl"), "-p", filepath.Join(t.TempDir(), "pid"),
						"-a", "-d", "-r", in, "-n", "ADDR", "-v", v, "-s", fmt.Sprint(sampling)}
					if v != "5" && sampling == 1 {
						args = append(args, "-A", "milli")
					}
					export := exported(t, "softflowd", args...)
					code, got, stderr := runMain(t, nil, append([]string{"-r", export, "--telemetry", "--exporter", "127.0.0.1",
						"--format", "eve"}, extra...)...)
					if code != 0 {
						t.Fatalf("telemetry: exit %d: %s", code, stderr)
					}
					wantEnds, gotEnds := endsOf(t, want), endsOf(t, got)
					tolerance := 0.10
					if sampling > 1 {
						tolerance = 0.30
					}
					for k, w := range wantEnds {
						if v == "5" && strings.Contains(k, ":") && !strings.Contains(k, ".") {
							continue // NetFlow v5 carries IPv4 flows only
						}
						g, ok := gotEnds[k]
						if !ok {
							t.Errorf("%s: not reported from telemetry; got %v", k, gotEnds)
							continue
						}
						if math.Abs(g.peak-w.peak) > tolerance*w.peak {
							t.Errorf("%s: peak %.1f pps from telemetry, %.1f in the capture: off by more than %.0f%%", k, g.peak, w.peak, tolerance*100)
						}
						if g.sampling == nil || g.sampling["rate"] != float64(sampling) {
							t.Errorf("%s: sampling %v, want rate %d", k, g.sampling, sampling)
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
			}
		}
	}
}
