package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/detect"
	"github.com/echowatch/echowatch/sinks"
)

type discardAlerts struct{}

func (discardAlerts) WriteAlert(*detect.Alert) {}

// demoStats runs the pipeline on the demo capture and returns its counters.
func demoStats(t *testing.T, workers int) *statsEvent {
	t.Helper()
	cfg := defaultConfig()
	cfg.Read, cfg.Workers = []string{pcap("demo.pcap")}, workers
	return runStats(t, cfg)
}

// The demo capture: 2959 frames; a reflection, a loop, a sweep and an
// exposed host that start and end (the last two at the end of the input).
const demoMetrics = `
# HELP echowatch_packets_received_total Frames read from the capture.
# TYPE echowatch_packets_received_total counter
echowatch_packets_received_total 2959
# HELP echowatch_alerts_emitted_total Alerts written.
# TYPE echowatch_alerts_emitted_total counter
echowatch_alerts_emitted_total 8
# HELP echowatch_alerts_suppressed_total Alerts held back by max_alerts_per_second, by kind.
# TYPE echowatch_alerts_suppressed_total counter
echowatch_alerts_suppressed_total{kind="exposed"} 0
echowatch_alerts_suppressed_total{kind="loop"} 0
echowatch_alerts_suppressed_total{kind="reflection"} 0
echowatch_alerts_suppressed_total{kind="scan"} 0
echowatch_alerts_suppressed_total{kind="spoofed_flood"} 0
# HELP echowatch_incidents_total Incident alerts written, by kind and phase.
# TYPE echowatch_incidents_total counter
echowatch_incidents_total{kind="exposed",phase="end"} 1
echowatch_incidents_total{kind="exposed",phase="start"} 1
echowatch_incidents_total{kind="exposed",phase="update"} 0
echowatch_incidents_total{kind="loop",phase="end"} 1
echowatch_incidents_total{kind="loop",phase="start"} 1
echowatch_incidents_total{kind="loop",phase="update"} 0
echowatch_incidents_total{kind="reflection",phase="end"} 1
echowatch_incidents_total{kind="reflection",phase="start"} 1
echowatch_incidents_total{kind="reflection",phase="update"} 0
echowatch_incidents_total{kind="scan",phase="end"} 1
echowatch_incidents_total{kind="scan",phase="start"} 1
echowatch_incidents_total{kind="scan",phase="update"} 0
echowatch_incidents_total{kind="spoofed_flood",phase="end"} 0
echowatch_incidents_total{kind="spoofed_flood",phase="start"} 0
echowatch_incidents_total{kind="spoofed_flood",phase="update"} 0
# HELP echowatch_output_queue_depth Events held by an output: waiting or unconfirmed.
# TYPE echowatch_output_queue_depth gauge
echowatch_output_queue_depth{output="kafka://192.0.2.9:9092/alerts"} 3
echowatch_output_queue_depth{output="stdout"} 0
# HELP echowatch_output_dropped_total Events an output refused because its queue was full.
# TYPE echowatch_output_dropped_total counter
echowatch_output_dropped_total{output="kafka://192.0.2.9:9092/alerts"} 2
echowatch_output_dropped_total{output="stdout"} 0
# HELP echowatch_detect_keys Keys held in a bounded detection table.
# TYPE echowatch_detect_keys gauge
echowatch_detect_keys{table="exposed.findings"} 1
echowatch_detect_keys{table="loop.pairs"} 1
echowatch_detect_keys{table="reflection.prefixes"} 2
echowatch_detect_keys{table="reflection.reflectors"} 120
echowatch_detect_keys{table="reflection.victims"} 2
echowatch_detect_keys{table="scan.scanners"} 1
echowatch_detect_keys{table="spoofed_flood.targets"} 31
`

