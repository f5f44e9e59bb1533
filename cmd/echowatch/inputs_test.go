package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// reflectionIn is a capture of an inbound echo reflection, with the
// config it is run with.
var reflectionIn = []string{"-r", pcap("reflection-in/capture.pcap"), "--config", pcap("reflection-in/config.yaml")}

// pcapFrames is what a classic pcap holds.
type pcapFrames struct {
	link    layers.LinkType
	snaplen uint32
	cis     []gopacket.CaptureInfo
	datas   [][]byte
}

// readFrames reads the frames of a classic pcap.
func readFrames(t *testing.T, path string) pcapFrames {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	p := pcapFrames{link: r.LinkType(), snaplen: r.Snaplen()}
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return p
		}
		if err != nil {
			t.Fatal(err)
		}
		p.cis, p.datas = append(p.cis, ci), append(p.datas, data)
	}
}

// asPcapng writes the frames of a classic pcap as a pcapng file, and
// returns it with the offset of its (after+1)th packet block.
func asPcapng(t *testing.T, path string, lt layers.LinkType, after int) (data []byte, at int) {
	t.Helper()
	p := readFrames(t, path)
	cis, datas := p.cis, p.datas
	var b bytes.Buffer
	w, err := pcapgo.NewNgWriterInterface(&b, pcapgo.NgInterface{LinkType: lt, SnapLength: 262144, TimestampResolution: 9},
		pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: "echowatch test"}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range cis {
		if i == after {
			w.Flush()
			at = b.Len()
		}
		if err := w.WritePacket(cis[i], datas[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), at
}

func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// A pcapng file whose only interface has a link type echowatch does not
// decode is an error, as a classic pcap of that link type is: nothing in
// it can be seen. One that mixes it with Ethernet is read, and says what
// it did not decode.
func TestPcapngLinkTypes(t *testing.T) {
	p := readFrames(t, pcap("reflection-in/capture.pcap"))
	cis, datas := p.cis, p.datas
	write := func(name string, lts ...layers.LinkType) string {
		var b bytes.Buffer
		w, err := pcapgo.NewNgWriterInterface(&b, pcapgo.NgInterface{LinkType: lts[0], TimestampResolution: 9}, pcapgo.NgWriterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, lt := range lts[1:] {
			w.AddInterface(pcapgo.NgInterface{LinkType: lt, TimestampResolution: 9})
		}
		for i := range cis {
			ci := cis[i]
			ci.InterfaceIndex = i % len(lts)
			w.WritePacket(ci, datas[i])
		}
		w.Flush()
		return writeTemp(t, name, b.Bytes())
	}
	blind := write("usb.pcapng", 189)
	code, out, errOut := runMain(t, nil, "-r", blind, "--format", "eve")
	if code != 1 || strings.Contains(out, `"event_type":"alert"`) ||
		!regexp.MustCompile(`(?m)^echowatch: .*usb\.pcapng: unsupported link type 189: echowatch decodes Ethernet`).MatchString(errOut) ||
		!regexp.MustCompile(`(?m)^echowatch: capture: not read whole: .*usb\.pcapng$`).MatchString(errOut) {
		t.Errorf("a pcapng of link type 189 only: exit %d, stderr:\n%s", code, errOut)
	}

	mixed := write("mixed.pcapng", layers.LinkTypeEthernet, 189)
	code, _, errOut = runMain(t, nil, "-r", mixed, "--format", "eve")
	if code != 0 || !regexp.MustCompile(`^echowatch: warning: capture: .*mixed\.pcapng: 2100 packets of link type 189 not decoded\n$`).MatchString(errOut) {
		t.Errorf("a pcapng of Ethernet and link type 189: exit %d, stderr:\n%s", code, errOut)
	}

	two := write("two.pcapng", layers.LinkTypeEthernet, 189, 147)
	code, _, errOut = runMain(t, nil, "-r", two, "--format", "eve")
	if code != 0 || !regexp.MustCompile(`^echowatch: warning: capture: .*two\.pcapng: 2800 packets of link types 189, 147 not decoded\n$`).MatchString(errOut) {
		t.Errorf("a pcapng of Ethernet and link types 189 and 147: exit %d, stderr:\n%s", code, errOut)
	}

	// Cut mid-block, as a capture copied while being written is: the
	// same, and the cut is a warning besides.
	cut := func(path string) string {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return writeTemp(t, "cut-"+filepath.Base(path), data[:len(data)-10])
	}
	code, out, errOut = runMain(t, nil, "-r", cut(blind), "--format", "eve")
	if code != 1 || strings.Contains(out, `"event_type":"alert"`) ||
		!regexp.MustCompile(`(?m)^echowatch: warning: capture: .*cut-usb\.pcapng: capture file is truncated after 4199 packets`).MatchString(errOut) ||
		!regexp.MustCompile(`(?m)^echowatch: warning: capture: read .*cut-usb\.pcapng: unsupported link type 189: echowatch decodes Ethernet`).MatchString(errOut) ||
		!regexp.MustCompile(`(?m)^echowatch: capture: not read whole: .*cut-usb\.pcapng$`).MatchString(errOut) {
		t.Errorf("a pcapng of link type 189 only, cut short: exit %d, stderr:\n%s", code, errOut)
	}
	code, _, errOut = runMain(t, nil, "-r", cut(mixed), "--format", "eve")
	if code != 0 || !regexp.MustCompile(`^echowatch: warning: capture: .*cut-mixed\.pcapng: capture file is truncated after 4199 packets.*\n`+
		`echowatch: warning: capture: .*cut-mixed\.pcapng: 2099 packets of link type 189 not decoded\n$`).MatchString(errOut) {
		t.Errorf("a pcapng of Ethernet and link type 189, cut short: exit %d, stderr:\n%s", code, errOut)
	}
}

// A damaged pcapng block before a reflection: the reader names it, skips
// it, and the reflection is reported as it is from the undamaged file; the
// run exits 1, the file not having been read whole.
func TestDamagedPcapngBlock(t *testing.T) {
	clean, at := asPcapng(t, pcap("reflection-in/capture.pcap"), layers.LinkTypeEthernet, 2)
	damage := binary.LittleEndian.AppendUint32(nil, 6)            // enhanced packet block
	damage = binary.LittleEndian.AppendUint32(damage, 0xfffffff0) // block length
	damage = append(damage, make([]byte, 40)...)                  // and no block
	bad := writeTemp(t, "bad.pcapng", slices.Concat(clean[:at], damage, clean[at:]))
	good := writeTemp(t, "good.pcapng", clean)
	config := []string{"--config", pcap("reflection-in/config.yaml"), "--format", "eve"}

	code, want, errOut := runMain(t, nil, append([]string{"-r", good}, config...)...)
	if code != 0 || !strings.Contains(want, `"kind":"reflection"`) {
		t.Fatalf("the undamaged file: exit %d, stderr %q, alerts:\n%s", code, errOut, want)
	}
	code, got, errOut := runMain(t, nil, append([]string{"-r", bad}, config...)...)
	wantErr := fmt.Sprintf("echowatch: warning: capture: %s: damaged enhanced packet block at offset %d: block length 4294967280 is over 16 MiB; skipped 48 bytes to the next block\n"+
		"echowatch: capture: not read whole: %s (1 damaged stretch, 48 bytes skipped)\n", bad, at, bad)
	if code != 1 || errOut != wantErr {
		t.Errorf("exit %d, stderr:\n%s\nwant exit 1, stderr:\n%s", code, errOut, wantErr)
	}
	if got != want {
		t.Errorf("alerts differ from the undamaged file's:\n%s", firstDiff(want, got))
	}
}

// Several files, one of them damaged beyond repair in its middle and one
// that cannot be read at all: the files after them are still read, their
// alerts reported, and the run exits 1 naming both. With any number of
// workers, the same.
func TestSeveralFilesOneDamaged(t *testing.T) {
	p := readFrames(t, pcap("benign-dns/capture.pcap"))
	cis, datas := p.cis, p.datas
	var b bytes.Buffer
	w := pcapgo.NewWriter(&b)
	w.WriteFileHeader(65535, p.link)
	for i := range 100 {
		w.WritePacket(cis[i], datas[i])
	}
	// The 101st record claims 4 GiB, and nothing after it reads as
	// records.
	bad := binary.LittleEndian.AppendUint64(b.Bytes(), uint64(cis[100].Timestamp.Unix()))
	bad = binary.LittleEndian.AppendUint32(bad, 0xffffffff)
	bad = binary.LittleEndian.AppendUint32(bad, 0xffffffff)
	bad = append(bad, bytes.Repeat([]byte{0xee}, 5000)...)
	badPath := writeTemp(t, "bad.pcap", bad)
	a := pcap("benign-dns/capture.pcap")

	var first, firstErr string
	for _, workers := range []string{"1", "2", "3"} {
		args := append([]string{"-r", a, "-r", badPath, "-r", "-", "--format", "eve", "--workers", workers}, reflectionIn...)
		code, out, errOut := runMain(t, []byte("not a capture\n"), args...)
		if code != 1 || !strings.Contains(out, `"kind":"reflection"`) ||
			!strings.Contains(errOut, badPath+": damaged record at offset ") ||
			!strings.Contains(errOut, "echowatch: warning: capture: read stdin: not a pcap or pcapng file\n") ||
			!strings.HasSuffix(errOut, "echowatch: capture: not read whole: "+badPath+" (1 damaged stretch, 5016 bytes skipped), stdin\n") {
			t.Fatalf("%s workers: exit %d, stderr:\n%s", workers, code, errOut)
		}
		if workers == "1" {
			first, firstErr = out, errOut
			continue
		}
		if out != first || errOut != firstErr {
			t.Errorf("%s workers differ from one:\n%s\nstderr:\n%s", workers, firstDiff(first, out), errOut)
		}
	}
}

// A capture damaged in several places over many regions: with 1, 2 or 3
// workers, the same alerts and the same warnings.
func TestWorkersDamaged(t *testing.T) {
	data, err := os.ReadFile(repeatCapture(t, pcap("demo.pcap"), 8))
	if err != nil {
		t.Fatal(err)
	}
	// Records at their offsets: the header, then each record.
	var offs []int
	for off := 24; off+16 <= len(data); off += 16 + int(binary.LittleEndian.Uint32(data[off+8:])) {
		offs = append(offs, off)
	}
	n := len(offs)
	binary.LittleEndian.PutUint32(data[offs[n/5]+8:], 0xffffffff)
	clear(data[offs[2*n/5]+2 : offs[2*n/5]+3000])
	data = slices.Concat(data[:offs[3*n/5]], bytes.Repeat([]byte{0x42}, 5<<20), data[offs[3*n/5]:])
	path := writeTemp(t, "damaged.pcap", data)

	var first, firstErr string
	for _, workers := range []string{"1", "2", "3"} {
		code, out, errOut := runMain(t, nil, "-r", path, "--format", "eve", "--workers", workers)
		if code != 1 || strings.Count(errOut, "damaged record at offset") != 3 {
			t.Fatalf("%s workers: exit %d, stderr:\n%s", workers, code, errOut)
		}
		if workers == "1" {
			first, firstErr = out, errOut
			continue
		}
		if out != first || errOut != firstErr {
			t.Errorf("%s workers differ from one:\n%s\nstderr:\n%s\none:\n%s", workers, firstDiff(first, out), errOut, firstErr)
		}
	}
}

// stopOnSignal starts echowatch (this test binary) reading args with
// stdin, sends sig once blocked(pid) says it waits for its input (and so
// has its signal handler, installed before any input is opened), and
// fails the test unless it stops cleanly within a few seconds.
func stopOnSignal(t *testing.T, sig syscall.Signal, blocked func(pid int) bool, stdin io.Reader, args ...string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "ECHOWATCH_AS_MAIN=1")
	cmd.Stdin = stdin
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for waited := time.Duration(0); !blocked(cmd.Process.Pid); waited += 5 * time.Millisecond {
		select {
		case err := <-done:
			t.Fatalf("%v: ended before it waited for its input: %v, stderr:\n%s", sig, err, errOut.String())
		case <-time.After(5 * time.Millisecond):
		}
		if waited > 10*time.Second {
			cmd.Process.Kill()
			<-done
			t.Fatalf("%v: not waiting for its input after 10 s; stderr:\n%s", sig, errOut.String())
		}
	}
	cmd.Process.Signal(sig)
	select {
	case err := <-done:
		if err != nil || !strings.Contains(errOut.String(), "stopping on signal") {
			t.Errorf("%v: %v, stderr:\n%s", sig, err, errOut.String())
		}
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Errorf("%v: still running 5 s after the signal; stderr:\n%s", sig, errOut.String())
	}
}

// Reading a named pipe that no one opens for writing, or standard input
// that no one writes to: SIGTERM and SIGINT stop echowatch as they stop a
// live capture.
func TestSignalStopsBlockedRead(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "pipe")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip("no mkfifo:", err)
	}
	t.Cleanup(func() {
		// Release a reader left blocked in open(2), if any.
		if w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
	})
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run("fifo "+sig.String(), func(t *testing.T) {
			stopOnSignal(t, sig, func(pid int) bool { return hasOpen(pid, fifo) }, nil, "-r", fifo, "--format", "eve")
		})
		t.Run("stdin "+sig.String(), func(t *testing.T) {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			defer r.Close()
			stopOnSignal(t, sig, readsPipe, r, "-r", "-", "--format", "eve")
		})
	}
}

// hasOpen reports whether process pid has the file at path open.
func hasOpen(pid int, path string) bool {
	if p, err := filepath.EvalSymlinks(path); err == nil {
		path = p // as the kernel names it
	}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && l == path {
			return true
		}
	}
	return false
}

// readsPipe reports whether a thread of process pid sleeps in a read of a
// pipe: the kernel calls where it waits pipe_read (anon_pipe_read since
// Linux 6.15), or pipe_wait before 5.10.
func readsPipe(pid int) bool {
	wchans, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/wchan", pid))
	for _, path := range wchans {
		if w, err := os.ReadFile(path); err == nil && (bytes.Contains(w, []byte("pipe_read")) || bytes.Contains(w, []byte("pipe_wait"))) {
			return true
		}
	}
	return false
}
