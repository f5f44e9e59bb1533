package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/echowatch/echowatch/detect"
	"github.com/echowatch/echowatch/sinks"
)

// metricsEvery is how often the engine's goroutine publishes a snapshot of
// the counters for --metrics-listen: the engine's counters may only be read
// there, so a scrape reads the latest snapshot instead.
const metricsEvery = time.Second

// metrics serves the sensor's counters to Prometheus on --metrics-listen.
// publish is called on the engine's goroutine; a scrape, on the HTTP
// server's, reads the latest snapshot published and the outputs' counters,
// which are safe to read from any goroutine.
type metrics struct {
	snap   atomic.Pointer[statsEvent]
	reg    *prometheus.Registry
	logger *slog.Logger

	ln        net.Listener
	srv       *http.Server
	served    chan struct{}
	closeOnce sync.Once
}

// newMetrics returns the metrics of a run whose outputs are outs, in a
// registry of their own with the Go runtime and process collectors. It does
// no I/O.
func newMetrics(outs *sinks.Fanout, logger *slog.Logger) *metrics {
	m := &metrics{reg: prometheus.NewRegistry(), logger: logger}
	m.reg.MustRegister(
		newCollector(m.snapshot, outs.Stats),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// publish makes ev the snapshot that scrapes read. ev is not modified
// afterwards.
func (m *metrics) publish(ev *statsEvent) { m.snap.Store(ev) }

func (m *metrics) snapshot() *statsEvent { return m.snap.Load() }

// listenMetrics binds addr; a failure names the flag and the address. It
// is called before privileges are dropped, so that a port below 1024
// works, and before the outputs the metrics describe exist.
func listenMetrics(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen %s: %w", addr, err)
	}
	return ln, nil
}

// addr is the bound address (the port chosen, when ADDR asked for port 0).
func (m *metrics) addr() string { return m.ln.Addr().String() }

// serve starts serving /metrics, and a short page on /, on ln until
// Close, which closes ln.
func (m *metrics) serve(ln net.Listener) {
	m.ln = ln
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(m.logger.Handler(), slog.LevelWarn),
		// A scraper that asks for OpenMetrics (Prometheus does, first)
		// gets it; others the classic text format.
		EnableOpenMetrics: true,
	}))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, "echowatch "+version+"\nPrometheus metrics: /metrics\n")
	})
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	m.served = make(chan struct{})
	go func() {
		defer close(m.served)
		if err := m.srv.Serve(m.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.logger.Warn("metrics server stopped", "err", err)
		}
	}()
	m.logger.Info("serving metrics", "addr", m.addr())
}

