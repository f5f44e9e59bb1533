package sensor

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/echowatch/echowatch/internal/corpus"
)

// TestCorpusEcho runs the real captures of ../shared/corpus/echo
// (echo and chargen exchanges, nmap and other scans touching the small
// services) through the sensor: they hold exposures and scans, never a
// flood, a loop or a reflection.
func TestCorpusEcho(t *testing.T) {
	dir := corpus.Dir(t, "corpus", "echo")
	files, _ := filepath.Glob(filepath.Join(dir, "*.pcap*"))
	if len(files) == 0 {
		t.Fatal("no captures in " + dir)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			tmp := t.TempDir()
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(tmp, "capture.pcap"), data, 0o644); err != nil {
				t.Fatal(err)
			}
			out := replay{dir: tmp, workers: 1}.run(t)
			for _, line := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
				if len(line) == 0 {
					continue
				}
				s := string(line)
				if !strings.Contains(s, `"kind":"scan"`) && !strings.Contains(s, `"kind":"exposed"`) {
					t.Errorf("unexpected alert: %s", s)
				}
				t.Log(s[strings.Index(s, `"signature":`):strings.Index(s, `,"category"`)], s[strings.Index(s, `"src_ip"`):strings.Index(s, `,"proto"`)])
			}
		})
	}
}