func TestMetricsCollector(t *testing.T) {
	for _, workers := range []int{1, 3} {
		ev := demoStats(t, workers)
		outs := func() []sinks.OutputStats {
			k := sinks.OutputStats{Name: "kafka://sensor:xxxxx@192.0.2.9:9092/alerts?password=xxxxx"}
			k.Queued, k.Dropped = 3, 2
			return []sinks.OutputStats{{Name: "stdout"}, k}
		}
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(newCollector(func() *statsEvent { return ev }, outs))
		if err := testutil.GatherAndCompare(reg, strings.NewReader(demoMetrics),
			"echowatch_packets_received_total", "echowatch_alerts_emitted_total",
			"echowatch_alerts_suppressed_total", "echowatch_incidents_total",
			"echowatch_output_queue_depth", "echowatch_output_dropped_total",
			"echowatch_detect_keys"); err != nil {
			t.Errorf("%d workers: %v", workers, err)
		}
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		checkNoAddressLabels(t, fams)
	}
}

func TestMetricsBeforeFirstSnapshot(t *testing.T) {
	c := newCollector(func() *statsEvent { return nil }, func() []sinks.OutputStats { return nil })
	if n := testutil.CollectAndCount(c); n != 1 { // build_info alone
		t.Errorf("%d metrics before any snapshot, want 1", n)
	}
}

// checkNoAddressLabels fails when a label value is an IP address.
func checkNoAddressLabels(t *testing.T, fams []*dto.MetricFamily) {
	t.Helper()
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "exporter" {
					continue // a router the configuration lists, or "unlisted"
				}
				v := l.GetValue()
				if _, err := netip.ParseAddr(v); err == nil {
					t.Errorf("%s{%s=%q}: an IP address as a label", f.GetName(), l.GetName(), v)
				}
				if _, err := netip.ParseAddrPort(v); err == nil {
					t.Errorf("%s{%s=%q}: an address as a label", f.GetName(), l.GetName(), v)
				}
				if strings.Contains(v, "xxxxx") || strings.Contains(v, "@") {
					t.Errorf("%s{%s=%q}: credentials in a label", f.GetName(), l.GetName(), v)
				}
			}
		}
	}
}

