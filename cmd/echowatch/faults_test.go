//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/echowatch/echowatch/sinks"
	"github.com/echowatch/echowatch/sinks/sinkstest"
)

// reflectionBursts writes a capture in which each of victims hosts, one
// per /24, gets a burst of 400 echo replies from 192.0.2.7:7 within
// 400ms, half a second after the previous victim's: one reflection
// incident each, which ends (with --end-after 2s) while later victims'
// bursts are still being read. It returns the capture and where each of
// parts equal runs of victims ends in it, so a test can hand the capture
// to the sensor a part at a time.
func reflectionBursts(t *testing.T, victims, parts int) (data []byte, cuts []int) {
	t.Helper()
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if err := w.WriteFileHeader(65536, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2024, 3, 19, 12, 0, 0, 0, time.UTC)
	for v := range victims {
		dst := [4]byte{10, byte(v >> 8), byte(v), 1}
		start := t0.Add(time.Duration(v) * 500 * time.Millisecond)
		for i := range 400 {
			frame := udpFrame([4]byte{192, 0, 2, 7}, dst, 7, 40000, 64)
			ci := gopacket.CaptureInfo{Timestamp: start.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(frame), Length: len(frame)}
			if err := w.WritePacket(ci, frame); err != nil {
				t.Fatal(err)
			}
		}
		if (v+1)%(victims/parts) == 0 {
			cuts = append(cuts, buf.Len())
		}
	}
	return buf.Bytes(), cuts
}

// faultRun is echowatch reading a capture from a pipe that the test fills
// a part at a time, so it can act on the outputs between parts.
type faultRun struct {
	stdin          *io.PipeWriter
	done           chan struct{}
	code           int
	stdout, stderr syncBuffer // stderr is read while the run goes on
}

func startFaultRun(args ...string) *faultRun {
	pr, pw := io.Pipe()
	r := &faultRun{stdin: pw, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.code = run(append([]string{"-r", "-"}, args...), pr, &r.stdout, &r.stderr)
		pr.CloseWithError(io.ErrClosedPipe) // unblock a writer if run ended early
	}()
	return r
}

// feed writes b to the sensor's standard input, and fails the test if the
// sensor does not take it in time.
func (r *faultRun) feed(t *testing.T, b []byte) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { _, err := r.stdin.Write(b); errc <- err }()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("feeding the capture: %v (stderr %q)", err, r.stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the sensor did not read its input within 30s")
	}
}

// wait closes the input and waits for the run to end.
func (r *faultRun) wait(t *testing.T, timeout time.Duration) {
	t.Helper()
	r.stdin.Close()
	select {
	case <-r.done:
	case <-time.After(timeout):
		t.Fatalf("the run did not end within %v", timeout)
	}
}

// finalOutputStats returns the per-output counters of the last stats event
// in an EVE stream, by output name.
func finalOutputStats(t *testing.T, eve string) map[string]sinks.OutputStats {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(eve), "\n")
	last := lines[len(lines)-1]
	var ev struct {
		EventType string `json:"event_type"`
		Stats     struct {
			Echowatch struct {
				Outputs []sinks.OutputStats `json:"outputs"`
			} `json:"echowatch"`
		} `json:"stats"`
	}
	if err := json.Unmarshal([]byte(last), &ev); err != nil || ev.EventType != "stats" {
		t.Fatalf("the output does not end with a stats event (%v): %s", err, last)
	}
	m := map[string]sinks.OutputStats{}
	for _, o := range ev.Stats.Echowatch.Outputs {
		m[o.Name] = o
	}
	return m
}

// alertsOnly keeps the alert events, and only the first copy of each:
// delivery is at least once, so a restart may repeat some.
func alertsOnly(lines []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, l := range lines {
		if strings.Contains(l, `"event_type":"alert"`) && !seen[l] {
			seen[l] = true
			out = append(out, l)
		}
	}
	return out
}

// lostLine matches the log line main writes for an output that lost events
// once its queue is closed, with the final counters.
var lostLine = regexp.MustCompile(`output lost events.* output=(\S+) produced=(\d+) delivered=(\d+) dropped=(\d+) rejected=(\d+) undelivered=(\d+)`)

