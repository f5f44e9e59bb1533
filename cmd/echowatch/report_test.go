package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/detect"
	"github.com/echowatch/echowatch/internal/report"
	"github.com/echowatch/echowatch/internal/sensor"
)

var t0 = time.Date(2024, 3, 19, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// twoIncidents is a log of a reflection and a loop, one alert each.
func twoIncidents() *report.Log {
	log := report.NewLog(0)
	log.WriteAlert(&detect.Alert{Time: at(2 * time.Second), Incident: detect.Incident{
		ID: "1400651e2c7ca222", Kind: detect.KindReflection, Phase: detect.PhaseStart, FirstSeen: at(time.Second),
		LastSeen: at(2 * time.Second), Victim: netip.MustParsePrefix("198.51.100.10/32"), ReflectorCount: 30}})
	log.WriteAlert(&detect.Alert{Time: at(4 * time.Second), Incident: detect.Incident{
		ID: "78f0a4db5dd433b8", Kind: detect.KindLoop, Phase: detect.PhaseStart, FirstSeen: at(4 * time.Second),
		LastSeen: at(4 * time.Second), Endpoints: [2]netip.AddrPort{
			netip.MustParseAddrPort("198.51.100.7:7"), netip.MustParseAddrPort("198.51.100.19:19")}}})
	return log
}

// demoLog runs the demo capture through the sensor, with a report.Log as
// its Observer, as main does for --summary and --report with args; first
// and last are the run's first and latest frame times.
func demoLog(t *testing.T, args ...string) (log *report.Log, cfg config, first, last time.Time) {
	t.Helper()
	cfg, _, err := parseArgs(append([]string{"-r", pcap("demo.pcap")}, args...), io.Discard, false)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := cfg.sensorConfig()
	if err != nil {
		t.Fatal(err)
	}
	log = report.NewLog(cfg.logIncidents)
	sc.Observer = log
	engine, err := detect.New(cfg.Config, discardAlerts{})
	if err != nil {
		t.Fatal(err)
	}
	srcs, err := openSources(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll(srcs)
	s, err := sensor.New(sc, srcs, engine)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	return log, cfg, captureStart(srcs[0]), s.Stats().Last
}

// TestReportForensics checks the end-of-run writer main calls: the
// summary file, the report file and the table, and errors that name the
// flag.
func TestReportForensics(t *testing.T) {
	log := twoIncidents()
	dir := t.TempDir()
	summary, page := filepath.Join(dir, "summary.json"), filepath.Join(dir, "report.html")
	var table bytes.Buffer
	if err := writeForensics(log, summary, page, report.Meta{Captures: []string{"x.pcap"}}, &table); err != nil {
		t.Fatal(err)
	}
	if s := string(mustRead(t, summary)); !strings.HasPrefix(s, "[\n  {\n    \"id\": \"1400651e2c7ca222\",") {
		t.Errorf("summary file %q", s)
	}
	if s := string(mustRead(t, page)); !strings.Contains(s, "<code>x.pcap</code>") {
		t.Errorf("report file lacks the capture name")
	}
	if !strings.HasSuffix(table.String(), "2 incidents: 1 reflection, 1 loop\n") {
		t.Errorf("table %q", table.String())
	}

	missing := filepath.Join(dir, "no-such-dir", "out")
	err := writeForensics(log, missing, missing, report.Meta{}, nil)
	if err == nil || !strings.Contains(err.Error(), "--summary: open "+missing) || !strings.Contains(err.Error(), "--report: open "+missing) {
		t.Errorf("error %v, want both flags named", err)
	}
}

// TestReportFlags runs echowatch with --summary and --report on the demo
// capture: the summary and the page are the ones the engine's alerts make
// (demoLog) for a run with the same settings, and the page has every
// incident.
func TestReportFlags(t *testing.T) {
	dir := t.TempDir()
	summary, page := filepath.Join(dir, "summary.json"), filepath.Join(dir, "report.html")
	code, _, errOut := runMain(t, nil, "-r", pcap("demo.pcap"), "--format", "eve", "--summary", summary, "--report", page)
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	log, cfg, first, last := demoLog(t)
	var want bytes.Buffer
	log.WriteJSON(&want)
	if got := string(mustRead(t, summary)); got != want.String() {
		t.Errorf("--summary wrote\n%s\nwant\n%s", got, want.String())
	}
	var incs []struct{ ID string }
	if err := json.Unmarshal(want.Bytes(), &incs); err != nil || len(incs) == 0 {
		t.Fatalf("summary of %d incidents: %v", len(incs), err)
	}

	// The page says when it was written, which no two runs share.
	written := regexp.MustCompile(`(echowatch \S+) on [0-9-]+ [0-9:.]+ UTC`)
	got := written.ReplaceAllString(string(mustRead(t, page)), "$1 on WRITTEN")
	want.Reset()
	meta := report.Meta{Captures: cfg.Read, Start: first, End: last, Sensor: cfg.SensorName, Version: version,
		Generated: time.Now(), Dir: dir}
	if err := log.WriteHTML(&want, meta); err != nil {
		t.Fatal(err)
	}
	if w := written.ReplaceAllString(want.String(), "$1 on WRITTEN"); got != w {
		t.Errorf("--report wrote a page of %d bytes, want the %d of the run's", len(got), len(w))
	}
	for _, in := range incs {
		if !strings.Contains(got, `<span class="id">`+in.ID+`</span>`) {
			t.Errorf("the report lacks incident %s", in.ID)
		}
	}
	if n := strings.Count(got, `<path class="rate" `); n != len(incs) {
		t.Errorf("%d rate paths, want %d", n, len(incs))
	}
}

// TestReportStart: the report's time axis starts at the first frame of the
// first capture, as the run's own source read it, so standard input and
// pipes, which cannot be read twice, have it too; a live capture has none.
func TestReportStart(t *testing.T) {
	demo := pcap("demo.pcap")
	for _, paths := range [][]string{{demo, "-"}, {"-", demo}} {
		stdin, err := os.Open(demo)
		if err != nil {
			t.Fatal(err)
		}
		defer stdin.Close()
		src, err := capture.OpenFiles(paths, stdin)
		if err != nil {
			t.Fatal(err)
		}
		run := capture.Filtered(src, nil) // as the run wraps it for --bpf
		if got := captureStart(run); !got.IsZero() {
			t.Errorf("%v: start %v before the first frame, want zero", paths, got)
		}
		var f capture.Frame
		if err := src.ReadFrame(&f); err != nil {
			t.Fatal(err)
		}
		first := f.Timestamp
		for src.ReadFrame(&f) == nil {
		}
		if got := captureStart(run); !got.Equal(first) || f.Timestamp.Equal(first) {
			t.Errorf("%v: start %v, want the first frame's time %v (the last is %v)", paths, got, first, f.Timestamp)
		}
		src.Close()
	}
	if got := captureStart(silentSource{}); !got.IsZero() {
		t.Errorf("start of a live capture: %v, want zero", got)
	}
}

// silentSource is a live capture that never sees a frame.
type silentSource struct{}

func (silentSource) ReadFrame(*capture.Frame) error { return capture.ErrTimeout }
func (silentSource) Close() error                   { return nil }
