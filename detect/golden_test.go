package detect

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/echowatch/echowatch/capture"
	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite the golden alerts of ../pcaps/*/alerts.json")

// TestGolden runs every case of ../pcaps (a folder with capture.pcap, an
// optional config.yaml over the default config, and alerts.json) through
// the file reader, the decoder, the flow table and the Engine, and
// compares the EVE lines with alerts.json byte for byte. Benign cases have
// an empty alerts.json, so a false positive fails. go test ./detect -run
// Golden -update rewrites the goldens: review them by eye before
// committing.
func TestGolden(t *testing.T) {
	captures, err := filepath.Glob(filepath.Join("..", "pcaps", "*", "capture.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	if len(captures) == 0 {
		t.Skip("no capture under ../pcaps/*/: run go run ./cmd/pcapgen")
	}
	for _, c := range captures {
		dir := filepath.Dir(c)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			got := runCase(t, dir)
			golden := filepath.Join(dir, "alerts.json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if errors.Is(err, os.ErrNotExist) {
				t.Fatalf("%s has a capture but no alerts.json: run go test ./detect -run Golden -update and review it", dir)
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("alerts differ from %s (-update rewrites it)\n%s", golden, lineDiff(string(want), string(got)))
			}
		})
	}
}

// runCase returns the EVE lines the case's capture raises, one per line.
func runCase(t *testing.T, dir string) []byte {
	t.Helper()
	return runCaseWith(t, dir, nil, nil)
}

// runCaseWith is runCase with out, if not nil, for the alerts, and setup,
// if not nil, called on the Engine before the first packet.
func runCaseWith(t *testing.T, dir string, out AlertWriter, setup func(*Engine)) []byte {
	t.Helper()
	return runCaseWrapped(t, dir, out, setup, nil)
}

// runCaseWrapped is runCaseWith with every frame of the capture passed
// through wrap, if not nil, before it is decoded: the same traffic as
// another link delivers it.
func runCaseWrapped(t *testing.T, dir string, out AlertWriter, setup func(*Engine), wrap func([]byte) []byte) []byte {
	t.Helper()
	cfg := DefaultConfig()
	// The capture settings the sensor takes from the same file.
	capt := struct {
		VXLANPorts []uint16      `yaml:"vxlan_ports"`
		Tenant     string        `yaml:"tenant"`
		Dedup      time.Duration `yaml:"dedup"`
	}{Tenant: "none"}
	if b, err := os.ReadFile(filepath.Join(dir, "config.yaml")); err == nil {
		if err := yaml.Unmarshal(b, &cfg); err != nil {
			t.Fatalf("config.yaml: %v", err)
		}
		if err := yaml.Unmarshal(b, &capt); err != nil {
			t.Fatalf("config.yaml: %v", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	tenant, err := capture.ParseTenantKey(capt.Tenant)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := capture.NewDecoderWith(capture.DecoderConfig{VXLANPorts: capt.VXLANPorts, Tenant: tenant})
	if err != nil {
		t.Fatal(err)
	}
	var dedup *capture.Dedup
	if capt.Dedup > 0 {
		if dedup, err = capture.NewDedup(capt.Dedup); err != nil {
			t.Fatal(err)
		}
	}
	var lines bytes.Buffer
	if out == nil {
		out = lineWriter{&lines}
	}
	eng, err := New(cfg, out)
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(eng)
	}
	flows, err := NewFlows(FlowConfig{Ports: cfg.FlowPorts()})
	if err != nil {
		t.Fatal(err)
	}
	src, err := capture.OpenFiles([]string{filepath.Join(dir, "capture.pcap")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var f capture.Frame
	var p capture.Packet
	for {
		err := src.ReadFrame(&f)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if wrap != nil {
			data := wrap(f.Data)
			f.Length += len(data) - len(f.Data)
			f.Data, f.CaptureLength = data, len(data)
		}
		if dec.Decode(&f, &p) != capture.DropNone {
			continue
		}
		if dedup != nil && (p.Fragment || eng.Wants(&p)) && dedup.Seen(&p) {
			continue // a copy, as --dedup drops it
		}
		fl, d := flows.Update(&p)
		eng.Packet(&p, fl, d)
	}
	eng.Flush(p.Timestamp)
	return lines.Bytes()
}

// lineWriter writes each alert as one EVE line.
type lineWriter struct{ b *bytes.Buffer }

func (w lineWriter) WriteAlert(a *Alert) {
	w.b.Write(a.AppendEVE(nil))
	w.b.WriteByte('\n')
}

// lineDiff shows the first lines that differ.
func lineDiff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < max(len(wl), len(gl)) && b.Len() < 4000; i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			fmt.Fprintf(&b, "line %d:\n  want %s\n  got  %s\n", i+1, w, g)
		}
	}
	return b.String()
}
