package sinks_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/echowatch/echowatch/sinks"
	"github.com/echowatch/echowatch/sinks/sinkstest"
)

// TestFanoutWrites writes to standard output and a file at once, and
// checks Reopen after logrotate moved the file.
func TestFanoutWrites(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "alerts.json")
	var stdout bytes.Buffer
	f, err := sinks.OpenFanout(context.Background(), []string{"stdout", "file://" + path}, sinks.DefaultOptions(), &stdout, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		f.WriteAlert(sinkstest.Alert(1, i))
	}
	sinkstest.WaitFor(t, func() bool { return len(fileLines(path)) == 5 })
	// logrotate: move the file away, then SIGHUP.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	f.Reopen()
	for i := 5; i < 8; i++ {
		f.WriteAlert(sinkstest.Alert(1, i))
	}
	if err := f.Close(); err != nil || f.Lost() != 0 {
		t.Fatalf("Close: %v, lost %d", err, f.Lost())
	}
	if err := f.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if old, cur := fileLines(path+".1"), fileLines(path); len(old) != 5 || len(cur) != 3 {
		t.Fatalf("rotated file has %d alerts, new one %d; want 5 and 3", len(old), len(cur))
	}
	if n := strings.Count(stdout.String(), "\n"); n != 8 {
		t.Fatalf("stdout got %d alerts", n)
	}
	for _, s := range f.Stats() {
		if s.Produced != 8 || s.Delivered != 8 {
			t.Errorf("%s: %+v", s.Name, s.QueueStats)
		}
	}
}

// TestFanoutStartupErrors: what only the destination can tell is wrong
// fails the opening, naming the output; a URL that does not parse is a
// URLError.
func TestFanoutStartupErrors(t *testing.T) {
	k := sinkstest.StartKafka(t, "", 0)
	for _, c := range []struct {
		urls []string
		msg  string
	}{
		{[]string{"stdout", "kafka://" + k.Addr + "/missing"},
			"output kafka://" + k.Addr + `/missing: sinks/kafka: topic "missing" does not exist on ` + k.Addr + " (create it, or add auto_create=true to create it)"},
		{[]string{"file:///nonexistent-dir/alerts.json"},
			"output file:///nonexistent-dir/alerts.json: sinks/file: open /nonexistent-dir/alerts.json: no such file or directory"},
		{[]string{"stdout", "file://host/x"}, "file://host/x: want file:///absolute/path"},
	} {
		_, err := sinks.OpenFanout(context.Background(), c.urls, sinks.DefaultOptions(), &bytes.Buffer{}, nil)
		if got := errString(err); got != c.msg {
			t.Errorf("%q:\n got %s\nwant %s", c.urls, got, c.msg)
		}
	}
}

// fanoutHarness is a Fanout whose reloads a test drives, as the
// sensor's reloader does: prepare, then swap or discard.
type fanoutHarness struct {
	t    *testing.T
	f    *sinks.Fanout
	opts sinks.Options
	log  *bytes.Buffer // read once Close returned: the outputs log until then
	seq  int
}