// TestOutputsGoAwayDuringReplay replays a capture of 60 reflection
// incidents to syslog over TCP and to Kafka while both destinations go
// away and come back: with room in the queues every alert arrives (some
// perhaps twice), in order per incident, and nothing is counted lost; with
// a queue too small for the outage, the losses are counted, add up, are
// named on standard error, and the offline run fails.
func TestOutputsGoAwayDuringReplay(t *testing.T) {
	data, cuts := reflectionBursts(t, 60, 3)
	common := []string{"--format", "eve", "--sensor-name", "faults", "--max-alerts-per-second", "0", "--end-after", "2s"}
	code, want, errOut := runMain(t, data, append([]string{"-r", "-"}, common...)...)
	if code != 0 || errOut != "" {
		t.Fatalf("reference run: exit %d, stderr %q", code, errOut)
	}
	wantLines := strings.Split(strings.TrimSpace(want), "\n")
	if n := strings.Count(want, `"phase":"start"`); n != 60 || strings.Count(want, `"phase":"end"`) != 60 {
		t.Fatalf("the generated capture gave %d starts and %d ends, want 60 of each:\n%s", n, strings.Count(want, `"phase":"end"`), want)
	}

	t.Run("restart", func(t *testing.T) {
		start := time.Now()
		r := sinkstest.StartRsyslog(t, "tcp")
		k := sinkstest.StartKafka(t, "alerts", 3)
		syslogURL, kafkaURL := "syslog+tcp://"+r.Addr, "kafka://"+k.Addr+"/"+k.Topic
		run := startFaultRun(append(common, "--stats", "--flush-timeout", "30s",
			"--output", "stdout", "--output", syslogURL, "--output", kafkaURL)...)
		run.feed(t, data[:cuts[0]])
		// The first part's alerts reach both destinations...
		if got := alertsOnly(msgs(r.WaitMessages(20, 15*time.Second))); len(got) < 20 {
			t.Fatalf("syslog got %d alerts of the first part, want its 20 starts", len(got))
		}
		if got := k.Records(20, 15*time.Second); len(got) < 20 {
			t.Fatalf("kafka got %d alerts of the first part, want its 20 starts", len(got))
		}
		// ...then both go away while the second part is read, and come
		// back before the third. rsyslog is stopped once nothing more
		// arrives: what it acknowledged and then lost on its way down
		// would be its own doing (see tiny-queue).
		waitQuiet(r)
		r.Stop()
		k.Stop()
		run.feed(t, data[cuts[0]:cuts[1]])
		for _, name := range []string{syslogURL, kafkaURL} { // the outputs try and fail
			for deadline := time.Now().Add(15 * time.Second); !strings.Contains(run.stderr.String(), `msg="output down" component=echowatch output=`+name); time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("%s was not seen down within 15s: %q", name, run.stderr.String())
				}
			}
		}
		r.Start()
		k.Start()
		run.feed(t, data[cuts[1]:])
		run.wait(t, 60*time.Second)
		// Each output said it went down during the run and came back,
		// and nothing else.
		errOut := run.stderr.String()
		for _, name := range []string{syslogURL, kafkaURL} {
			if !strings.Contains(errOut, `msg="output down" component=echowatch output=`+name) ||
				!strings.Contains(errOut, `msg="output up" component=echowatch output=`+name) {
				t.Errorf("stderr does not say %s went down and came back: %q", name, errOut)
			}
		}
		for _, l := range strings.Split(strings.TrimSpace(errOut), "\n") {
			if !regexp.MustCompile(`^level=(WARN|INFO) msg="output (down|up)" `).MatchString(l) {
				t.Errorf("stderr line other than a state change: %q", l)
			}
		}
		if run.code != 0 {
			t.Fatalf("exit %d, stderr %q", run.code, errOut)
		}
		if got := run.stdout.String(); !strings.HasPrefix(got, want) || strings.Count(got, "\n") != len(wantLines)+1 {
			t.Errorf("stdout is not the reference alerts followed by one stats event")
		}
		stats := finalOutputStats(t, run.stdout.String())
		for _, name := range []string{syslogURL, kafkaURL} {
			s, ok := stats[name]
			if !ok {
				t.Errorf("the stats event has no counters for %s: %+v", name, stats)
				continue
			}
			// The stats event is taken before the outputs are flushed:
			// what is not yet delivered is queued. Delivered is read a
			// moment after the rest, so it may be ahead of the others.
			if s.Produced != uint64(len(wantLines)) || s.Dropped != 0 || s.Rejected != 0 || s.Undelivered != 0 ||
				s.Delivered > s.Produced || s.Delivered+uint64(s.Queued) < s.Produced {
				t.Errorf("%s: %+v; want %d produced, none dropped, rejected or undelivered, the rest delivered or queued",
					name, s.QueueStats, len(wantLines))
			}
		}
		// No count need witness rsyslog's outage: stopped once quiet, it
		// may hold nothing unsettled, so that no send fails and the output
		// is up again at the end. The down and up lines above say it.
		// Every alert arrived, in order per incident, duplicates aside.
		viaSyslog := alertsOnly(msgs(r.WaitMessages(len(wantLines)+1, 15*time.Second))) // and the stats event
		if !sameSet(viaSyslog, wantLines) {
			t.Errorf("syslog got %d distinct alerts, want the %d of the reference run", len(viaSyslog), len(wantLines))
		}
		checkIncidentOrder(t, viaSyslog, wantLines)
		var viaKafka []string
		for _, rec := range k.All() {
			viaKafka = append(viaKafka, string(rec.Value))
		}
		viaKafka = alertsOnly(viaKafka)
		if !sameSet(viaKafka, wantLines) {
			t.Errorf("kafka got %d distinct alerts, want the %d of the reference run", len(viaKafka), len(wantLines))
		}
		checkIncidentOrder(t, viaKafka, wantLines)
		t.Logf("%d alerts; syslog %+v; kafka %+v; took %v", len(wantLines), stats[syslogURL].QueueStats,
			stats[kafkaURL].QueueStats, time.Since(start).Round(time.Millisecond))
	})

	t.Run("tiny-queue", func(t *testing.T) {
		r := sinkstest.StartRsyslog(t, "tcp")
		syslogURL := "syslog+tcp://" + r.Addr
		run := startFaultRun(append(common, "--stats", "--queue-size", "5", "--flush-timeout", "10s",
			"--output", "stdout", "--output", syslogURL)...)
		run.feed(t, data[:cuts[0]])
		// Reading a file, a full queue waits for rsyslog while it is up:
		// the first part's 20 starts all arrive. rsyslog is stopped once
		// they have, and nothing more comes: what it acknowledged and then
		// lost on its way down is its own doing, not what this tests.
		if got := alertsOnly(msgs(r.WaitMessages(20, 15*time.Second))); len(got) < 20 {
			t.Fatalf("syslog got %d alerts of the first part, want its 20 starts", len(got))
		}
		waitQuiet(r)
		r.Stop()
		run.feed(t, data[cuts[0]:cuts[1]]) // 40 alerts for a queue of 5
		time.Sleep(300 * time.Millisecond)
		r.Start()
		run.feed(t, data[cuts[1]:])
		run.wait(t, 60*time.Second)
		errOut := run.stderr.String()
		if run.code != 1 || !regexp.MustCompile(regexp.QuoteMeta(syslogURL)+`: \d+ of \d+ events not delivered \(\d+ dropped with the queue full`).MatchString(errOut) {
			t.Fatalf("exit %d, stderr %q; want exit 1 and the output named", run.code, errOut)
		}
		// The final counters, from the log line written after the flush.
		var m []string
		for _, l := range lostLine.FindAllStringSubmatch(errOut, -1) {
			if l[1] == syslogURL {
				m = l
			}
		}
		if m == nil {
			t.Fatalf("no final counters for %s on stderr: %q", syslogURL, errOut)
		}
		n := func(i int) uint64 { v, _ := strconv.ParseUint(m[i], 10, 64); return v }
		produced, delivered, dropped, rejected, undelivered := n(2), n(3), n(4), n(5), n(6)
		if m[1] != syslogURL || produced != delivered+dropped+rejected+undelivered || dropped == 0 {
			t.Errorf("final counters %q: produced %d != delivered %d + dropped %d + rejected %d + undelivered %d, or nothing dropped",
				m[0], produced, delivered, dropped, rejected, undelivered)
		}
		// The stats event and the final stats event are also written to
		// syslog, after the alerts; so 1 more event produced than alerts.
		if produced != uint64(len(wantLines))+1 {
			t.Errorf("produced %d, want the %d alerts and the stats event", produced, len(wantLines))
		}
		// Every event counted delivered is in syslog (the stats event may
		// be one of them), and none that was dropped: those were never
		// sent. Sent but unconfirmed ones may be there too.
		distinct := alertsOnly(msgs(r.WaitMessages(int(delivered), 10*time.Second)))
		if uint64(len(distinct))+1 < delivered || uint64(len(distinct)) > produced-dropped {
			t.Errorf("syslog holds %d distinct alerts; delivered %d, dropped %d of %d", len(distinct), delivered, dropped, produced)
		}
		checkIncidentSubsequence(t, distinct, wantLines)
		// Standard output has a queue of 5 too and may drop the stats
		// event; when it is there, it counts what was dropped so far.
		if out := strings.TrimSpace(run.stdout.String()); strings.Contains(out[strings.LastIndexByte(out, '\n')+1:], `"event_type":"stats"`) {
			s := finalOutputStats(t, out)[syslogURL]
			if s.Produced != uint64(len(wantLines)) || s.Dropped == 0 || s.Dropped > dropped ||
				s.Delivered+s.Dropped+s.Rejected+uint64(s.Queued) < s.Produced {
				t.Errorf("stats event %+v; want %d produced, drops, and no more than the final %d", s.QueueStats, len(wantLines), dropped)
			}
		}
		t.Logf("queue of 5: produced %d, delivered %d, dropped %d, undelivered %d", produced, delivered, dropped, undelivered)
	})
}

