package sensor

import (
	"bytes"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/detect"
	"github.com/echowatch/echowatch/sinks"
)

var captureFileField = regexp.MustCompile(`,"capture_file":"[^"]*"`)

// TestEvidence runs every golden case with evidence kept in files (the
// sensor's writer, sinks.Evidence), with one worker and with three, whose
// chunks carry the frames to the stage. On each: the alerts are the golden
// ones but for a capture_file that names the incident's own file; once the
// run is over every packet the writer took is on disk (the run's Flush
// ended every file); a file holds at most its count, beginning with the
// packet at which the incident was reported (the start alert's time) and
// holding only packets of the incident's key.
func TestEvidence(t *testing.T) {
	const perFile = 7
	for _, dir := range goldenCases(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join(dir, "alerts.json"))
			if err != nil {
				t.Fatal(err)
			}
			for _, workers := range goldenWorkers {
				files := t.TempDir()
				ev, err := sinks.NewEvidence(sinks.EvidenceConfig{Dir: files, Packets: perFile, Snaplen: 65535,
					MaxOpen: 256, MaxFiles: 1000, MaxBytes: 1 << 30}, nil)
				if err != nil {
					t.Fatal(err)
				}
				out := &collect{}
				r := replay{dir: dir, workers: workers, out: out, evidence: ev, evidenceSnaplen: 65535}
				r.run(t)
				var lines bytes.Buffer
				for _, l := range out.lines {
					lines.WriteString(captureFileField.ReplaceAllString(l, ""))
					lines.WriteByte('\n')
				}
				if !bytes.Equal(lines.Bytes(), want) {
					t.Fatalf("%d workers: with evidence, alerts differ beyond capture_file:\n%s", workers, lineDiff(string(want), lines.String()))
				}
				_, sc := r.config(t)
				packets, starts := 0, 0
				for i, a := range out.alerts {
					name := filepath.Join(files, a.ID()+".pcap")
					if a.CaptureFile != name || !strings.Contains(out.lines[i], `"capture_file":"`+name+`"`) {
						t.Fatalf("%d workers: alert of %s names %q, want %s", workers, a.ID(), a.CaptureFile, name)
					}
					if a.Phase() != detect.PhaseStart {
						continue
					}
					starts++
					pkts := readEvidence(t, name, sc.Decoder)
					packets += len(pkts)
					if len(pkts) == 0 || len(pkts) > perFile {
						t.Fatalf("%d workers: incident %s: %d packets kept, want 1 to %d", workers, a.ID(), len(pkts), perFile)
					}
					if !pkts[0].Timestamp.Equal(a.Time) {
						t.Errorf("%d workers: incident %s: first packet at %v, reported at %v", workers, a.ID(), pkts[0].Timestamp, a.Time)
					}
					for i, p := range pkts {
						if !ofIncident(a, &p) {
							t.Errorf("%d workers: incident %s (%s): packet %d %v > %v is not its", workers, a.ID(), a.Key(), i, p.SrcAddrPort(), p.DstAddrPort())
						}
					}
				}
				if st := ev.Stats(); st.Files != uint64(starts) || st.Packets != uint64(packets) || st.Errors+st.Refused+st.Skipped > 0 {
					t.Errorf("%d workers: %d files of %d packets on disk after the run; the writer counts %+v", workers, starts, packets, st)
				}
				if err := ev.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// readEvidence returns the packets of an evidence file, decoded as the
// sensor decodes them.
func readEvidence(t *testing.T, name string, dc capture.DecoderConfig) []capture.Packet {
	t.Helper()
	src, err := capture.OpenFiles([]string{name}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dec, err := capture.NewDecoderWith(dc)
	if err != nil {
		t.Fatal(err)
	}
	var pkts []capture.Packet
	var f capture.Frame
	for {
		err := src.ReadFrame(&f)
		if err == io.EOF {
			return pkts
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var p capture.Packet
		if r := dec.Decode(&f, &p); r != capture.DropNone {
			t.Fatalf("%s: a frame that does not decode (%v)", name, r)
		}
		pkts = append(pkts, p)
	}
}

// ofIncident reports whether p belongs to the incident a reports.
func ofIncident(a *detect.Alert, p *capture.Packet) bool {
	in := &a.Incident
	switch in.Kind {
	case detect.KindReflection:
		return in.Victim.Contains(p.Dst) || in.Victim.Contains(p.Src)
	case detect.KindLoop:
		ends := []netip.AddrPort{p.SrcAddrPort(), p.DstAddrPort()}
		return ends[0] == in.Endpoints[0] && ends[1] == in.Endpoints[1] ||
			ends[0] == in.Endpoints[1] && ends[1] == in.Endpoints[0]
	case detect.KindSpoofedFlood:
		return p.Dst == in.Target
	case detect.KindScan:
		return p.Src == a.Src.Addr() && p.Proto == a.Proto
	default:
		return p.SrcAddrPort() == a.Src && p.Proto == a.Proto
	}
}

// collect keeps the alerts, cloned, and their EVE lines.
type collect struct {
	alerts []*detect.Alert
	lines  []string
}

func (c *collect) WriteAlert(a *detect.Alert) {
	c.alerts = append(c.alerts, a.Clone())
	c.lines = append(c.lines, string(a.AppendEVE(nil)))
}
