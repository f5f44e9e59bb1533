package capture_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/internal/pcaptest"
)

func FuzzFileReader(f *testing.F) {
	le := binary.LittleEndian
	for _, tc := range headerCases() {
		f.Add(hexBytes(f, tc.hex)) // one minimal valid file per header variant
	}
	recs := testRecs()
	eth, sll := layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL
	pcap := pcaptest.Pcap(f, true, eth, recs)
	ng := pcaptest.Pcapng(f, recs, eth, sll)
	f.Add(pcap)                        // pcap, 3 packets, one cut by the snap length
	f.Add(ng)                          // pcapng, two interfaces of different link types
	f.Add(pcaptest.Gzip(f, pcap))      // gzip pcap
	f.Add(pcaptest.Gzip(f, ng))        // gzip pcapng
	f.Add(pcap[:20])                   // pcap header cut
	f.Add(pcap[:100])                  // pcap cut in the second record
	f.Add(pcap[:158+16])               // pcap record header, then none of its data
	f.Add(ng[:len(ng)-3])              // pcapng cut in the last block
	f.Add(pcaptest.Gzip(f, pcap)[:60]) // gzip stream cut
	f.Add([]byte{})                    // empty
	f.Add([]byte("GET / HTTP/1.1\r\n"))

	huge := le.AppendUint32(slices.Clone(pcap[:24]), 0) // pcap record with a 4 GiB caplen
	huge = le.AppendUint32(huge, 0)
	huge = le.AppendUint32(huge, 0xffffffff)
	f.Add(le.AppendUint32(huge, 0xffffffff))

	shb := pcaptest.Pcapng(f, nil, eth)
	short := le.AppendUint32(slices.Clone(shb), 6) // pcapng block length 4: shorter than its header
	f.Add(le.AppendUint32(short, 4))
	epb := le.AppendUint32(slices.Clone(shb), 6) // pcapng packet whose caplen exceeds its block
	epb = le.AppendUint32(epb, 36)
	epb = le.AppendUint32(epb, 0)
	epb = le.AppendUint64(epb, 0)
	epb = le.AppendUint32(epb, 0x7fffffff)
	f.Add(le.AppendUint32(epb, 0x7fffffff))
	dsb := le.AppendUint32(slices.Clone(shb), 0x0a) // decryption secrets block, 4 GiB secrets
	dsb = le.AppendUint32(dsb, 32)
	dsb = le.AppendUint32(dsb, 0x544c534b)
	f.Add(le.AppendUint32(dsb, 0xffffffff))
	spb := le.AppendUint32(slices.Clone(shb), 3) // simple packet block
	spb = le.AppendUint32(spb, 20)
	spb = le.AppendUint32(spb, 4)
	spb = append(spb, 0xde, 0xad, 0xbe, 0xef)
	f.Add(le.AppendUint32(spb, 20))

	// Damage the reader skips: a block length of 0xfffffff0, a trailing
	// length that differs, a block of no known type, garbage between two
	// blocks; a pcap record of 4 GiB between good ones, zeroed records.
	ngBad := func(off int, v uint32) []byte {
		b := slices.Clone(ng)
		le.PutUint32(b[off:], v)
		return b
	}
	epb1 := len(pcaptest.Pcapng(f, nil, eth, sll)) // the first packet block
	f.Add(ngBad(epb1+4, 0xfffffff0))
	f.Add(ngBad(len(pcaptest.Pcapng(f, recs[:2], eth, sll))-4, 0x40))
	f.Add(ngBad(epb1, 0x46))
	f.Add(slices.Concat(ng[:epb1], bytes.Repeat([]byte{0x5a}, 13), ng[epb1:]))
	pcapBad := slices.Clone(pcap)
	le.PutUint32(pcapBad[82+8:], 0xffffffff)
	f.Add(pcapBad)
	pcapZeroed := slices.Clone(pcap)
	clear(pcapZeroed[82:158])
	f.Add(pcapZeroed)

	f.Fuzz(func(t *testing.T, data []byte) {
		src, err := capture.OpenFiles([]string{"-"}, bytes.NewReader(data))
		if err != nil {
			t.Fatal(err) // stdin is only checked when read
		}
		defer src.Close()
		var fr capture.Frame
		for range 1_000_000 {
			err := src.ReadFrame(&fr)
			if err == io.EOF {
				return
			}
			if err != nil {
				if !strings.HasPrefix(err.Error(), "capture: ") || !strings.Contains(err.Error(), "stdin") {
					t.Errorf("error does not name the component and input: %v", err)
				}
				continue
			}
			if fr.CaptureLength != len(fr.Data) || fr.Length < fr.CaptureLength || len(fr.Data) > 262144 {
				t.Fatalf("bad frame: CaptureLength %d, Length %d, len(Data) %d", fr.CaptureLength, fr.Length, len(fr.Data))
			}
		}
		t.Fatal("no io.EOF after a million reads")
	})
}
