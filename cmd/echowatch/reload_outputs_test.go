package main

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/echowatch/echowatch/detect"
	"github.com/echowatch/echowatch/sinks/sinkstest"
)

// reloadHarness is a reloader over file outputs, driven by hand: the test
// is the engine's goroutine, and next is what the next reread returns.
type reloadHarness struct {
	t       *testing.T
	outs    *outputs
	r       *reloader
	log     *syncBuffer
	started config
	next    config
	seq     int
}

func newReloadHarness(t *testing.T, urls ...string) *reloadHarness {
	t.Helper()
	h := &reloadHarness{t: t, log: &syncBuffer{}}
	logger := slog.New(slog.NewTextHandler(h.log, nil))
	h.next = defaultConfig()
	h.next.Read, h.next.Format, h.next.SensorName, h.next.Outputs = []string{"x.pcap"}, "eve", "s", urls
	oo, err := outputOptionsFor(h.next, h.next.Interface != "")
	if err != nil {
		t.Fatal(err)
	}
	if h.outs, err = openOutputs(context.Background(), urls, oo, nil, logger); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.outs.Close() })
	eng, err := detect.New(h.next.Config, h.outs)
	if err != nil {
		t.Fatal(err)
	}
	h.r = newReloader(h.outs, logger)
	h.r.eng = eng
	// As parseArgs's reread does, the file is validated before it is used.
	h.started.reread = func() (config, error) { c := h.next; return c, c.validate() }
	return h
}

// hangup reloads to urls, and to what edit changes; it returns the log
// line the reload ended with, once the engine's goroutine took it.
func (h *reloadHarness) hangup(edit func(*config), urls ...string) string {
	h.t.Helper()
	h.next.Outputs = urls
	if edit != nil {
		edit(&h.next)
	}
	before := len(h.log.String())
	h.r.hangup(context.Background(), h.started)
	select {
	case <-h.r.due():
		h.r.apply()
	default:
	}
	for _, l := range strings.Split(h.log.String()[before:], "\n") {
		if strings.Contains(l, "configuration ") {
			return l
		}
	}
	h.t.Fatalf("no word of the reload:\n%s", h.log.String()[before:])
	return ""
}

// write writes n alerts of incident 1, numbered on from the last.
func (h *reloadHarness) write(n int) {
	for range n {
		h.seq++
		h.outs.WriteAlert(sinkstest.Alert(1, h.seq))
	}
}

func (h *reloadHarness) names() []string {
	var names []string
	for _, s := range h.outs.Stats() {
		names = append(names, s.Name)
	}
	return names
}

// metricOutputs returns the outputs that the metrics of outs name.
func metricOutputs(t *testing.T, outs *outputs) []string {
	t.Helper()
	fams, err := newMetrics(outs, slog.New(slog.DiscardHandler)).reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range fams {
		if f.GetName() != "echowatch_output_delivered_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			names = append(names, m.GetLabel()[0].GetValue())
		}
	}
	slices.Sort(names)
	return names
}

// seqs returns the alert numbers in the file at path, in order.
func seqs(t *testing.T, path string) []int {
	t.Helper()
	var got []int
	for _, l := range readLines(t, path) {
		_, seq, err := sinkstest.Parse(l)
		if err != nil {
			t.Fatalf("%s: %v: %s", path, err, l)
		}
		got = append(got, seq)
	}
	return got
}