// Close stops the server, waiting a moment for scrapes in flight. It is
// safe to call twice.
func (m *metrics) Close() {
	m.closeOnce.Do(func() {
		if m.srv == nil {
			if m.ln != nil {
				m.ln.Close()
			}
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := m.srv.Shutdown(ctx); err != nil {
			m.srv.Close()
		}
		<-m.served
	})
}

// collector turns a snapshot of the counters into metrics at scrape time.
type collector struct {
	snapshot func() *statsEvent
	outputs  func() []sinks.OutputStats

	received, dropped         *prometheus.Desc
	tunnelFrames              *prometheus.Desc
	dedupDropped, dedupEvict  *prometheus.Desc
	flows, flowEvictions      *prometheus.Desc
	keys, keyEvictions        *prometheus.Desc
	incidents, open           *prometheus.Desc
	emitted, suppressed       *prometheus.Desc
	timeStepsBack, timeBad    *prometheus.Desc
	outQueue, outDelivered    *prometheus.Desc
	outFailed, outDropped     *prometheus.Desc
	evFiles, evPackets        *prometheus.Desc
	evBytes, evRemoved        *prometheus.Desc
	evRefused, evErrors       *prometheus.Desc
	evSkipped                 *prometheus.Desc
	tmDatagrams, tmSamples    *prometheus.Desc
	tmRecords, tmRate         *prometheus.Desc
	tmGaps, tmLost            *prometheus.Desc
	tmMisses, tmMalformed     *prometheus.Desc
	tmDropped, tmEvicted      *prometheus.Desc
	buildInfo                 *prometheus.Desc
	buildVersion, buildGoVers string
}

var _ prometheus.Collector = (*collector)(nil)

func newCollector(snapshot func() *statsEvent, outputs func() []sinks.OutputStats) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("echowatch_"+name, help, labels, nil)
	}
	return &collector{
		snapshot:      snapshot,
		outputs:       outputs,
		received:      d("packets_received_total", "Frames read from the capture.", nil...),
		dropped:       d("packets_dropped_total", "Packets lost, by stage (kernel, decode, queue) and, for decode, reason.", "stage", "reason"),
		tunnelFrames:  d("tunnel_frames_total", "Frames by encapsulation and result: decoded, malformed, unknown_payload (not looked into), not_tunnel, other_port (UDP to a tunnel port, delivered as UDP).", "kind", "result"),
		dedupDropped:  d("dedup_dropped_total", "Packets --dedup dropped as copies of one seen within its window."),
		dedupEvict:    d("dedup_evictions_total", "Packets pushed out of the --dedup table within their window."),
		flows:         d("flows_tracked", "Flows in the flow table."),
		flowEvictions: d("flow_evictions_total", "Entries pushed out of a full flow or fragment table.", "table"),
		keys:          d("detect_keys", "Keys held in a bounded detection table.", "table"),
		keyEvictions:  d("detect_evictions_total", "Keys pushed out of a full detection table.", "table"),
		incidents:     d("incidents_total", "Incident alerts written, by kind and phase.", "kind", "phase"),
		open:          d("incidents_open", "Incidents open now."),
		emitted:       d("alerts_emitted_total", "Alerts written."),
		suppressed:    d("alerts_suppressed_total", "Alerts held back by max_alerts_per_second, by kind.", "kind"),
		timeStepsBack: d("time_steps_back_total", "Frames two seconds or more behind detection's clock, counted at its time: steps back of the capture's clock, and late frames."),
		timeBad:       d("time_invalid_total", "Packets of impossible time (before 1995, or more than a day past detection's clock), counted at its time."),
		outQueue:      d("output_queue_depth", "Events held by an output: waiting or unconfirmed.", "output"),
		outDelivered:  d("output_delivered_total", "Events known to have reached an output's destination.", "output"),
		outFailed:     d("output_failed_total", "Sends to an output that failed, to be sent again.", "output"),
		outDropped:    d("output_dropped_total", "Events an output refused because its queue was full.", "output"),
		evFiles:       d("evidence_files_total", "Evidence files created (--evidence-dir)."),
		evPackets:     d("evidence_packets_total", "Packets written to evidence files."),
		evBytes:       d("evidence_bytes", "Bytes of the evidence files this run keeps."),
		evRemoved:     d("evidence_removed_total", "Evidence files removed to stay within max_files and max_bytes."),
		evRefused:     d("evidence_refused_total", "Incidents given no evidence file, or whose file ended early, by a bound."),
		evErrors:      d("evidence_errors_total", "Evidence files that could not be created, written or removed."),
		evSkipped:     d("evidence_skipped_total", "Packets not written to an evidence file because their link type is not the file's."),
		tmDatagrams:   d("telemetry_datagrams_total", "Telemetry datagrams by exporter (its address if listed, else \"unlisted\").", "exporter"),
		tmSamples:     d("telemetry_samples_total", "sFlow flow samples that counted, by exporter.", "exporter"),
		tmRecords:     d("telemetry_records_total", "NetFlow/IPFIX flow records that counted, by exporter.", "exporter"),
		tmRate:        d("telemetry_sampling_rate", "The sampling rate of an exporter's latest sample or record (1: unsampled; the highest of the unlisted).", "exporter"),
		tmGaps:        d("telemetry_sequence_gaps_total", "Breaks in an exporter's sequence numbers.", "exporter"),
		tmLost:        d("telemetry_lost_total", "What the sequence gaps skipped: datagrams (sFlow, NetFlow v9), flows (NetFlow v5) or records (IPFIX).", "exporter"),
		tmMisses:      d("telemetry_template_misses_total", "Data sets that came before their template, by exporter.", "exporter"),
		tmMalformed:   d("telemetry_malformed_total", "Datagrams the decoder refused, by exporter.", "exporter"),
		tmDropped:     d("telemetry_dropped_total", "Telemetry that did not count, by reason.", "reason"),
		tmEvicted:     d("telemetry_exporters_evicted_total", "Exporters pushed out of a full exporter table (max_exporters)."),
		buildInfo:     d("build_info", "The sensor's version and the Go version it was built with; always 1.", "version", "goversion"),
		buildVersion:  version,
		buildGoVers:   runtime.Version(),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.received, c.dropped, c.tunnelFrames, c.dedupDropped, c.dedupEvict, c.flows, c.flowEvictions, c.keys,
		c.keyEvictions, c.incidents, c.open, c.emitted, c.suppressed, c.timeStepsBack, c.timeBad, c.outQueue, c.outDelivered,
		c.outFailed, c.outDropped, c.evFiles, c.evPackets, c.evBytes, c.evRemoved, c.evRefused, c.evErrors, c.evSkipped,
		c.tmDatagrams, c.tmSamples, c.tmRecords, c.tmRate, c.tmGaps, c.tmLost, c.tmMisses, c.tmMalformed, c.tmDropped,
		c.tmEvicted, c.buildInfo} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. Before the first snapshot only
