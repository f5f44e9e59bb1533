package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	libpcap "github.com/gopacket/gopacket/pcap"
)

// TestEvidenceDir runs captures with --evidence-dir and opens what it
// wrote with libpcap, as Wireshark and tcpdump would: every incident has
// its file, named by the alerts, holding its first --evidence-packets
// packets from the one that opened it; and the files are byte-identical
// for 1 and 3 workers, as the alerts are.
func TestEvidenceDir(t *testing.T) {
	for _, tc := range []struct {
		name    string
		snaplen int // evidence.snaplen, 0 for the default
	}{
		{"chargen-reflection", 0}, {"loop-echo-chargen-vlan", 0}, {"nmap-udp-sweep", 0}, {"reflection-out", 0},
		// Frames cut: what several workers carry to detection is cut too.
		{"chargen-reflection", 64}, {"loop-echo-chargen-vlan", 64},
	} {
		name := tc.name
		t.Run(fmt.Sprintf("%s/snaplen-%d", name, tc.snaplen), func(t *testing.T) {
			conf := caseConfig(name)
			if tc.snaplen > 0 {
				b, _ := os.ReadFile(conf)
				conf = filepath.Join(t.TempDir(), "config.yaml")
				b = fmt.Appendf(b, "\nevidence:\n  snaplen: %d\n", tc.snaplen)
				if err := os.WriteFile(conf, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var first map[string][]byte
			for _, workers := range []string{"1", "3"} {
				top := t.TempDir()
				dir := filepath.Join(top, "evidence") // made by the sensor
				summary, report := filepath.Join(top, "summary.json"), filepath.Join(top, "report.html")
				code, out, errOut := runMain(t, nil, "-r", pcap(filepath.Join(name, "capture.pcap")),
					"--config", conf, "--format", "eve", "--workers", workers,
					"--evidence-dir", dir, "--evidence-packets", "5", "--summary", summary, "--report", report)
				if code != 0 {
					t.Fatalf("workers %s: exit %d: %s", workers, code, errOut)
				}
				files := checkEvidence(t, dir, out, 5, tc.snaplen, false)
				checkForensicsName(t, summary, report, dir, files)
				if first == nil {
					first = files
					continue
				}
				if len(files) != len(first) {
					t.Fatalf("workers %s: %d files, 1 worker wrote %d", workers, len(files), len(first))
				}
				for base, b := range first {
					if !bytes.Equal(files[base], b) {
						t.Errorf("workers %s: %s differs from one worker's", workers, base)
					}
				}
			}
		})
	}
}

// caseConfig returns the case's config.yaml, or an empty one.
func caseConfig(name string) string {
	c := pcap(filepath.Join(name, "config.yaml"))
	if _, err := os.Stat(c); err == nil {
		return c
	}
	return os.DevNull
}

// checkEvidence checks the evidence files in dir against the EVE alerts in
// out, and that no frame is longer than snaplen (if not 0), and returns
// their contents by file name. Each file starts with the packet that
// started its incident: at the start alert's time offline; live, where
// AF_PACKET's sockets hand the workers' frames to detection as they come,
// the packet may be older than detection's clock, which the alert
// carries, but never newer, and not by more than a second.
func checkEvidence(t *testing.T, dir, out string, perIncident, snaplen int, live bool) map[string][]byte {
	t.Helper()
	named := map[string]time.Time{} // file → the start alert's time
	for _, ev := range evidenceAlerts(t, out) {
		want := filepath.Join(dir, ev.Incident.ID+".pcap")
		if ev.CaptureFile != want {
			t.Fatalf("alert of %s names capture_file %q, want %q", ev.Incident.ID, ev.CaptureFile, want)
		}
		if ev.Incident.Phase == "start" {
			ts, err := time.Parse("2006-01-02T15:04:05.000000-0700", ev.Timestamp)
			if err != nil {
				t.Fatal(err)
			}
			named[want] = ts
		}
	}
	if len(named) == 0 {
		t.Fatal("no incident")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		start, ok := named[path]
		if !ok {
			t.Errorf("%s: no alert names it", path)
			continue
		}
		h, err := libpcap.OpenOffline(path)
		if err != nil {
			t.Fatalf("libpcap cannot open %s: %v", path, err)
		}
		n := 0
		for {
			data, ci, err := h.ReadPacketData()
			if err != nil {
				break
			}
			if n == 0 && (!live && !ci.Timestamp.Equal(start) ||
				live && (ci.Timestamp.After(start) || start.Sub(ci.Timestamp) > time.Second)) {
				t.Errorf("%s: first packet at %v, the incident started at %v", e.Name(), ci.Timestamp.UTC(), start)
			}
			if len(data) == 0 || ci.Length < len(data) || snaplen > 0 && (len(data) > snaplen || ci.Length > snaplen && len(data) != snaplen) {
				t.Errorf("%s: packet %d: %d bytes of %d", e.Name(), n, len(data), ci.Length)
			}
			n++
		}
		h.Close()
		if n < 1 || n > perIncident {
			t.Errorf("%s: %d packets, want 1 to %d", e.Name(), n, perIncident)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = b
	}
	if len(files) != len(named) {
		t.Errorf("%d evidence files for %d incidents", len(files), len(named))
	}
	return files
}

// evidenceAlert is what the evidence tests read of an EVE alert.
type evidenceAlert struct {
	Timestamp   string `json:"timestamp"`
	CaptureFile string `json:"capture_file"`
	Incident    struct {
		ID    string `json:"id"`
		Phase string `json:"phase"`
	} `json:"incident"`
}

// evidenceAlerts returns the alerts among the EVE lines of out.
func evidenceAlerts(t *testing.T, out string) []evidenceAlert {
	t.Helper()
	var alerts []evidenceAlert
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev struct {
			EventType string `json:"event_type"`
			evidenceAlert
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		if ev.EventType == "alert" {
			alerts = append(alerts, ev.evidenceAlert)
		}
	}
	return alerts
}

// TestEvidenceDirUnwritable checks that a directory the sensor cannot make
// is a clear failure at the start, before any packet is read.
func TestEvidenceDirUnwritable(t *testing.T) {
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runMain(t, nil, "-r", pcap("demo.pcap"), "--evidence-dir", filepath.Join(notDir, "evidence"))
	if code != 1 || out != "" || !strings.Contains(errOut, "evidence") || !strings.Contains(errOut, "not a directory") {
		t.Fatalf("exit %d, stdout %q, stderr %q: want exit 1 naming the evidence directory", code, out, errOut)
	}
}

// checkForensicsName checks that the --summary document names each
// incident's evidence file and the --report page links to it, relative to
// the page.
func checkForensicsName(t *testing.T, summary, report, dir string, files map[string][]byte) {
	t.Helper()
	b, err := os.ReadFile(summary)
	if err != nil {
		t.Fatal(err)
	}
	var entries []struct {
		ID          string `json:"id"`
		CaptureFile string `json:"capture_file"`
	}
	if err := json.Unmarshal(b, &entries); err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(files) {
		t.Fatalf("summary has %d incidents for %d evidence files", len(entries), len(files))
	}
	for _, e := range entries {
		if want := filepath.Join(dir, e.ID+".pcap"); e.CaptureFile != want {
			t.Errorf("summary: incident %s names %q, want %q", e.ID, e.CaptureFile, want)
		}
		if link := `href="evidence/` + e.ID + `.pcap"`; !bytes.Contains(page, []byte(link)) {
			t.Errorf("report has no %s", link)
		}
	}
}
