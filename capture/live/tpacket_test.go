//go:build linux

package live

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/echowatch/echowatch/capture"
)

// ringFrame is a frame as the kernel would write it into a block.
type ringFrame struct {
	data       []byte
	wire       uint32 // tp_len
	sec, nsec  uint32
	ifindex    int32
	status     uint32
	tci        uint32
	tpid       uint16
	nextOffset bool // tp_next_offset set, as the kernel does, or 0
}

// fakeRing lays out blocks of frames as TPACKET_V3 does, in ordinary
// memory, for a tpacket whose socket is no socket (-1): a wait for a block
// the kernel has not handed over polls nothing and times out.
func fakeRing(t testing.TB, blockSize int, blocks ...[]ringFrame) *tpacket {
	t.Helper()
	ne := binary.NativeEndian
	tp := &tpacket{fd: -1, mem: make([]byte, blockSize*len(blocks)), poll: time.Millisecond,
		geo: ring{frameSize: 2048, blockSize: blockSize, numBlocks: len(blocks)}}
	for i, frames := range blocks {
		b := tp.mem[i*blockSize : (i+1)*blockSize]
		ne.PutUint32(b[blockStatus:], unix.TP_STATUS_USER)
		ne.PutUint32(b[blockNumPkts:], uint32(len(frames)))
		ne.PutUint32(b[blockFirstPkt:], blockDescSize+16)
		at := blockDescSize + 16
		for j, f := range frames {
			h := b[at:]
			mac := 80 // past tpacket3_hdr and sockaddr_ll, as the kernel puts it
			ne.PutUint32(h[frameSec:], f.sec)
			ne.PutUint32(h[frameNsec:], f.nsec)
			ne.PutUint32(h[frameSnaplen:], uint32(len(f.data)))
			ne.PutUint32(h[frameLen:], f.wire)
			ne.PutUint32(h[frameStatus:], f.status)
			ne.PutUint16(h[frameMac:], uint16(mac))
			ne.PutUint32(h[frameVLANTCI:], f.tci)
			ne.PutUint16(h[frameVLANTPID:], f.tpid)
			ne.PutUint32(h[frameIfindex:], uint32(f.ifindex))
			copy(h[mac:], f.data)
			next := (mac + len(f.data) + 7) &^ 7 // the kernel's V3_ALIGNMENT
			if f.nextOffset && j+1 < len(frames) {
				next += 32 // the kernel may leave room; tp_next_offset says so
				ne.PutUint32(h[frameNextOffset:], uint32(next))
			}
			at += next
		}
	}
	return tp
}

// The reader walks a block's frames by tp_next_offset or, where it is 0,
// by their aligned lengths; puts back the tag the kernel took off, with
// its TPID or 802.1Q's; skips a block retired empty; gives each block
// back to the kernel when it moves past it; and times out when the next
// one is not handed over.
func TestTPacketFrames(t *testing.T) {
	eth := func(b byte, n int) []byte {
		d := bytes.Repeat([]byte{b}, n)
		d[12], d[13] = 0x08, 0x00
		return d
	}
	first := []ringFrame{
		{data: eth(1, 60), wire: 60, sec: 10, nsec: 5, ifindex: 3, nextOffset: true},
		{data: eth(2, 64), wire: 1500, sec: 11, nsec: 6, ifindex: 3,
			status: unix.TP_STATUS_VLAN_VALID | unix.TP_STATUS_VLAN_TPID_VALID, tci: 0xa0c8, tpid: 0x88a8},
		{data: eth(3, 61), wire: 61, sec: 12, ifindex: 4, status: unix.TP_STATUS_VLAN_VALID, tci: 7},
	}
	last := []ringFrame{{data: eth(4, 100), wire: 100, sec: 13, ifindex: 3}}
	tp := fakeRing(t, 4096, first, nil, last)

	type got struct {
		data    []byte
		length  int
		ts      time.Time
		ifindex int
	}
	tagged := func(f ringFrame, tpid, tci uint16) []byte {
		return append(append(bytes.Clone(f.data[:12]), byte(tpid>>8), byte(tpid), byte(tci>>8), byte(tci)), f.data[12:]...)
	}
	want := []got{
		{first[0].data, 60, time.Unix(10, 5), 3},
		{tagged(first[1], 0x88a8, 0xa0c8), 1504, time.Unix(11, 6), 3},
		{tagged(first[2], 0x8100, 7), 65, time.Unix(12, 0), 4},
		{last[0].data, 100, time.Unix(13, 0), 3},
	}
	for i, w := range want {
		if !tp.more() {
			if err := tp.wait(); err != nil {
				t.Fatalf("frame %d: wait: %v", i, err)
			}
		}
		var f capture.Frame
		if err := tp.frame(&f); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if f.CaptureLength != len(f.Data) || f.LinkType != layers.LinkTypeEthernet {
			t.Errorf("frame %d: captured length %d of %d bytes, link type %v", i, f.CaptureLength, len(f.Data), f.LinkType)
		}
		if g := (got{f.Data, f.Length, f.Timestamp, f.Interface}); !bytes.Equal(g.data, w.data) || g.length != w.length || !g.ts.Equal(w.ts) || g.ifindex != w.ifindex {
			t.Errorf("frame %d = %d bytes % x, length %d, %v, interface %d;\nwant %d bytes % x, length %d, %v, interface %d",
				i, len(g.data), g.data, g.length, g.ts, g.ifindex, len(w.data), w.data, w.length, w.ts, w.ifindex)
		}
	}
	if tp.more() {
		t.Fatal("a frame left after the last")
	}
	for i, w := range []uint32{unix.TP_STATUS_KERNEL, unix.TP_STATUS_KERNEL, unix.TP_STATUS_USER} {
		if s := *tp.status(i * 4096); s != w {
			t.Errorf("block %d status %#x, want %#x (given back once read past)", i, s, w)
		}
	}
	// The last block goes back, and the first is the kernel's again.
	if err := tp.wait(); !errors.Is(err, errRingTimeout) {
		t.Errorf("wait past the last block = %v, want a timeout", err)
	}
	if s := *tp.status(2 * 4096); s != unix.TP_STATUS_KERNEL {
		t.Errorf("last block status %#x after the wait, want it given back", s)
	}
}

