package capture_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"runtime"
	"slices"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/echowatch/echowatch/capture"
	"github.com/echowatch/echowatch/internal/pcaptest"
)

// pcapngHeaderCases are minimal pcapng files, one per byte order.
func pcapngHeaderCases() []headerCase {
	return []headerCase{{
		name: "pcapng little-endian",
		hex: `
			0a 0d 0d 0a  // block type: section header
			1c 00 00 00  // block length 28
			4d 3c 2b 1a  // byte-order magic, little-endian
			01 00 00 00  // version 1.0
			ff ff ff ff ff ff ff ff  // section length: unknown
			1c 00 00 00  // block length
			01 00 00 00  // block type: interface description
			14 00 00 00  // block length 20
			01 00 00 00  // link type 1, Ethernet; reserved
			00 00 00 00  // snap length: none
			14 00 00 00  // block length
			06 00 00 00  // block type: enhanced packet
			24 00 00 00  // block length 36
			00 00 00 00  // interface 0
			c8 17 06 00  // timestamp, high word: microseconds (the default
			40 12 cc 8d  // resolution) since 1970, 1715000000123456
			04 00 00 00  // captured length 4
			3c 00 00 00  // wire length 60
			de ad be ef  // data
			24 00 00 00  // block length`,
		want: "2024-05-06T12:53:20.123456Z cap=4 len=60 lt=1 if=0 deadbeef",
	}, {
		name: "pcapng big-endian",
		hex: `
			0a 0d 0d 0a  // block type: section header
			00 00 00 1c  // block length 28
			1a 2b 3c 4d  // byte-order magic, big-endian
			00 01 00 00  // version 1.0
			ff ff ff ff ff ff ff ff  // section length: unknown
			00 00 00 1c  // block length
			00 00 00 01  // block type: interface description
			00 00 00 14  // block length 20
			00 71 00 00  // link type 113, Linux SLL; reserved
			00 00 00 00  // snap length: none
			00 00 00 14  // block length
			00 00 00 06  // block type: enhanced packet
			00 00 00 24  // block length 36
			00 00 00 00  // interface 0
			00 06 17 c8  // timestamp, microseconds since 1970,
			8d cc 12 40  // 1715000000123456
			00 00 00 04  // captured length 4
			00 00 00 04  // wire length 4
			ca fe f0 0d  // data
			00 00 00 24  // block length`,
		want: "2024-05-06T12:53:20.123456Z cap=4 len=4 lt=113 if=0 cafef00d",
	}}
}

// A pcapng cut in a block is truncated after the packets before it.
func TestPcapngTruncated(t *testing.T) {
	recs := testRecs()
	eth, sll := layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL
	ng := pcaptest.Pcapng(t, recs, eth, sll)
	ngOne := len(pcaptest.Pcapng(t, recs[:1], eth, sll)) // end of the first packet block
	frames := func(n int) []string { return wantFrames(recs[:n], 1, eth, sll) }
	testCuts(t, []cutCase{
		{"pcapng cut in a packet block", ng[:ngOne+20], func(name string) []string {
			return append(frames(1), truncatedAfter(name, 1))
		}},
		{"pcapng cut in the last block's trailer", ng[:len(ng)-2], func(name string) []string {
			return append(frames(2), truncatedAfter(name, 2))
		}},
	})
}

// See testDamagedToEnd.
func TestPcapngCorruptRecords(t *testing.T) {
	le := binary.LittleEndian
	ng := pcaptest.Pcapng(t, testRecs()[:1], layers.LinkTypeEthernet)
	epb := func(iface, caplen uint32, data []byte) []byte {
		b := le.AppendUint32(slices.Clone(ng), 6) // enhanced packet block
		b = le.AppendUint32(b, 32+uint32(len(data)))
		b = le.AppendUint32(b, iface)
		b = le.AppendUint64(b, 0) // timestamp
		b = le.AppendUint32(b, caplen)
		b = le.AppendUint32(b, caplen)
		b = append(b, data...)
		return le.AppendUint32(b, 32+uint32(len(data)))
	}
	big := make([]byte, 300000)
	testDamagedToEnd(t, []damagedCase{
		{"pcapng record above 256 KiB", epb(0, 300000, big),
			fmt.Sprintf("damaged enhanced packet block at offset %d: captured length 300000 is over 262144; skipped the last 300032 bytes: no good block after it", len(ng))},
		{"pcapng packet on an undeclared interface", epb(5, 4, make([]byte, 4)),
			fmt.Sprintf("damaged enhanced packet block at offset %d: interface 5 is not declared (the section has 1); skipped the last 36 bytes: no good block after it", len(ng))},
	})
}

// zeros is an endless stream of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// A pcapng packet block that claims 4 GiB, from a stream that has them:
// pcapgo would read them all into memory. The reader refuses a block over
// 16 MiB, and skips the next 20 MiB of zeros, which hold no block, in
// bounded memory, to the packet after them.
func TestHugeRecordFromStream(t *testing.T) {
	le := binary.LittleEndian
	head := pcaptest.Pcapng(t, nil, layers.LinkTypeEthernet)
	at := len(head)
	head = le.AppendUint32(head, 6)          // enhanced packet block
	head = le.AppendUint32(head, 0xfffffff0) // block length
	head = le.AppendUint32(head, 0)          // interface 0
	head = le.AppendUint64(head, 0)          // timestamp
	head = le.AppendUint32(head, 0xffffff00) // captured length
	head = le.AppendUint32(head, 0xffffff00) // wire length
	recs := testRecs()[:1]
	ng := pcaptest.Pcapng(t, recs, layers.LinkTypeEthernet)
	next := ng[len(pcaptest.Pcapng(t, nil, layers.LinkTypeEthernet)):] // its packet block
	const skip = 20 << 20

	src, err := capture.OpenFiles([]string{"-"}, io.MultiReader(bytes.NewReader(head), io.LimitReader(zeros{}, skip), bytes.NewReader(next)))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	got := readEvents(t, src)
	runtime.ReadMemStats(&after)
	want := []string{fmt.Sprintf("error: capture: stdin: damaged enhanced packet block at offset %d: block length 4294967280 is over 16 MiB; skipped %d bytes to the next block", at, 28+skip),
		wantFrames(recs, 1, layers.LinkTypeEthernet)[0]}
	checkEvents(t, got, want)
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<20 {
		t.Errorf("allocated %d MiB to skip 20 MiB", n>>20)
	}
}
