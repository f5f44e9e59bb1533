package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/echowatch/echowatch/detect"
	"github.com/echowatch/echowatch/sinks"
	"github.com/echowatch/echowatch/sinks/sinkstest"
)

// reloadHarness is a reloader over file outputs, driven by hand: the test
// is the engine's goroutine, and next is what the next reread returns.
type reloadHarness struct {
	t       *testing.T
	outs    *sinks.Fanout
	r       *reloader
	log     *syncBuffer
	started config
	next    config
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
	case <-h.r.Due():
		h.r.Apply()
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

// metricOutputs returns the outputs that the metrics of outs name.
func metricOutputs(t *testing.T, outs *sinks.Fanout) []string {
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

// TestReloadOutputs: the reloader swaps the outputs with the file's and
// says what it added and removed, and the metrics follow; a file naming an
// output that cannot be opened, or a detection setting refused, leaves
// everything as it was, and says why in the words of the command line.
// (How the outputs swap, sinks' TestFanoutSwap tells.)
func TestReloadOutputs(t *testing.T) {
	dir := t.TempDir()
	a, b, c := "file://"+filepath.Join(dir, "a.json"), "file://"+filepath.Join(dir, "b.json"), "file://"+filepath.Join(dir, "c.json")
	h := newReloadHarness(t, a, b)
	if got, want := metricOutputs(t, h.outs), []string{a, b}; !slices.Equal(got, want) {
		t.Fatalf("metrics before the reload name %q, want %q", got, want)
	}
	line := h.hangup(nil, b, c)
	if !strings.HasSuffix(line, `msg="configuration reloaded" outputs_added=`+c+" outputs_removed="+a) {
		t.Fatalf("reload: %s", line)
	}
	if got, want := metricOutputs(t, h.outs), []string{b, c}; !slices.Equal(got, want) {
		t.Fatalf("metrics after the reload name %q, want %q", got, want)
	}

	// An output that cannot be opened refuses the file, detection's
	// settings with it: no config is handed to the engine.
	for _, bad := range []struct{ url, msg string }{
		{"file:///nonexistent-dir/x.json", `msg="configuration refused: output file:///nonexistent-dir/x.json: sinks/file: open /nonexistent-dir/x.json: no such file or directory"`},
		{"file://host/x.json", `msg="configuration refused: --output file://host/x.json: want file:///absolute/path"`},
	} {
		pps := h.next.Reflection.PPS
		line = h.hangup(func(c *config) { c.Reflection.PPS = 7 }, b, bad.url)
		if !strings.HasSuffix(line, bad.msg) {
			t.Errorf("bad output %s: %s, want %s", bad.url, line, bad.msg)
		}
		h.next.Reflection.PPS = pps
		if h.r.next.Load() != nil {
			t.Errorf("bad output %s: a config was handed over", bad.url)
		}
	}
	// Detection refuses a window change: the output opened for the new
	// file is closed unused, and the old ones stay.
	d := "file://" + filepath.Join(dir, "d.json")
	line = h.hangup(func(c *config) { c.Reflection.Window = 10 * time.Second }, d)
	if !strings.Contains(line, "configuration refused: detect: reflection.window") {
		t.Errorf("detection refusal: %s", line)
	}
	h.next.Reflection.Window = detect.DefaultConfig().Reflection.Window
	if got, want := metricOutputs(t, h.outs), []string{b, c}; !slices.Equal(got, want) {
		t.Fatalf("outputs after the refusals: %q, want %q", got, want)
	}
	for i := range 3 {
		h.outs.WriteAlert(sinkstest.Alert(1, i))
	}
	if err := h.outs.Close(); err != nil || h.outs.Lost() != 0 {
		t.Fatalf("Close: %v, lost %d", err, h.outs.Lost())
	}
	if n := len(readLines(t, strings.TrimPrefix(d, "file://"))); n != 0 {
		t.Errorf("the output of a refused file got %d alerts", n)
	}
}

// TestReloadOutputsOptions: the file's output_options reach the outputs
// on a reload: one whose options change is opened afresh, and a reload
// that changes nothing keeps them all.
func TestReloadOutputsOptions(t *testing.T) {
	a := "file://" + filepath.Join(t.TempDir(), "a.json")
	h := newReloadHarness(t, a)
	if line := h.hangup(nil, a); !strings.HasSuffix(line, `msg="configuration reloaded"`) {
		t.Errorf("no change: %s", line)
	}
	line := h.hangup(func(c *config) { c.OutputOptions.FlushTimeout = time.Second }, a)
	if !strings.HasSuffix(line, "outputs_added="+a+" outputs_removed="+a) {
		t.Errorf("flush timeout changed: %s", line)
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
	h.r.Apply()
	if got := metricOutputs(t, h.outs); !slices.Equal(got, []string{c}) {
		t.Errorf("two good files: outputs %q, want the later one's", got)
	}
	hup(a)
	hup(a, "file:///nonexistent-dir/x.json")
	h.r.Apply()
	if got := metricOutputs(t, h.outs); !slices.Equal(got, []string{a}) {
		t.Errorf("a good file, then a bad one: outputs %q, want the good one's", got)
	}
	if err := h.outs.Close(); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(h.log.String(), "configuration reloaded"); n != 2 {
		t.Errorf("%d reloads logged, want 2:\n%s", n, h.log.String())
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
		sinkstest.WaitFor(t, func() bool { return phases(path, "start") > starts && phases(path, "end") > ends })
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
	sinkstest.WaitFor(t, func() bool { return closed.MatchString(s.errors()) })
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