// A block whose offsets lead outside it is an error, and the next read
// moves on, never outside the ring.
func TestTPacketBadBlock(t *testing.T) {
	ne := binary.NativeEndian
	frame := []ringFrame{{data: make([]byte, 60), wire: 60}, {data: make([]byte, 60), wire: 60}}
	for _, tt := range []struct {
		name    string
		corrupt func(b []byte)
		err     string
	}{
		{"first frame past the block", func(b []byte) { ne.PutUint32(b[blockFirstPkt:], 4090) }, "first frame at 4090"},
		{"first frame inside the descriptor", func(b []byte) { ne.PutUint32(b[blockFirstPkt:], 8) }, "first frame at 8"},
		{"snap length past the block", func(b []byte) { ne.PutUint32(b[blockDescSize+16+frameSnaplen:], 5000) }, "frame of 5000 bytes"},
		{"frame data inside its header", func(b []byte) { ne.PutUint16(b[blockDescSize+16+frameMac:], 4) }, "frame of 60 bytes"},
		{"next frame past the block", func(b []byte) { ne.PutUint32(b[blockDescSize+16+frameNextOffset:], 4080) }, "frame header at"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tp := fakeRing(t, 4096, frame)
			tt.corrupt(tp.mem)
			var err error
			for range 3 {
				if !tp.more() {
					if err = tp.wait(); err != nil {
						break
					}
				}
				if err = tp.frame(new(capture.Frame)); err != nil {
					break
				}
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("error %v, want one with %q", err, tt.err)
			}
			if tp.more() {
				t.Error("frames left to read in a block found bad")
			}
		})
	}
}

// A ring closed while its reader may still hold a frame (the loan lapsed)
// stays readable, as zeros: a late read finds no frame and says so, where
// an unmapped ring would crash. Closed normally, it is unmapped.
func TestTPacketCloseKeepsRingReadable(t *testing.T) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM, 0) // any descriptor to close
	if err != nil {
		t.Fatal(err)
	}
	mem, err := unix.Mmap(-1, 0, 4*4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	for i := range mem {
		mem[i] = 0xff
	}
	tp := &tpacket{fd: fd, mem: mem, geo: ring{frameSize: 2048, blockSize: 4096, numBlocks: 4}, left: 1, next: 64, end: 4096}
	tp.close(true)
	if tp.fd != -1 {
		t.Error("socket left open")
	}
	// The reader that came back late reads its header: zeros, an error.
	if err := tp.frame(new(capture.Frame)); err == nil {
		t.Error("a frame read from a closed ring, want an error")
	}
	for i, b := range mem {
		if b != 0 {
			t.Fatalf("byte %d of the closed ring = %#x, want 0", i, b)
		}
	}
	unix.Munmap(mem)
}

// FuzzTPacketBlock reads the frames of a block of arbitrary bytes: the
// reader may report the block bad, but never reads outside it, never
// panics, and never hands out a frame that does not lie in the block.
func FuzzTPacketBlock(f *testing.F) {
	good := fakeRing(f, 4096, []ringFrame{
		{data: make([]byte, 60), wire: 60, nextOffset: true},
		{data: make([]byte, 64), wire: 64, status: unix.TP_STATUS_VLAN_VALID, tci: 5},
	})
	f.Add(good.mem)
	f.Add(make([]byte, 4096))
	f.Fuzz(func(t *testing.T, b []byte) {
		const size = 4096
		tp := fakeRing(t, size, nil)
		copy(tp.mem, b)
		binary.NativeEndian.PutUint32(tp.mem[blockStatus:], unix.TP_STATUS_USER)
		if err := tp.wait(); err != nil {
			return
		}
		for n := 0; tp.more(); n++ {
			if n > size { // each frame moves on by at least a byte
				t.Fatal("more frames than the block has room for")
			}
			var fr capture.Frame
			if err := tp.frame(&fr); err != nil {
				if tp.more() {
					t.Fatal("frames left after a bad one")
				}
				return
			}
			if fr.CaptureLength != len(fr.Data) || len(fr.Data) > size {
				t.Fatalf("a frame of %d bytes (captured %d) from a block of %d", len(fr.Data), fr.CaptureLength, size)
			}
		}
	})
}