func newFanoutHarness(t *testing.T, urls ...string) *fanoutHarness {
	t.Helper()
	h := &fanoutHarness{t: t, opts: sinks.DefaultOptions(), log: &bytes.Buffer{}}
	var err error
	h.f, err = sinks.OpenFanout(context.Background(), urls, h.opts, nil, slog.New(slog.NewTextHandler(h.log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.f.Close() })
	return h
}

// reload swaps in the outputs of urls and h.opts and returns the names of
// those added and removed.
func (h *fanoutHarness) reload(urls ...string) (added, removed []string) {
	h.t.Helper()
	p, err := h.f.Prepare(context.Background(), urls, h.opts)
	if err != nil {
		h.t.Fatal(err)
	}
	h.f.Swap(p, func(a, r []string) { added, removed = a, r })
	return added, removed
}

// write writes n alerts of incident 1, numbered on from the last.
func (h *fanoutHarness) write(n int) {
	for range n {
		h.seq++
		h.f.WriteAlert(sinkstest.Alert(1, h.seq))
	}
}

func (h *fanoutHarness) names() []string {
	var names []string
	for _, s := range h.f.Stats() {
		names = append(names, s.Name)
	}
	return names
}

// TestFanoutSwap: an output kept goes on with its queue (every event, in
// order), one removed gets only what came before and is flushed, one
// added only what comes after; a plan that fails, or is discarded,
// leaves the outputs as they were. Stats, Lost and Reopen are called from
// another goroutine meanwhile: the race detector watches.
func TestFanoutSwap(t *testing.T) {
	dir := t.TempDir()
	a, b, c, d := "file://"+filepath.Join(dir, "a.json"), "file://"+filepath.Join(dir, "b.json"),
		"file://"+filepath.Join(dir, "c.json"), "file://"+filepath.Join(dir, "d.json")
	h := newFanoutHarness(t, a, b)
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			h.f.Stats()
			h.f.Lost()
			h.f.Reopen()
			time.Sleep(time.Millisecond)
		}
	})

	h.write(5)
	added, removed := h.reload(b, c)
	if !slices.Equal(added, []string{c}) || !slices.Equal(removed, []string{a}) {
		t.Fatalf("added %q, removed %q; want %q and %q", added, removed, c, a)
	}
	if got, want := h.names(), []string{b, c}; !slices.Equal(got, want) {
		t.Fatalf("outputs after the swap: %q, want %q", got, want)
	}
	h.write(3)
	if _, err := h.f.Prepare(context.Background(), []string{b, "file:///nonexistent-dir/x.json"}, h.opts); err == nil {
		t.Error("a plan with an output that cannot be opened was prepared")
	}
	p, err := h.f.Prepare(context.Background(), []string{d}, h.opts)
	if err != nil {
		t.Fatal(err)
	}
	h.f.Discard(p)
	h.f.Swap(p, func(_, _ []string) { t.Error("a discarded plan was swapped in") })
	if got, want := h.names(), []string{b, c}; !slices.Equal(got, want) {
		t.Fatalf("outputs after a failed and a discarded plan: %q, want %q", got, want)
	}
	h.write(2)

	close(stop)
	readers.Wait()
	if err := h.f.Close(); err != nil || h.f.Lost() != 0 {
		t.Fatalf("Close: %v, lost %d", err, h.f.Lost())
	}
	for _, f := range []struct {
		url  string
		want []int
	}{
		{a, span(1, 5)},
		{b, span(1, 10)},
		{c, span(6, 10)},
		{d, nil},
	} {
		if got := seqs(t, f.url); !slices.Equal(got, f.want) {
			t.Errorf("%s got alerts %v, want %v", f.url, got, f.want)
		}
	}
	// The queue kept is the one that started: it counts every event.
	for _, s := range h.f.Stats() {
		if want := uint64(len(seqs(t, s.Name))); s.Produced != want || s.Delivered != want {
			t.Errorf("%s: %+v, want %d produced and delivered", s.Name, s.QueueStats, want)
		}
	}
	if !strings.Contains(h.log.String(), `msg="output closed" output=`+a+" delivered=5") {
		t.Errorf("no word of the removed output's close:\n%s", h.log.String())
	}
}

// TestFanoutKeepsByKey: an output whose options change is opened afresh,
// even at the same URL; options that are not its kind's leave it as it
// was; two outputs at one URL are told apart.
func TestFanoutKeepsByKey(t *testing.T) {
	dir := t.TempDir()
	a := "file://" + filepath.Join(dir, "a.json")
	h := newFanoutHarness(t, a, a)
	h.write(1)
	// Outputs at one path write in no order between them: let both
	// deliver before one goes.
	sinkstest.WaitFor(t, func() bool { return len(seqs(t, a)) == 2 })
	for _, c := range []struct {
		what           string
		edit           func(*sinks.Options)
		urls           []string
		added, removed []string
	}{
		{"nothing changed", nil, []string{a, a}, nil, nil},
		{"one of two removed", nil, []string{a}, nil, []string{a}},
		{"flush timeout changed", func(o *sinks.Options) { o.FlushTimeout = time.Second }, []string{a}, []string{a}, []string{a}},
		{"queue size changed", func(o *sinks.Options) { o.QueueSize = 10 }, []string{a}, []string{a}, []string{a}},
		{"syslog's and Kafka's options changed", func(o *sinks.Options) {
			o.Syslog.Format, o.Kafka.Acks, o.SensorName, o.Format = "cef", "leader", "t", sinks.FormatText
		}, []string{a}, nil, nil},
	} {
		if c.edit != nil {
			c.edit(&h.opts)
		}
		added, removed := h.reload(c.urls...)
		if !slices.Equal(added, c.added) || !slices.Equal(removed, c.removed) {
			t.Errorf("%s: added %q, removed %q; want %q and %q", c.what, added, removed, c.added, c.removed)
		}
	}
	h.write(1)
	if err := h.f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := seqs(t, a); !slices.Equal(got, []int{1, 1, 2}) {
		t.Errorf("a.json got %v, want 1 twice (two outputs), then 2", got)
	}
}

