package capture_test

import (
	"encoding/binary"
	"slices"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/echowatch/echowatch/internal/pcaptest"
)

// pcapHeaderCases are minimal classic pcap files, one per byte order and
// timestamp resolution, and two records longer captured than on the wire.
func pcapHeaderCases() []headerCase {
	return []headerCase{{
		name: "pcap little-endian microseconds",
		hex: `
			d4 c3 b2 a1  // magic: microseconds, little-endian
			02 00 04 00  // version 2.4
			00 00 00 00  // time zone offset
			00 00 00 00  // timestamp accuracy
			ff ff 00 00  // snap length 65535
			01 00 00 00  // link type 1, Ethernet
			c0 d2 38 66  // seconds 1715000000
			40 e2 01 00  // microseconds 123456
			04 00 00 00  // captured length 4
			3c 00 00 00  // wire length 60
			de ad be ef  // data`,
		want: "2024-05-06T12:53:20.123456Z cap=4 len=60 lt=1 if=0 deadbeef",
	}, {
		name: "pcap big-endian microseconds",
		hex: `
			a1 b2 c3 d4  // magic: microseconds, big-endian
			00 02 00 04  // version 2.4
			00 00 00 00  // time zone offset
			00 00 00 00  // timestamp accuracy
			00 00 ff ff  // snap length 65535
			00 00 00 65  // link type 101, raw IP
			66 38 d2 c0  // seconds 1715000000
			00 01 e2 40  // microseconds 123456
			00 00 00 04  // captured length 4
			00 00 00 04  // wire length 4
			45 00 00 14  // data`,
		want: "2024-05-06T12:53:20.123456Z cap=4 len=4 lt=101 if=0 45000014",
	}, {
		name: "pcap little-endian nanoseconds",
		hex: `
			4d 3c b2 a1  // magic: nanoseconds, little-endian
			02 00 04 00  // version 2.4
			00 00 00 00  // time zone offset
			00 00 00 00  // timestamp accuracy
			00 00 04 00  // snap length 262144
			e4 00 00 00  // link type 228, IPv4
			c0 d2 38 66  // seconds 1715000000
			15 cd 5b 07  // nanoseconds 123456789
			02 00 00 00  // captured length 2
			02 00 00 00  // wire length 2
			45 00        // data`,
		want: "2024-05-06T12:53:20.123456789Z cap=2 len=2 lt=228 if=0 4500",
	}, {
		name: "pcap big-endian nanoseconds",
		hex: `
			a1 b2 3c 4d  // magic: nanoseconds, big-endian
			00 02 00 04  // version 2.4
			00 00 00 00  // time zone offset
			00 00 00 00  // timestamp accuracy
			00 04 00 00  // snap length 262144
			00 00 00 71  // link type 113, Linux SLL
			66 38 d2 c0  // seconds 1715000000
			07 5b cd 15  // nanoseconds 123456789
			00 00 00 04  // captured length 4
			00 00 05 ea  // wire length 1514
			ca fe f0 0d  // data`,
		want: "2024-05-06T12:53:20.123456789Z cap=4 len=1514 lt=113 if=0 cafef00d",
	}, {
		name: "pcap record longer captured than on the wire, as tcpdump reads it",
		hex: `
			d4 c3 b2 a1  // magic: microseconds, little-endian
			02 00 04 00  // version 2.4
			00 00 00 00  // time zone offset
			00 00 00 00  // timestamp accuracy
			ff ff 00 00  // snap length 65535
			01 00 00 00  // link type 1, Ethernet
			c0 d2 38 66  // seconds 1715000000
			40 e2 01 00  // microseconds 123456
			04 00 00 00  // captured length 4
			02 00 00 00  // wire length 2: taken as 4
			de ad be ef  // data
			c0 d2 38 66  // the next record: seconds 1715000000
			41 e2 01 00  // microseconds 123457
			01 00 00 00  // captured length 1
			01 00 00 00  // wire length 1
			01           // data`,
		want: "2024-05-06T12:53:20.123456Z cap=4 len=4 lt=1 if=0 deadbeef\n" +
			"2024-05-06T12:53:20.123457Z cap=1 len=1 lt=1 if=0 01",
	}, {
		name: "pcap cut in the data of a record longer captured than on the wire",
		hex: `
			d4 c3 b2 a1  // magic: microseconds, little-endian
			02 00 04 00  // version 2.4
			00 00 00 00  // time zone offset
			00 00 00 00  // timestamp accuracy
			ff ff 00 00  // snap length 65535
			01 00 00 00  // link type 1, Ethernet
			c0 d2 38 66  // seconds 1715000000
			40 e2 01 00  // microseconds 123456
			04 00 00 00  // captured length 4
			02 00 00 00  // wire length 2
			de ad        // data, cut`,
		want: "error: capture: FILE: capture file is truncated after 0 packets",
	}}
}

// A classic pcap cut in a record is truncated after the records before
// it; cut between records, it ends cleanly.
func TestPcapTruncated(t *testing.T) {
	recs := testRecs()
	eth := layers.LinkTypeEthernet
	pcap := pcaptest.Pcap(t, true, eth, recs) // records at 24, 24+16+42=82, 82+16+60=158; ends at 175
	gzPcap := pcaptest.Gzip(t, pcap)          // the last 8 bytes are CRC and size
	frames := func(n int) []string { return wantFrames(recs[:n], 1, eth) }
	testCuts(t, []cutCase{
		{"pcap cut in a record header", pcap[:82+10], func(name string) []string {
			return append(frames(1), truncatedAfter(name, 1))
		}},
		{"pcap cut in record data", pcap[:82+16+30], func(name string) []string {
			return append(frames(1), truncatedAfter(name, 1))
		}},
		{"pcap record header, then none of its data", pcap[:158+16], func(name string) []string {
			return append(frames(2), truncatedAfter(name, 2))
		}},
		{"pcap cut between records is a clean end", pcap[:158], func(string) []string {
			return frames(2)
		}},
		{"gzip cut in its trailer", gzPcap[:len(gzPcap)-4], func(name string) []string {
			return append(frames(3), truncatedAfter(name, 3))
		}},
	})
}

// See testDamagedToEnd.
func TestPcapCorruptRecords(t *testing.T) {
	le := binary.LittleEndian
	recs := testRecs()
	pcap := pcaptest.Pcap(t, false, layers.LinkTypeEthernet, recs[:1])
	record := func(b []byte, caplen, wire uint32, data []byte) []byte {
		b = le.AppendUint64(slices.Clone(b), 1715000000) // seconds, microseconds
		b = le.AppendUint32(b, caplen)
		b = le.AppendUint32(b, wire)
		return append(b, data...)
	}
	hugeSnaplen := slices.Clone(pcap)
	le.PutUint32(hugeSnaplen[16:], 0xffffffff)
	big := make([]byte, 300000)
	testDamagedToEnd(t, []damagedCase{
		{"pcap caplen 4 GiB", record(pcap, 0xffffffff, 0xffffffff, nil),
			"damaged record at offset 82: captured length 4294967295 is over 262144; skipped the last 16 bytes: no good record after it"},
		{"pcap caplen above the 256 KiB maximum despite the file's snap length", record(hugeSnaplen, 300000, 300000, big),
			"damaged record at offset 82: captured length 300000 is over 262144; skipped the last 300016 bytes: no good record after it"},
	})
}
