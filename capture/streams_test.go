package capture_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/internal/pcaptest"
)

// Standard input is only checked when the timeline reaches it; the files
// after it are still read.
func TestStdinRefusedWhenReached(t *testing.T) {
	recs := testRecs()
	good := pcaptest.WriteFile(t, t.TempDir(), "good.pcap", pcaptest.Pcap(t, true, layers.LinkTypeEthernet, recs[:1]))
	src, err := capture.OpenFiles([]string{"-", good}, strings.NewReader("hello\n"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	checkEvents(t, readEvents(t, src), []string{
		"error: capture: read stdin: not a pcap or pcapng file",
		wantFrames(recs[:1], 1, layers.LinkTypeEthernet)[0],
	})
	if err := src.FileStats()[0].Err; !errors.Is(err, capture.ErrNotCapture) {
		t.Errorf("FileStats()[0].Err = %v, want ErrNotCapture", err)
	}
}

// A named pipe, such as bash's <(zcat a.pcap.gz), can be read only once:
// OpenFiles must leave its bytes to ReadFrame, as for stdin.
func TestNamedPipe(t *testing.T) {
	mkfifo, err := exec.LookPath("mkfifo")
	if err != nil {
		t.Skip("no mkfifo:", err)
	}
	recs := testRecs()
	fifo := filepath.Join(t.TempDir(), "pipe")
	if out, err := exec.Command(mkfifo, fifo).CombinedOutput(); err != nil {
		t.Fatalf("mkfifo: %v: %s", err, out)
	}
	data := pcaptest.Pcap(t, true, layers.LinkTypeEthernet, recs)
	wrote := make(chan error, 1)
	go func() { wrote <- os.WriteFile(fifo, data, 0) }()

	src, err := capture.OpenFiles([]string{fifo}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	// Had OpenFiles read the header, the writer is gone and ReadFrame
	// waits for another forever.
	read := make(chan []string, 1)
	go func() { read <- readEvents(t, src) }()
	select {
	case got := <-read:
		checkEvents(t, got, wantFrames(recs, 1, layers.LinkTypeEthernet))
	case <-time.After(10 * time.Second):
		t.Fatal("ReadFrame blocked on the pipe for 10 s")
	}
	if err := <-wrote; err != nil {
		t.Errorf("writing to the pipe: %v", err)
	}
}

// repeat is an endless stream of one byte sequence.
type repeat struct {
	b   []byte
	off int
}

func (r *repeat) Read(p []byte) (int, error) {
	for n := 0; n < len(p); {
		c := copy(p[n:], r.b[r.off:])
		n += c
		r.off = (r.off + c) % len(r.b)
	}
	return len(p), nil
}

// Close may come from another goroutine while ReadFrame runs, as on a
// signal: reading then ends with os.ErrClosed, not a panic or a complaint
// about the file.
func TestCloseWhileReading(t *testing.T) {
	recs := manyRecs(20000)
	a := pcaptest.WriteFile(t, t.TempDir(), "a.pcap", pcaptest.Pcap(t, false, layers.LinkTypeEthernet, recs))
	// Then endless frames from stdin, so that the reads end only by Close.
	pcap := pcaptest.Pcap(t, false, layers.LinkTypeEthernet, recs[:1])
	stdin := io.MultiReader(bytes.NewReader(pcap[:24]), &repeat{b: pcap[24:]})
	src, err := capture.OpenFiles([]string{a, "-"}, stdin)
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	ended := make(chan error, 1)
	go func() {
		var f capture.Frame
		for n := 0; ; n++ {
			if n == 100 {
				close(started)
			}
			if err := src.ReadFrame(&f); err != nil {
				ended <- err
				return
			}
		}
	}()
	<-started
	if err := src.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := <-ended; !errors.Is(err, os.ErrClosed) {
		t.Errorf("ReadFrame ended with %v, want os.ErrClosed", err)
	}
	for _, st := range src.FileStats() {
		if st.Err != nil {
			t.Errorf("%s: Err = %v, want none", st.Name, st.Err)
		}
	}
}
