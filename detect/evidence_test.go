package detect

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/echowatch/echowatch/capture"
)

// memEvidence keeps evidence in memory: what the Engine asks of an
// EvidenceWriter, for assertions. Create refuses once limit files exist
// (0: never).
type memEvidence struct {
	files []*memFile
	byID  map[string]*memFile
	max   int // packets per file
	limit int
	// failAt, if positive, makes a file's write of packet failAt fail,
	// as on a full disk: the file keeps the packets before it, and with
	// none it is gone.
	failAt int
}

type memFile struct {
	id     string
	link   layers.LinkType
	pkts   []capture.Packet
	raws   [][]byte
	closed bool
	max    int
	failAt int
	gone   bool
}

func (m *memEvidence) Create(id string, link layers.LinkType) EvidenceFile {
	if m.limit > 0 && len(m.files) >= m.limit {
		return nil
	}
	f := &memFile{id: id, link: link, max: m.max, failAt: m.failAt}
	m.files = append(m.files, f)
	if m.byID == nil {
		m.byID = map[string]*memFile{}
	}
	m.byID[id] = f
	return f
}

func (f *memFile) Name() string {
	if f.gone {
		return ""
	}
	return "mem/" + f.id + ".pcap"
}

func (f *memFile) WritePacket(p *capture.Packet) bool {
	if f.closed {
		panic("write to a closed evidence file " + f.id)
	}
	if len(f.pkts)+1 == f.failAt {
		f.closed, f.gone = true, len(f.pkts) == 0
		return false
	}
	q := *p
	q.Payload = nil
	f.pkts = append(f.pkts, q)
	f.raws = append(f.raws, bytes.Clone(p.Raw))
	if len(f.pkts) >= f.max {
		f.closed = true
		return false
	}
	return true
}

func (f *memFile) Close() { f.closed = true }

// TestEvidenceWriteFails: the alerts name an incident's evidence file
// only while the writer keeps it. A file whose first packet could not be
// written (a full disk) is gone before the start alert, which names none;
// one that failed later keeps what it has, and is named.
func TestEvidenceWriteFails(t *testing.T) {
	for _, failAt := range []int{1, 3} {
		ev := &memEvidence{max: 7, failAt: failAt}
		h := newHarness(t, homeConfig())
		h.eng.KeepEvidence(ev)
		h.feed(reflected(base, 400, 4000, 4, "10.1.0.10")...)
		h.flush()
		if len(h.out.alerts) == 0 {
			t.Fatal("no alert")
		}
		for _, a := range h.out.alerts {
			f := ev.byID[a.ID()]
			if f == nil {
				t.Fatalf("alert of incident %s: no evidence file was made", a.ID())
			}
			if want := f.Name(); a.CaptureFile != want || (want == "") != (failAt == 1) {
				t.Errorf("write %d fails: alert of %s names %q, want %q", failAt, a.ID(), a.CaptureFile, want)
			}
		}
	}
}

// TestEvidenceCount checks that an incident keeps exactly its count when it
// has more packets, and that the file is closed by the writer's refusal
// rather than written on.
func TestEvidenceCount(t *testing.T) {
	ev := &memEvidence{max: 3}
	h := newHarness(t, DefaultConfig())
	h.eng.KeepEvidence(ev)
	t0 := time.Date(2024, 3, 19, 12, 0, 0, 0, time.UTC)
	// A reflection well over the threshold: 4 reflectors, 400 pps for 3 s.
	for i := range 1200 {
		ts := t0.Add(time.Duration(i) * 2500 * time.Microsecond)
		refl := []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"}[i%4]
		h.feed(udp(ts, refl+":7", "198.51.100.9:40000", make([]byte, 64)))
	}
	h.flush()
	if len(ev.files) != 1 {
		t.Fatalf("%d evidence files, want 1", len(ev.files))
	}
	f := ev.files[0]
	if len(f.pkts) != 3 || !f.closed {
		t.Fatalf("evidence holds %d packets (closed %v), want 3 and closed", len(f.pkts), f.closed)
	}
}