// waitQuiet waits until rsyslog has written nothing more for half a second.
func waitQuiet(r *sinkstest.Rsyslog) {
	for n, still := len(r.Messages()), 0; still < 5; still++ {
		time.Sleep(100 * time.Millisecond)
		if m := len(r.Messages()); m != n {
			n, still = m, 0
		}
	}
}

func msgs(ms []sinkstest.SyslogMessage) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Msg)
	}
	return out
}

// TestGracefulShutdownUnderLoad stops a live sensor with SIGTERM while a
// sender still floods its interface, reflection among the load: it must
// exit 0 with its output file ending on the final stats event, after an
// end alert for the open incident, with no partial line.
func TestGracefulShutdownUnderLoad(t *testing.T) {
	sender, sensor := netnsPair(t, "gs")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	file := filepath.Join(t.TempDir(), "alerts.json")
	proc := startSensor(ctx, t, sensor, "-i", "ew1", "--format", "eve", "--stats", "--stats-interval", "300ms",
		"--home-net", "198.18.0.0/30", "--sensor-name", "graceful", "--output", "file://"+file)

	type result struct {
		sent    uint64
		elapsed time.Duration
		err     error
	}
	sent := make(chan result, 1)
	frames := loadFrames()
	go func() {
		n, d, err := replay(sender, "ew0", frames, 40) // 4 million frames, some seconds
		sent <- result{n, d, err}
	}()
	time.Sleep(time.Second)
	select {
	case res := <-sent:
		t.Fatalf("the sender finished (%d frames in %v, %v) before SIGTERM: no load to stop under", res.sent, res.elapsed, res.err)
	default:
	}
	signalled := time.Now()
	werr := proc.stop()
	stopped := time.Since(signalled)
	var res result
	select {
	case res = <-sent:
		if res.err != nil {
			t.Errorf("sender: %v", res.err)
		}
	case <-ctx.Done():
		t.Fatal("the sender did not finish")
	}
	if werr != nil {
		t.Fatalf("echowatch: %v\nstderr:\n%s", werr, proc.errors())
	}

	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) == 0 || data[len(data)-1] != '\n' {
		t.Fatalf("the output file does not end with a complete line: ...%q", tail(data))
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	lastEnd, lastStats := -1, -1
	for i, l := range lines {
		var ev struct {
			EventType string `json:"event_type"`
			Incident  struct {
				Kind, Phase string
			} `json:"incident"`
			DestIP string `json:"dest_ip"`
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("line %d is not JSON (%v): %q", i+1, err, l)
		}
		switch {
		case ev.EventType == "stats":
			lastStats = i
		case ev.Incident.Kind == "reflection" && ev.Incident.Phase == "end" && ev.DestIP == "198.18.0.2":
			lastEnd = i
		}
	}
	if lastStats != len(lines)-1 {
		t.Errorf("the last line is not a stats event: %s", lines[len(lines)-1])
	}
	if lastEnd < 0 {
		t.Errorf("no reflection end alert for 198.18.0.2 in %d lines", len(lines))
	}
	final := lines[len(lines)-1]
	if decoded := regexpInt(t, final, `"decoder":\{"frames":\d+,"decoded":(\d+)`); decoded < 50_000 {
		t.Errorf("the final stats count %d frames decoded; the sender ran at least a second", decoded)
	}
	t.Logf("sent %d frames in %v; SIGTERM after 1s; echowatch stopped in %v; %d lines written; final stats: %.300s",
		res.sent, res.elapsed.Round(time.Millisecond), stopped.Round(time.Millisecond), len(lines), final)
}

func tail(b []byte) []byte {
	return b[max(0, len(b)-200):]
}

// checkIncidentSubsequence checks that each incident's alerts in got are
// some of its alerts in want, in the same order.
func checkIncidentSubsequence(t *testing.T, got, want []string) {
	t.Helper()
	incident := regexp.MustCompile(`"incident":\{"id":"([^"]+)"`)
	next := map[string]int{} // per incident, how far into want got has come
	byID := map[string][]string{}
	for _, l := range want {
		if id := incident.FindStringSubmatch(l); id != nil {
			byID[id[1]] = append(byID[id[1]], l)
		}
	}
	for _, l := range got {
		id := incident.FindStringSubmatch(l)
		if id == nil {
			t.Errorf("alert without an incident: %s", l)
			continue
		}
		w, i := byID[id[1]], next[id[1]]
		for i < len(w) && w[i] != l {
			i++
		}
		if i == len(w) {
			t.Errorf("incident %s: alert out of order or unknown: %s", id[1], l)
			continue
		}
		next[id[1]] = i + 1
	}
}