// TestFanoutKeepsByKeyPerKind: the options of an output's own kind are in
// its key: standard output's format, syslog's options, Kafka's, and the
// sensor's name that both of those send.
func TestFanoutKeepsByKeyPerKind(t *testing.T) {
	k := sinkstest.StartKafka(t, "alerts", 1)
	for _, c := range []struct {
		url  string
		edit func(*sinks.Options)
	}{
		{"stdout", func(o *sinks.Options) { o.Format = sinks.FormatText }},
		{"syslog+udp://127.0.0.1:9", func(o *sinks.Options) { o.Syslog.Facility = "local3" }},
		{"syslog+udp://127.0.0.1:9", func(o *sinks.Options) { o.SensorName = "other" }},
		{"kafka://" + k.Addr + "/alerts", func(o *sinks.Options) { o.Kafka.Compression = "gzip" }},
		{"kafka://" + k.Addr + "/alerts", func(o *sinks.Options) { o.SensorName = "other" }},
	} {
		h := newFanoutHarness(t, c.url)
		c.edit(&h.opts)
		if added, removed := h.reload(c.url); len(added) != 1 || len(removed) != 1 {
			t.Errorf("%s: added %q, removed %q; want it opened afresh", c.url, added, removed)
		}
		h.f.Close()
	}
}

// TestFanoutLossCounted: what an output a swap removed could not deliver
// counts at Close, as it would had it stayed, and is logged.
func TestFanoutLossCounted(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := "syslog+tcp://" + l.Addr().String()
	l.Close() // nothing listens there now
	file := "file://" + filepath.Join(t.TempDir(), "a.json")
	h := newFanoutHarness(t, file, gone)
	h.opts.FlushTimeout = 100 * time.Millisecond
	h.reload(file, gone) // reopened with the short flush timeout
	h.write(3)
	if _, removed := h.reload(file); !slices.Equal(removed, []string{gone}) {
		t.Fatalf("removed %q", removed)
	}
	err = h.f.Close()
	if err == nil || !strings.Contains(err.Error(), gone+": 3 of 3 events not delivered") || h.f.Lost() != 3 {
		t.Fatalf("Close: %v, lost %d", err, h.f.Lost())
	}
	if !strings.Contains(h.log.String(), `msg="output lost events" output=`+gone) {
		t.Errorf("no word of the loss:\n%s", h.log.String())
	}
	for _, s := range h.f.Stats() {
		if s.Name == gone {
			t.Errorf("a removed output still in the stats: %+v", s)
		}
	}
}

// TestFanoutPrepareKafkaTopic: a plan with a Kafka output whose topic
// does not exist fails, naming it; one whose topic exists delivers.
func TestFanoutPrepareKafkaTopic(t *testing.T) {
	k := sinkstest.StartKafka(t, "alerts", 1)
	file := "file://" + filepath.Join(t.TempDir(), "a.json")
	h := newFanoutHarness(t, file)
	_, err := h.f.Prepare(context.Background(), []string{file, "kafka://" + k.Addr + "/missing"}, h.opts)
	if err == nil || !strings.HasPrefix(err.Error(), "output kafka://"+k.Addr+`/missing: sinks/kafka: topic "missing" does not exist`) {
		t.Errorf("missing topic: %v", err)
	}
	if added, _ := h.reload(file, "kafka://"+k.Addr+"/alerts"); !slices.Equal(added, []string{"kafka://" + k.Addr + "/alerts"}) {
		t.Errorf("existing topic: added %q", added)
	}
	h.write(2)
	if err := h.f.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(k.Records(2, 5*time.Second)); n != 2 {
		t.Errorf("kafka got %d alerts, want 2", n)
	}
}

// TestFanoutAfterClose: once closed, a plan prepared before changes
// nothing, and no plan can be prepared.
func TestFanoutAfterClose(t *testing.T) {
	dir := t.TempDir()
	a, b := "file://"+filepath.Join(dir, "a.json"), "file://"+filepath.Join(dir, "b.json")
	h := newFanoutHarness(t, a)
	p, err := h.f.Prepare(context.Background(), []string{b}, h.opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.f.Close(); err != nil {
		t.Fatal(err)
	}
	h.f.Swap(p, func(_, _ []string) { t.Error("a plan was swapped in after Close") })
	if got := h.names(); !slices.Equal(got, []string{a}) {
		t.Errorf("outputs after Close: %q", got)
	}
	if _, err := h.f.Prepare(context.Background(), []string{b}, h.opts); err == nil || err.Error() != "outputs: closed" {
		t.Errorf("Prepare after Close: %v", err)
	}
}

// seqs returns the alert numbers in the file of a file:// output, in
// order.
func seqs(t *testing.T, fileURL string) []int {
	t.Helper()
	var got []int
	for _, l := range fileLines(strings.TrimPrefix(fileURL, "file://")) {
		_, seq, err := sinkstest.Parse(l)
		if err != nil {
			t.Fatalf("%s: %v: %s", fileURL, err, l)
		}
		got = append(got, seq)
	}
	return got
}

// fileLines returns the lines of path so far; none if it cannot be read.
func fileLines(path string) []string {
	lines, _ := sinkstest.FileLines(path)
	return lines
}

func span(from, to int) []int {
	var s []int
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}
