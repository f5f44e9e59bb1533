package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/echowatch/echowatch/detect"
)

// repeatCapture writes copies of a classic pcap one after the other into
// one file, each shifted an hour past the one before, so that the copy
// spans several of the regions that workers read in parallel (2 MiB).
func repeatCapture(t *testing.T, path string, copies int) string {
	t.Helper()
	p := readFrames(t, path)
	span := p.cis[len(p.cis)-1].Timestamp.Sub(p.cis[0].Timestamp) + time.Hour
	var b bytes.Buffer
	w := pcapgo.NewWriterNanos(&b)
	if err := w.WriteFileHeader(p.snaplen, p.link); err != nil {
		t.Fatal(err)
	}
	for c := range copies {
		for i, ci := range p.cis {
			ci.Timestamp = ci.Timestamp.Add(time.Duration(c) * span)
			if err := w.WritePacket(ci, p.datas[i]); err != nil {
				t.Fatal(err)
			}
		}
	}
	out := filepath.Join(t.TempDir(), filepath.Base(filepath.Dir(path))+"-x"+string(rune('0'+copies))+".pcap")
	if err := os.WriteFile(out, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestWorkersSameAlerts runs every golden capture and the demo with 1, 2
// and 3 workers: the alerts must be the same, byte for byte. Each capture
// also runs repeated eight times in one file, which spans several regions,
// so that region boundaries fall anywhere in the traffic (in the middle of
// fragmented datagrams, of incidents, of flows); and the demo runs as
// inputs that are read by a dealer rather than split: pcapng, gzip,
// standard input.
func TestWorkersSameAlerts(t *testing.T) {
	type input struct {
		name  string
		args  []string
		stdin []byte
	}
	var inputs []input
	goldens, err := filepath.Glob(pcap("*/capture.pcap"))
	if err != nil || len(goldens) == 0 {
		t.Fatalf("no golden captures under pcaps/ (%v): nothing to compare", err)
	}
	for _, c := range append(goldens, pcap("demo.pcap")) {
		var args []string
		if cfg := filepath.Join(filepath.Dir(c), "config.yaml"); c != pcap("demo.pcap") {
			if _, err := os.Stat(cfg); err == nil {
				args = []string{"--config", cfg}
			}
		}
		name := filepath.Base(filepath.Dir(c))
		if c == pcap("demo.pcap") {
			name = "demo"
		}
		inputs = append(inputs,
			input{name: name, args: append([]string{"-r", c}, args...)},
			input{name: name + " x8", args: append([]string{"-r", repeatCapture(t, c, 8)}, args...)})
	}
	demo, err := os.ReadFile(pcap("demo.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	inputs = append(inputs,
		input{name: "demo on stdin", args: []string{"-r", "-"}, stdin: demo},
		input{name: "pcapng", args: []string{"-r", pcap("formats/two-interfaces.pcapng")}},
		input{name: "gzip", args: []string{"-r", pcap("formats/gzip-compressed.pcap")}},
		input{name: "two files and a filter", args: []string{"-r", pcap("demo.pcap"), "-r", pcap("reflection-in/capture.pcap"), "--bpf", "udp"}})
	for _, in := range inputs {
		t.Run(in.name, func(t *testing.T) {
			var first string
			for _, workers := range []string{"1", "2", "3"} {
				args := append([]string{"--format", "eve", "--workers", workers}, in.args...)
				code, out, errOut := runMain(t, in.stdin, args...)
				if code != 0 {
					t.Fatalf("%d workers: exit %d: %s", len(workers), code, errOut)
				}
				if workers == "1" {
					first = out
					continue
				}
				if out != first {
					t.Errorf("%s workers differ from one:\n%s", workers, firstDiff(first, out))
				}
			}
		})
	}
}

// firstDiff shows the first line where two outputs differ.
func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range max(len(al), len(bl)) {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return "line " + strconv.Itoa(i+1) + ":\n  one:  " + x + "\n  more: " + y
		}
	}
	return ""
}

// TestWorkersTruncated cuts a capture that spans several regions in the
// middle of a record: with several workers as with one, the frames before
// the cut are read, the alerts are the same and a warning names the file.
func TestWorkersTruncated(t *testing.T) {
	big := repeatCapture(t, pcap("demo.pcap"), 8)
	data, err := os.ReadFile(big)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(t.TempDir(), "cut.pcap")
	os.WriteFile(cut, data[:len(data)*2/3], 0o644)
	_, one, errOne := runMain(t, nil, "-r", cut, "--format", "eve")
	code, two, errTwo := runMain(t, nil, "-r", cut, "--format", "eve", "--workers", "2")
	if code != 0 || two != one || errTwo != errOne || !strings.Contains(errTwo, "truncated") {
		t.Fatalf("exit %d, stderr %q (one worker: %q), same alerts: %v", code, errTwo, errOne, two == one)
	}
}

// discard drops alerts.
type discard struct{}

func (discard) WriteAlert(*detect.Alert) {}
