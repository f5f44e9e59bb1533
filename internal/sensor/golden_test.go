package sensor

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/detect"
)

var update = flag.Bool("update", false, "rewrite the golden alerts of pcaps/*/alerts.json")

// goldenWorkers are the runs of every case: one worker does everything on
// its goroutine; three decode in parallel and one stage detects.
var goldenWorkers = []int{1, 3}

// goldenRuns are TestGolden's: those of goldenWorkers, and three workers
// that send each record of a region in a part of its own (see chunk.more).
var goldenRuns = []replay{{workers: 1}, {workers: 3}, {workers: 3, partRecords: 1}}

// TestGolden runs every case of pcaps/ (a folder with capture.pcap, or
// capture-a.pcap, capture-b.pcap... read merged by time, an
// optional config.yaml over the default config, and alerts.json) through
// the sensor with one worker and with three, and compares the EVE lines
// with alerts.json byte for byte. Benign cases have an empty alerts.json,
// so a false positive fails. go test ./internal/sensor -run Golden -update
// rewrites the goldens: review them by eye before committing.
func TestGolden(t *testing.T) {
	for _, dir := range goldenCases(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			golden := filepath.Join(dir, "alerts.json")
			for i, r := range goldenRuns {
				r.dir = dir
				got := r.run(t)
				if *update && i == 0 {
					if err := os.WriteFile(golden, got, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(golden)
				if errors.Is(err, os.ErrNotExist) {
					t.Fatalf("%s has a capture but no alerts.json: run go test ./internal/sensor -run Golden -update and review it", dir)
				}
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%d workers (parts of %d records): alerts differ from %s (-update rewrites it)\n%s", r.workers, r.partRecords, golden, lineDiff(string(want), string(got)))
				}
			}
		})
	}
}

// goldenCases returns the folders of the cases under pcaps/. None is a
// failure: a harness that finds nothing tests nothing.
func goldenCases(t *testing.T) []string {
	t.Helper()
	captures, err := filepath.Glob(filepath.Join("..", "..", "pcaps", "*", "capture*.pcap"))
	if err != nil || len(captures) == 0 {
		t.Fatalf("no case under ../../pcaps/*/capture*.pcap (%v): run go run ./cmd/pcapgen", err)
	}
	var dirs []string
	for _, c := range captures {
		if d := filepath.Dir(c); !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// replay is one run of a case's capture through the sensor.
type replay struct {
	dir     string // the case: dir/capture.pcap, and dir/config.yaml if there is one
	workers int
	// wrap, if not nil, is applied to every frame before it is decoded:
	// the same traffic as another link delivers it.
	wrap func(frame []byte) []byte
	// out, if not nil, gets the alerts; otherwise run returns them as EVE
	// lines.
	out detect.AlertWriter
	// evidence, if not nil, keeps the incidents' first packets, with
	// frames of up to evidenceSnaplen bytes.
	evidence        detect.EvidenceWriter
	evidenceSnaplen int
	// fullDecode turns the decoder's pre-filter off; stats, if not nil,
	// gets the run's counters.
	fullDecode bool
	stats      *Stats
	// partRecords sets Config.partRecords.
	partRecords int
}

// caseConfig is what a case's config.yaml may set: detection's settings,
// and the capture settings the sensor takes from the same file.
type caseConfig struct {
	detect.Config `yaml:",inline"`
	VXLANPorts    []uint16      `yaml:"vxlan_ports"`
	Tenant        string        `yaml:"tenant"`
	Dedup         time.Duration `yaml:"dedup"`
}

// config returns the case's configuration: the defaults, and its
// config.yaml over them. The sensor's name is pinned empty, so that no
// alert has a "host" and the goldens are the same on every machine.
func (r replay) config(t *testing.T) (detect.Config, Config) {
	t.Helper()
	cc := caseConfig{Config: detect.DefaultConfig(), Tenant: "none"}
	if b, err := os.ReadFile(filepath.Join(r.dir, "config.yaml")); err == nil {
		if err := yaml.Unmarshal(b, &cc); err != nil {
			t.Fatalf("%s/config.yaml: %v", r.dir, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	cc.SensorName = ""
	tenant, err := capture.ParseTenantKey(cc.Tenant)
	if err != nil {
		t.Fatalf("%s/config.yaml: %v", r.dir, err)
	}
	return cc.Config, Config{
		Workers:         r.workers,
		Decoder:         capture.DecoderConfig{VXLANPorts: cc.VXLANPorts, Tenant: tenant},
		Dedup:           cc.Dedup,
		EvidenceSnaplen: r.evidenceSnaplen,
		fullDecode:      r.fullDecode,
		partRecords:     r.partRecords,
	}
}

// run returns the EVE lines of the alerts the case's capture raises, one
// per line (nothing when r.out takes them).
func (r replay) run(t *testing.T) []byte {
	t.Helper()
	dc, sc := r.config(t)
	var lines bytes.Buffer
	out := r.out
	if out == nil {
		out = lineWriter{&lines}
	}
	eng, err := detect.New(dc, out)
	if err != nil {
		t.Fatal(err)
	}
	if r.evidence != nil {
		eng.KeepEvidence(r.evidence)
	}
	src := r.open(t)
	defer src.Close()
	if r.wrap != nil {
		src = &wrapped{Source: src, wrap: r.wrap}
	}
	s, err := New(sc, []capture.Source{src}, eng)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ws := s.Warnings(); len(ws) > 0 {
		t.Fatalf("warnings: %v", ws)
	}
	if r.stats != nil {
		*r.stats = s.Stats()
	}
	return lines.Bytes()
}

// open opens the case's capture: capture.pcap, or the files of a case in
// several (capture-a.pcap, capture-b.pcap, ...) merged by time, as
// echowatch reads several -r files.
func (r replay) open(t *testing.T) capture.Source {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(r.dir, "capture*.pcap"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no capture in %s (%v)", r.dir, err)
	}
	if len(paths) == 1 {
		file, err := capture.OpenFiles(paths, nil)
		if err != nil {
			t.Fatal(err)
		}
		return file
	}
	merged, err := capture.MergeFiles(paths, nil)
	if err != nil {
		t.Fatal(err)
	}
	return merged
}

// wrapped is a Source whose frames pass through wrap.
type wrapped struct {
	capture.Source
	wrap func([]byte) []byte
}

func (w *wrapped) ReadFrame(f *capture.Frame) error {
	if err := w.Source.ReadFrame(f); err != nil {
		return err
	}
	data := w.wrap(f.Data)
	f.Length += len(data) - len(f.Data)
	f.Data, f.CaptureLength = data, len(data)
	return nil
}

// lineWriter writes each alert as one EVE line.
type lineWriter struct{ b *bytes.Buffer }

func (w lineWriter) WriteAlert(a *detect.Alert) {
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
