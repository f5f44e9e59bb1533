package capture_test

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/internal/corpus"
)

// corpusResult is what reading one corpus file gave.
type corpusResult struct {
	frames  int
	err     error // the first error, nil for a clean read
	refused bool  // OpenFiles refused the file
}

// readCorpusFile reads one file to its end, failing the test if that takes
// longer than a generous timeout.
func readCorpusFile(t *testing.T, path string) corpusResult {
	t.Helper()
	done := make(chan corpusResult, 1)
	go func() {
		src, err := capture.OpenFiles([]string{path}, nil)
		if err != nil {
			done <- corpusResult{err: err, refused: true}
			return
		}
		defer src.Close()
		var r corpusResult
		var f capture.Frame
		for {
			err := src.ReadFrame(&f)
			if err == io.EOF {
				break
			}
			if err != nil {
				r.err = cmp.Or(r.err, err)
				continue
			}
			r.frames++
		}
		done <- r
	}()
	select {
	case r := <-done:
		return r
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: not read to its end after 30 s", path)
		return corpusResult{}
	}
}

// Every capture of the shared corpus is read or refused, without a panic or
// a hang, and the files we know give exactly what they hold.
func TestCorpus(t *testing.T) {
	root := corpus.Dir(t, "corpus")
	results := map[string]corpusResult{}
	var read, refused, truncated, failed int
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Dir(path) == root { // README.md, MANIFEST.tsv
			return err
		}
		r := readCorpusFile(t, path)
		name, _ := filepath.Rel(root, path)
		results[name] = r
		switch {
		case r.refused:
			refused++
		case r.err == nil:
			read++
		case errors.Is(r.err, capture.ErrTruncated):
			truncated++
		default:
			failed++
		}
		if r.err != nil {
			t.Logf("%s: %d frames, %v", name, r.frames, r.err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d files: %d read, %d refused, %d truncated, %d failed after some frames",
		len(results), read, refused, truncated, failed)

	// Files we know, with the frames they hold and how they end.
	for _, tc := range []struct {
		name   string
		frames int
		err    string // the error after them, "" for none; FILE is the path
	}{
		// Counts from `tcpdump -r FILE | wc -l` (through zcat for .gz).
		{"echo/spicy-wireshark__echo.pcap", 2, ""},
		{"echo/zeek__echo-connections.pcap.gz", 82582, ""},
		{"robust/pcapplusplus__nanosecs_big_endian.pcap", 10, ""},
		// tcpdump stops at this file's second section, of version 2.0,
		// after 1 packet; the pcapng specification says to skip such a
		// section, and pcapgo's own test reads the third one's packet too.
		{"robust/gopacket__pcapgo_tests_le_test901.pcapng", 2, ""},
		{"robust/gopacket__pcapgo_tests_be_test901.pcapng", 2, ""},
		// Ethernet and NULL interfaces in one section: tcpdump refuses
		// the file, the MANIFEST (capinfos) counts 5.
		{"robust/pcapng-test-generator__output_le_advanced_test100.pcapng", 5, ""},
		// SLIP: a link type the decoder does not read, refused up front
		// (TestReadHeaderVariants reads such a record, captured length
		// above wire length, in Ethernet).
		{"robust/libpcap__filter_slip-sliplink_print-oobr.pcap", 0,
			"capture: read FILE: unsupported link type 8: echowatch decodes Ethernet, Linux cooked (SLL, SLL2), raw IP and BSD loopback"},
		{"robust/zeek__radiotap.pcap", 0,
			"capture: read FILE: unsupported link type 127 (RadioTap): echowatch decodes Ethernet, Linux cooked (SLL, SLL2), raw IP and BSD loopback"},
		// Cut mid-record: tcpdump reads 1 and says "truncated dump file".
		{"robust/dpkt__truncated_dns_2.pcap", 1,
			"capture: FILE: capture file is truncated after 1 packets"},
		// tcpdump reads 18 and stops with "invalid packet capture length":
		// 3 bytes are in the way, after which 181 records read on, in
		// time with the ones before.
		{"robust/suricata-verify__smtp-to-comma_10.7.29.101_49898-178.63.41.150_25.pcap", 199,
			"capture: FILE: damaged record at offset 3695: captured length 3925868813 is over 262144; skipped 3 bytes to the next record"},
		// 18 gzip-compressed sections of six link types (tcpdump reads
		// none: it wants one); the 15th section's packets name an
		// interface it does not declare, after 4785 packets: skipped,
		// one by one.
		{"robust/wireshark-wiki__BT_USB_LinCooked_Eth_80211_RT.ntar.gz", 27226,
			"capture: FILE: damaged enhanced packet block at offset 580400: interface 1 is not declared (the section has 1); skipped 264 bytes to the next block"},
		// pcapng files of link types the decoder does not read: their
		// frames, then the error that says so.
		{"robust/tcpdump__vsock-1.pcapng", 10,
			"capture: read FILE: unsupported link type 271: echowatch decodes Ethernet, Linux cooked (SLL, SLL2), raw IP and BSD loopback"},
		{"robust/tcpdump__icmp-cksum-oobr-4.pcapng", 1,
			"capture: read FILE: unsupported link type 9 (PPP): echowatch decodes Ethernet, Linux cooked (SLL, SLL2), raw IP and BSD loopback"},
		// Foreign formats, and a web page named .pcapng.
		{"robust/wireshark-wiki__genbroad.snoop", 0, "capture: read FILE: not a pcap or pcapng file"},
		{"robust/wireshark-wiki__erf-ethernet-example.erf", 0, "capture: read FILE: not a pcap or pcapng file"},
		{"robust/wireshark-wiki__Mixed1.cap", 0, "capture: read FILE: not a pcap or pcapng file"},
		{"robust/sample-captures__IPv6-EH-Hop-by-Hop_html-not-pcapng.pcapng", 0,
			"capture: read FILE: not a pcap or pcapng file"},
	} {
		r, ok := results[tc.name]
		if !ok {
			t.Errorf("%s: not in the corpus", tc.name)
			continue
		}
		var got string
		if r.err != nil {
			got = strings.ReplaceAll(r.err.Error(), filepath.Join(root, tc.name), "FILE")
		}
		if r.frames != tc.frames || got != tc.err {
			t.Errorf("%s: %d frames, error %q; want %d frames, error %q", tc.name, r.frames, got, tc.frames, tc.err)
		}
	}

	// Every file we do not refuse holds as many frames as the MANIFEST
	// says (capinfos, or tcpdump where capinfos failed), but for these:
	differ := map[string]string{
		"robust/gopacket__pcapgo_tests_le_test901.pcapng": "see above",
		"robust/gopacket__pcapgo_tests_be_test901.pcapng": "see above",
		"robust/wireshark-wiki__alp-sample1.pcap":         "the MANIFEST counts tcpdump's 645 lines for 17 packets",
		// tcpdump stops at a damaged record; the reader skips it.
		"robust/suricata-verify__smtp-to-comma_10.7.29.101_49898-178.63.41.150_25.pcap": "see above",
		"robust/suricata-verify__bug-1450-04_tls_DER-incomplete-header.pcap":            "80 bytes in the way after 6 packets, 7 after",
		"robust/suricata-verify__bug-1450-05_tls_DER-incomplete-content.pcap":           "the same",
	}
	manifest, err := os.ReadFile(filepath.Join(root, "MANIFEST.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, line := range strings.Split(string(manifest), "\n")[1:] {
		cols := strings.Split(line, "\t")
		if len(cols) < 6 {
			continue
		}
		var frames int
		if _, err := fmt.Sscan(cols[5], &frames); err != nil {
			continue // "unreadable/0"
		}
		r, ok := results[cols[0]]
		if !ok || r.refused || differ[cols[0]] != "" {
			continue
		}
		checked++
		if r.frames != frames {
			t.Errorf("%s: %d frames, the MANIFEST says %s", cols[0], r.frames, cols[5])
		}
	}
	t.Logf("%d files hold the frames the MANIFEST counts", checked)
}