// the build and the outputs are known.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(c.buildInfo, 1, c.buildVersion, c.buildGoVers)
	for _, o := range labelOutputs(c.outputs()) {
		gauge(c.outQueue, float64(o.Queued), o.Name)
		counter(c.outDelivered, o.Delivered, o.Name)
		counter(c.outFailed, o.Failed, o.Name)
		counter(c.outDropped, o.Dropped, o.Name)
	}
	s := c.snapshot()
	if s == nil {
		return
	}
	counter(c.received, s.Decoder.Frames)
	counter(c.dropped, s.Capture.KernelDrops+s.Capture.KernelIfDrops, "kernel", "")
	counter(c.dropped, s.Capture.QueueDrops, "queue", "")
	for reason, n := range s.Decoder.Dropped {
		counter(c.dropped, n, "decode", reason)
	}
	for kind, results := range s.Decoder.Tunnels {
		for result, n := range results {
			counter(c.tunnelFrames, n, kind, result)
		}
	}
	counter(c.dedupDropped, s.Decoder.DedupDropped)
	counter(c.dedupEvict, s.Decoder.DedupEvicted)
	gauge(c.flows, float64(s.Flow.Active))
	counter(c.flowEvictions, s.Flow.Evicted, "flows")
	counter(c.flowEvictions, s.Decoder.FragmentsEvicted, "fragments")
	for _, t := range s.Detect.Tables {
		gauge(c.keys, float64(t.Len), t.Name)
		counter(c.keyEvictions, t.Evicted, t.Name)
	}
	for _, k := range s.Detect.Kinds {
		for p, n := range k.Phases {
			counter(c.incidents, n, k.Name, detect.Phase(p).String())
		}
	}
	gauge(c.open, float64(s.Detect.Open))
	counter(c.emitted, s.Detect.Alerts)
	for _, k := range s.Detect.Kinds {
		counter(c.suppressed, k.Suppressed, k.Name)
	}
	counter(c.timeStepsBack, s.Detect.TimeStepsBack)
	counter(c.timeBad, s.Detect.TimeInvalid)
	if e := s.Evidence; e != nil {
		counter(c.evFiles, e.Files)
		counter(c.evPackets, e.Packets)
		gauge(c.evBytes, float64(e.Bytes))
		counter(c.evRemoved, e.Removed)
		counter(c.evRefused, e.Refused)
		counter(c.evErrors, e.Errors)
		counter(c.evSkipped, e.Skipped)
	}
	if t := s.Telemetry; t != nil {
		for _, e := range byExporterLabel(t.Exporters) {
			counter(c.tmDatagrams, e.Datagrams, e.Address)
			counter(c.tmSamples, e.Samples, e.Address)
			counter(c.tmRecords, e.Records, e.Address)
			gauge(c.tmRate, float64(e.SamplingRate), e.Address)
			counter(c.tmGaps, e.SequenceGaps, e.Address)
			counter(c.tmLost, e.Lost, e.Address)
			counter(c.tmMisses, e.TemplateMisses, e.Address)
			counter(c.tmMalformed, e.Malformed, e.Address)
		}
		for reason, n := range t.Dropped {
			counter(c.tmDropped, n, reason)
		}
		counter(c.tmEvicted, t.ExportersEvicted)
	}
}

// byExporterLabel returns the exporters as the metrics label them: a
// listed exporter by its address, which the operator configured; the
// others (allow_unknown) summed as "unlisted", so that no address a sender
// chose becomes a label.
func byExporterLabel(exps []exporterStats) []exporterStats {
	out := make([]exporterStats, 0, len(exps))
	unlisted := -1
	for _, e := range exps {
		if e.Listed {
			out = append(out, e)
			continue
		}
		if unlisted < 0 {
			unlisted = len(out)
			out = append(out, exporterStats{Address: "unlisted"})
		}
		u := &out[unlisted]
		u.Datagrams += e.Datagrams
		u.Samples += e.Samples
		u.Records += e.Records
		u.SamplingRate = max(u.SamplingRate, e.SamplingRate)
		u.SequenceGaps += e.SequenceGaps
		u.Lost += e.Lost
		u.TemplateMisses += e.TemplateMisses
		u.Malformed += e.Malformed
	}
	return out
}

// labelOutputs names each output for its label: "stdout", or the URL's
// scheme, host and path, without the user, password or query, so that no
// credential reaches a metric. Two outputs that would share a name get a
// "#2", "#3"... suffix.
func labelOutputs(outs []sinks.OutputStats) []sinks.OutputStats {
	seen := map[string]int{}
	for i := range outs {
		name := outs[i].Name
		if u, err := url.Parse(name); err == nil && u.Scheme != "" {
			name = (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
		}
		if seen[name]++; seen[name] > 1 {
			name += "#" + strconv.Itoa(seen[name])
		}
		outs[i].Name = name
	}
	return outs
}