// TestMetricsServe runs the sensor on the demo capture with
// --metrics-listen 127.0.0.1:0 and scrapes it over HTTP at the end of the
// run, while the server still serves.
func TestMetricsServe(t *testing.T) {
	evidence := t.TempDir()
	cfg, _, err := parseArgs([]string{"-r", pcap("demo.pcap"), "--metrics-listen", "127.0.0.1:0",
		"--evidence-dir", evidence}, io.Discard, false)
	if err != nil {
		t.Fatal(err)
	}
	var addr string
	var fams map[string]*dto.MetricFamily
	var page string
	cfg.metricsRan = func(a string) {
		addr = a
		page = get(t, "http://"+a+"/")
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err = p.TextToMetricFamilies(strings.NewReader(get(t, "http://"+a+"/metrics")))
		if err != nil {
			t.Errorf("parse /metrics: %v", err)
		}
		om, kind := getAccept(t, "http://"+a+"/metrics", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
		if !strings.HasPrefix(kind, "application/openmetrics-text") || !strings.HasSuffix(om, "# EOF\n") ||
			!strings.Contains(om, "echowatch_") {
			t.Errorf("asked for OpenMetrics, got %s ending %q", kind, om[max(0, len(om)-20):])
		}
		if _, kind := getAccept(t, "http://"+a+"/metrics", ""); !strings.HasPrefix(kind, "text/plain") {
			t.Errorf("asked for nothing in particular, got %s", kind)
		}
	}
	logger := slog.New(slog.DiscardHandler)
	if err := sense(context.Background(), cfg, nil, io.Discard, io.Discard, logger); err != nil {
		t.Fatal(err)
	}
	if fams == nil {
		t.Fatal("the metrics were not scraped")
	}
	if !strings.Contains(page, "/metrics") {
		t.Errorf("/ says %q", page)
	}
	value := func(name string, labels ...string) float64 {
		t.Helper()
		f := fams[name]
		if f == nil {
			t.Errorf("no %s", name)
			return -1
		}
	metric:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					found = found || l.GetName() == labels[i] && l.GetValue() == labels[i+1]
				}
				if !found {
					continue metric
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
		t.Errorf("no %s%v", name, labels)
		return -1
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"echowatch_packets_received_total", nil, 2959},
		{"echowatch_packets_dropped_total", []string{"stage", "kernel"}, 0},
		{"echowatch_packets_dropped_total", []string{"stage", "queue"}, 0},
		{"echowatch_packets_dropped_total", []string{"stage", "decode", "reason", "non_ip"}, 0},
		{"echowatch_flows_tracked", nil, 2274},
		{"echowatch_flow_evictions_total", []string{"table", "flows"}, 0},
		{"echowatch_incidents_total", []string{"kind", "reflection", "phase", "start"}, 1},
		{"echowatch_incidents_total", []string{"kind", "reflection", "phase", "end"}, 1},
		{"echowatch_incidents_total", []string{"kind", "loop", "phase", "end"}, 1},
		{"echowatch_incidents_total", []string{"kind", "scan", "phase", "start"}, 1},
		{"echowatch_incidents_total", []string{"kind", "scan", "phase", "end"}, 1},
		{"echowatch_incidents_total", []string{"kind", "exposed", "phase", "start"}, 1},
		{"echowatch_incidents_total", []string{"kind", "exposed", "phase", "end"}, 1},
		{"echowatch_alerts_emitted_total", nil, 8},
		{"echowatch_detect_keys", []string{"table", "spoofed_flood.targets"}, 31},
		{"echowatch_output_dropped_total", []string{"output", "stdout"}, 0},
		{"echowatch_build_info", []string{"version", "dev"}, 1},
		// One evidence file per incident, as written.
		{"echowatch_evidence_files_total", nil, 4},
		{"echowatch_evidence_packets_total", nil, float64(evidencePackets(t, evidence))},
		{"echowatch_evidence_bytes", nil, float64(dirBytes(t, evidence))},
		{"echowatch_evidence_removed_total", nil, 0},
		{"echowatch_evidence_refused_total", nil, 0},
		{"echowatch_evidence_errors_total", nil, 0},
		{"echowatch_evidence_skipped_total", nil, 0},
	} {
		if got := value(c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	for _, name := range []string{"echowatch_detect_evictions_total", "echowatch_output_queue_depth",
		"echowatch_output_delivered_total", "echowatch_output_failed_total", "go_goroutines"} {
		if fams[name] == nil {
			t.Errorf("no %s", name)
		}
	}
	var list []*dto.MetricFamily
	for _, f := range fams {
		list = append(list, f)
	}
	checkNoAddressLabels(t, list)

	// The server stopped with the run.
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Errorf("%s still accepts connections after the run", addr)
	}
}

func TestMetricsListenBusy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	code, _, errOut := runMain(t, nil, "-r", pcap("demo.pcap"), "--metrics-listen", addr)
	if code != 1 || !strings.Contains(errOut, "--metrics-listen "+addr+": ") {
		t.Errorf("exit %d, stderr %q; want exit 1 naming the flag and %s", code, errOut, addr)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	body, _ := getAccept(t, url, "")
	return body
}

// getAccept gets url, asking for the media types of accept (none when
// empty), and returns the body and its Content-Type.
func getAccept(t *testing.T, url, accept string) (body, contentType string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("GET %s: %v", url, err)
		return "", ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("GET %s: %s, %v", url, resp.Status, err)
	}
	return string(b), resp.Header.Get("Content-Type")
}

// evidencePackets counts the records of the evidence files in dir.
func evidencePackets(t *testing.T, dir string) int {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		src, err := capture.OpenFiles([]string{filepath.Join(dir, e.Name())}, nil)
		if err != nil {
			t.Fatal(err)
		}
		var f capture.Frame
		for src.ReadFrame(&f) == nil {
			n++
		}
		src.Close()
	}
	return n
}

// dirBytes is the size of the files in dir.
func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		n += info.Size()
	}
	return n
}

// TestStatsEventMeta: what a stats event tells the outputs of its type and
// time (syslog's and Kafka's headers) is what its EVE JSON says.
func TestStatsEventMeta(t *testing.T) {
	ev := demoStats(t, 1)
	var eve struct {
		EventType string `json:"event_type"`
		Timestamp string `json:"timestamp"`
	}
	if err := json.Unmarshal(ev.AppendEVE(nil), &eve); err != nil {
		t.Fatal(err)
	}
	typ, at := ev.EventMeta()
	if typ != eve.EventType || at.UTC().Format(eveTimeLayout) != eve.Timestamp || at.IsZero() {
		t.Errorf("EventMeta says %q at %v; the EVE JSON says %q at %s", typ, at, eve.EventType, eve.Timestamp)
	}
}