func span(from, to int) []int {
	var s []int
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

// TestReloadOutputs swaps file outputs: an output kept goes on with its
// queue (every event, in order), one removed gets only what came before
// and is flushed, one added only what comes after; a new output that
// cannot be opened or a detection setting refused leaves everything as it
// was.
func TestReloadOutputs(t *testing.T) {
	dir := t.TempDir()
	a, b, c := filepath.Join(dir, "a.json"), filepath.Join(dir, "b.json"), filepath.Join(dir, "c.json")
	h := newReloadHarness(t, "file://"+a, "file://"+b)
	// Stats, Lost and Reopen come from other goroutines (metrics, SIGHUP)
	// while the writer swaps: the race detector watches.
	stop := make(chan struct{})
	readers := make(chan struct{})
	go func() {
		defer close(readers)
		for {
			select {
			case <-stop:
				return
			default:
			}
			h.outs.Stats()
			h.outs.Lost()
			h.outs.Reopen()
			time.Sleep(time.Millisecond)
		}
	}()

	h.write(5)
	if got, want := metricOutputs(t, h.outs), []string{"file://" + a, "file://" + b}; !slices.Equal(got, want) {
		t.Fatalf("metrics before the reload name %q, want %q", got, want)
	}
	line := h.hangup(nil, "file://"+b, "file://"+c)
	if !strings.Contains(line, "configuration reloaded") ||
		!strings.Contains(line, "outputs_added=file://"+c) || !strings.Contains(line, "outputs_removed=file://"+a) {
		t.Fatalf("reload: %s", line)
	}
	if got, want := h.names(), []string{"file://" + b, "file://" + c}; !slices.Equal(got, want) {
		t.Fatalf("outputs after the reload: %q, want %q", got, want)
	}
	if got, want := metricOutputs(t, h.outs), []string{"file://" + b, "file://" + c}; !slices.Equal(got, want) {
		t.Fatalf("metrics after the reload name %q, want %q", got, want)
	}
	h.write(3)

	// An output that cannot be opened refuses the file, detection's
	// settings with it: no config is handed to the engine.
	for _, bad := range []struct{ url, msg string }{
		{"file:///nonexistent-dir/x.json", `configuration refused: output file:///nonexistent-dir/x\.json: .*no such file or directory`},
		{"file://host/x.json", `configuration refused: --output file://host/x\.json: want file:///absolute/path`},
	} {
		pps := h.next.Reflection.PPS
		line = h.hangup(func(c *config) { c.Reflection.PPS = 7 }, "file://"+b, bad.url)
		if !regexp.MustCompile(bad.msg).MatchString(line) {
			t.Errorf("bad output %s: %s, want /%s/", bad.url, line, bad.msg)
		}
		h.next.Reflection.PPS = pps
		if h.r.next.Load() != nil {
			t.Errorf("bad output %s: a config was handed over", bad.url)
		}
	}
	// Detection refuses a window change: the output opened for the new
	// file is closed unused, and the old ones stay.
	d := filepath.Join(dir, "d.json")
	line = h.hangup(func(c *config) { c.Reflection.Window = 10 * time.Second }, "file://"+d)
	if !strings.Contains(line, "configuration refused: detect: reflection.window") {
		t.Errorf("detection refusal: %s", line)
	}
	h.next.Reflection.Window = detect.DefaultConfig().Reflection.Window
	if got, want := h.names(), []string{"file://" + b, "file://" + c}; !slices.Equal(got, want) {
		t.Fatalf("outputs after the refusals: %q, want %q", got, want)
	}
	h.write(2)

	close(stop)
	<-readers
	if err := h.outs.Close(); err != nil || h.outs.Lost() != 0 {
		t.Fatalf("Close: %v, lost %d", err, h.outs.Lost())
	}
	for _, f := range []struct {
		path string
		want []int
	}{
		{a, span(1, 5)},
		{b, span(1, 10)},
		{c, span(6, 10)},
		{d, nil},
	} {
		if got := seqs(t, f.path); !slices.Equal(got, f.want) {
			t.Errorf("%s got alerts %v, want %v", filepath.Base(f.path), got, f.want)
		}
	}
	// The queue kept is the one that started: it counts every event.
	for _, s := range h.outs.Stats() {
		if want := uint64(len(seqs(t, strings.TrimPrefix(s.Name, "file://")))); s.Produced != want || s.Delivered != want {
			t.Errorf("%s: %+v, want %d produced and delivered", s.Name, s.QueueStats, want)
		}
	}
	if !strings.Contains(h.log.String(), `msg="output closed" output=file://`+a+" delivered=5") {
		t.Errorf("no word of the removed output's close:\n%s", h.log.String())
	}
}

// TestReloadOutputsOptions: an output whose options change is opened
// afresh, even at the same URL; a reload that changes nothing keeps them
// all; two outputs at one URL are told apart.
func TestReloadOutputsOptions(t *testing.T) {
	dir := t.TempDir()
	a := "file://" + filepath.Join(dir, "a.json")
	h := newReloadHarness(t, a, a)
	h.write(1)
	// Outputs at one path write in no order between them: let both
	// deliver before one goes.
	waitFor(t, func() bool { return len(readLines(t, filepath.Join(dir, "a.json"))) == 2 })
	if line := h.hangup(nil, a, a); !strings.HasSuffix(line, `msg="configuration reloaded"`) {
		t.Errorf("no change: %s", line)
	}
	line := h.hangup(nil, a)
	if !strings.Contains(line, "outputs_removed="+a) || strings.Contains(line, "outputs_added") {
		t.Errorf("one of two removed: %s", line)
	}
	line = h.hangup(func(c *config) { c.OutputOptions.FlushTimeout = time.Second }, a)
	if !strings.Contains(line, "outputs_added="+a) || !strings.Contains(line, "outputs_removed="+a) {
		t.Errorf("flush timeout changed: %s", line)
	}
	// Options that are not a file's leave it as it was.
	if line := h.hangup(func(c *config) { c.OutputOptions.Syslog.Format = "cef"; c.SensorName = "t" }, a); strings.Contains(line, "outputs_") {
		t.Errorf("syslog options changed: %s", line)
	}
	h.write(1)
	if err := h.outs.Close(); err != nil {
		t.Fatal(err)
	}
	if got := seqs(t, filepath.Join(dir, "a.json")); !slices.Equal(got, []int{1, 1, 2}) {
		t.Errorf("a.json got %v, want 1 twice (two outputs), then 2", got)
	}
}

// TestReloadOutputsSuperseded sends SIGHUP twice before the engine takes
// the first file: a later file wins, and a later bad file leaves the
// earlier good one to be applied.
func TestReloadOutputsSuperseded(t *testing.T) {
	dir := t.TempDir()
	a, b, c := "file://"+filepath.Join(dir, "a.json"), "file://"+filepath.Join(dir, "b.json"), "file://"+filepath.Join(dir, "c.json")
	h := newReloadHarness(t, a)
	hup := func(urls ...string) {
		h.next.Outputs = urls
		h.r.hangup(context.Background(), h.started)
	}
	hup(b)
	hup(c)
	h.r.apply()
	if got := h.names(); !slices.Equal(got, []string{c}) {
		t.Errorf("two good files: outputs %q, want the later one's", got)
	}
	hup(a)
	hup(a, "file:///nonexistent-dir/x.json")
	h.r.apply()
	if got := h.names(); !slices.Equal(got, []string{a}) {
		t.Errorf("a good file, then a bad one: outputs %q, want the good one's", got)
	}
	if err := h.outs.Close(); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(h.log.String(), "configuration reloaded"); n != 2 {
		t.Errorf("%d reloads logged, want 2:\n%s", n, h.log.String())
	}
}

// TestReloadOutputsLossCounted: what an output removed by a reload could
// not deliver counts at Close, as it would had it stayed.
func TestReloadOutputsLossCounted(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := "syslog+tcp://" + l.Addr().String()
	l.Close() // nothing listens there now
	file := "file://" + filepath.Join(t.TempDir(), "a.json")
	h := newReloadHarness(t, file, gone)
	h.next.OutputOptions.FlushTimeout = 100 * time.Millisecond
	// The harness opened them with the default flush timeout: reopen both
	// with the short one.
	h.hangup(nil, file, gone)
	h.write(3)
	if line := h.hangup(nil, file); !strings.Contains(line, "outputs_removed="+gone) {
		t.Fatalf("reload: %s", line)
	}
	err = h.outs.Close()
	if err == nil || !strings.Contains(err.Error(), gone+": 3 of 3 events not delivered") || h.outs.Lost() != 3 {
		t.Fatalf("Close: %v, lost %d", err, h.outs.Lost())
	}
	if !strings.Contains(h.log.String(), `msg="output lost events" output=`+gone) {
		t.Errorf("no word of the loss:\n%s", h.log.String())
	}
	for _, s := range h.outs.Stats() {
		if s.Name == gone {
			t.Errorf("a removed output still in the stats: %+v", s)
		}
	}
}

// TestReloadOutputsKafkaTopic: a Kafka output whose topic does not exist
// refuses the file, naming it.
func TestReloadOutputsKafkaTopic(t *testing.T) {
	k := sinkstest.StartKafka(t, "alerts", 1)
	file := "file://" + filepath.Join(t.TempDir(), "a.json")
	h := newReloadHarness(t, file)
	line := h.hangup(nil, file, "kafka://"+k.Addr+"/missing")
	if !strings.Contains(line, "configuration refused: output kafka://"+k.Addr+`/missing: `) ||
		!strings.Contains(line, `topic \"missing\" does not exist`) {
		t.Errorf("missing topic: %s", line)
	}
	line = h.hangup(nil, file, "kafka://"+k.Addr+"/alerts")
	if !strings.Contains(line, "outputs_added=kafka://"+k.Addr+"/alerts") {
		t.Errorf("existing topic: %s", line)
	}
	h.write(2)
	if err := h.outs.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(k.Records(2, 5*time.Second)); n != 2 {
		t.Errorf("kafka got %d alerts, want 2", n)
	}
}

// TestLiveReloadOutputs changes a live sensor's outputs with SIGHUP: the
// alerts go to the new file and no longer to the old one; a file naming an
// output that cannot be opened is refused and the sensor writes on.
func TestLiveReloadOutputs(t *testing.T) {
	sender, sensor := netnsPair(t, "ro")
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.json"), filepath.Join(dir, "b.json")
	conf := filepath.Join(dir, "echowatch.yaml")
	if err := os.WriteFile(conf, []byte("home_net: [198.18.0.0/30]\nend_after: 1s\noutputs: [file://"+a+"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	s := startSensor(ctx, t, sensor, "-i", "ew1", "--config", conf, "--sensor-name", "e2e")
	phases := func(path, phase string) int {
		return strings.Count(strings.Join(readLines(t, path), "\n"), `"kind":"reflection","phase":"`+phase+`"`)
	}
	// attack sends a second of echo replies toward 198.18.0.2 and waits
	// for the incident it makes to start and end in the file at path.
	attack := func(path string) {
		t.Helper()
		starts, ends := phases(path, "start"), phases(path, "end")
		sendReplies(ctx, t, sender)
		waitFor(t, func() bool { return phases(path, "start") > starts && phases(path, "end") > ends })
	}
	hangup := func(outputs string, want ...string) {
		t.Helper()
		// Each attack is an incident of its own: the one before ended a
		// second after its last packet.
		news := s.reload(t, conf, "home_net: [198.18.0.0/30]\nend_after: 1s\noutputs: "+outputs+"\n")
		for _, w := range want {
			if !strings.Contains(news, w) {
				t.Fatalf("after SIGHUP: %s, want %s", news, w)
			}
		}
	}

	attack(a)
	hangup("[file://"+b+"]", `msg="configuration reloaded"`, "outputs_added=file://"+b+" outputs_removed=file://"+a)
	// Once the removed output is closed, nothing more comes to it.
	closed := regexp.MustCompile(`msg="output closed" .*output=file://` + regexp.QuoteMeta(a))
	waitFor(t, func() bool { return closed.MatchString(s.errors()) })
	inA := len(readLines(t, a))
	attack(b)
	hangup("[file://"+b+", file:///nonexistent-dir/x.json]",
		"configuration refused: output file:///nonexistent-dir/x.json: sinks/file: open /nonexistent-dir/x.json: no such file or directory")
	attack(b)
	if err := s.stop(); err != nil {
		t.Fatalf("echowatch: %v\nstderr:\n%s", err, s.errors())
	}
	if n := len(readLines(t, a)); n != inA {
		t.Errorf("the removed output got %d alerts after its close", n-inA)
	}
	if n := phases(b, "start"); n != 2 {
		t.Errorf("%d incidents started in the new output, want 2", n)
	}
	t.Logf("stderr:\n%s", s.errors())
}