// TestEvidenceRefused checks that an incident whose evidence the writer
// refuses is reported without a capture_file: of two reflections, only
// the first gets the writer's one file.
func TestEvidenceRefused(t *testing.T) {
	ev := &memEvidence{max: 10, limit: 1}
	h := newHarness(t, homeConfig())
	h.eng.KeepEvidence(ev)
	h.feed(reflected(base, 400, 4000, 4, "10.1.0.10")...)
	h.feed(reflected(base.Add(20*time.Second), 400, 4000, 4, "10.1.0.11")...)
	h.flush()
	named := map[bool]int{}
	for _, a := range h.out.alerts {
		named[a.CaptureFile != ""]++
	}
	if len(ev.files) != 1 || named[true] == 0 || named[false] == 0 {
		t.Fatalf("files %d, alerts with and without capture_file %v: want one file, and alerts of both", len(ev.files), named)
	}
}

// open counts the files not closed.
func (m *memEvidence) open() int {
	n := 0
	for _, f := range m.files {
		if !f.closed {
			n++
		}
	}
	return n
}

// TestEvidenceEvicted pushes scanners with their evidence open out of a
// table of one: each file closes when its entry goes, before the entry is
// reused for the next scanner, and the Engine lists no more files than
// are open.
func TestEvidenceEvicted(t *testing.T) {
	cfg := homeConfig()
	cfg.Scan.MaxScanners = 1
	ev := &memEvidence{max: 1000}
	h := newHarness(t, cfg)
	h.eng.KeepEvidence(ev)
	probe := func(ts time.Time, src, dst string) *capture.Packet { return udp(ts, src, dst, nil) }
	for i := range 5 {
		scanner := fmt.Sprintf("81.2.0.%d", 60+i)
		h.feed(sweep(base.Add(time.Duration(i)*10*time.Second), scanner, 25, []int{7}, probe)...)
		if got := ev.open(); got != 1 || len(h.eng.r.keeping) != 1 {
			t.Fatalf("scanner %d: %d files open, %d listed; want only the current scanner's", i, got, len(h.eng.r.keeping))
		}
	}
	h.flush()
	if len(ev.files) != 5 || ev.open() != 0 || len(h.eng.r.keeping) != 0 {
		t.Fatalf("%d files, %d open, %d listed after Flush: want 5, 0, 0", len(ev.files), ev.open(), len(h.eng.r.keeping))
	}
	for i, f := range ev.files {
		want := netip.MustParseAddr(fmt.Sprintf("81.2.0.%d", 60+i))
		for _, p := range f.pkts {
			if p.Src != want {
				t.Fatalf("file %d holds a packet of %v, want only %v's", i, p.Src, want)
			}
		}
	}
}

// TestExposedLongFlowNewID checks that a second finding on a flow that
// outlived the rearm time is a new incident, with its own id and evidence.
func TestExposedLongFlowNewID(t *testing.T) {
	cfg := homeConfig()
	cfg.Exposed.Rearm = time.Minute
	ev := &memEvidence{max: 10}
	h := newHarness(t, cfg)
	h.eng.KeepEvidence(ev)
	for i := range 100 { // one echo exchange every 2 s on one flow
		ts := at(time.Duration(i) * 2 * time.Second)
		h.feed(udp(ts, "81.2.0.10:30000", "10.1.0.7:7", []byte("ping")),
			udp(ts.Add(time.Millisecond), "10.1.0.7:7", "81.2.0.10:30000", []byte("ping")))
	}
	h.flush()
	var want []string
	for range 4 { // each open a minute, and a new one at the next answer
		want = append(want, "exposed/start/9000008 UDP/10.1.0.7:7", "exposed/end/9000008 UDP/10.1.0.7:7")
	}
	h.expect(want...)
	ids := map[string]bool{}
	for _, a := range h.out.alerts {
		ids[a.ID()] = true
	}
	if len(ids) != 4 || len(ev.files) != 4 {
		t.Fatalf("%d ids and %d evidence files for 4 findings", len(ids), len(ev.files))
	}
}
