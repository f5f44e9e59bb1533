package sensor

import (
	"math"
	"time"

	"golang.org/x/sys/cpu"

	"github.com/echowatch/echowatch/capture"
)

// chunk is a stretch of consecutive frames that one worker decodes, and
// what it keeps of them for the engine: the packets detection wants, the IP
// fragments (whose ports only a table that sees them all in order can
// give), and the times at which packet time entered a new second. One
// goroutine holds it at a time: the dealer, a worker, then the stage,
// which sends it home.
type chunk struct {
	_      cpu.CacheLinePad // a worker writes it for every packet it keeps
	src    capture.Source   // the frames: a region of a file, or frames a dealer copied
	region *capture.Region  // src, when it is a region: the stage checks it
	recs   []record
	pays   []byte // the records' payloads
	// last is the largest frame time (detect.FrameNanos) of the chunk's
	// latest second, math.MinInt64 for none: the frames of a second the
	// frame before them was in, which no record carries, move detection's
	// clock no further (see detect.Clock). sec is that second, and fed
	// the value of last when a record last carried it.
	last, sec, fed int64
	err            error // what ended the input in this chunk, after its frames
	first          time.Time
	home           chan *chunk // where the chunk goes back when the engine is done
	// more marks a part of a region that a worker sends as it decodes
	// (decodeChunk): another chunk, with the records after it, follows.
	// start is where the region's first record starts.
	more  bool
	start int64
	// counted is what the worker counted of the region's frames (see
	// worker.tally), in the region's last chunk: the stage takes it out
	// of the run's counters when the region is read again or skipped.
	counted workerStats
	spare   *copied // a dealer's copies, kept for the chunk's next use
	_       cpu.CacheLinePad
}

// record is a packet for the engine, or only the passing of time (tick).
type record struct {
	// clock is a frame time (detect.FrameNanos) for detection's clock
	// before the record's packet: the first frame of a second, the
	// largest of a second before the next, or a packet's, as the largest
	// of its second so far.
	clock int64
	tick  bool
	pkt   capture.Packet
	// sum is the packet's capture.DedupSum, when hasSum (Config.Dedup).
	sum    uint64
	hasSum bool
	// pay, npay locate in the chunk's payloads the start of the packet's
	// payload: enough for every payload detection looks at (nmap probes,
	// Wake-on-LAN). raw, nraw locate there the start of its frame, when
	// evidence is kept.
	pay, npay int
	raw, nraw int
}

const recordPayload = 256

// reset empties c for its next use, keeping its buffers.
func (c *chunk) reset() {
	c.src, c.region, c.recs, c.pays, c.err = nil, nil, c.recs[:0], c.pays[:0], nil
	c.last, c.more = math.MinInt64, false
}

// follow has c go on from prev, a part of the same region sent before it:
// its records note time as prev's would have next (see).
func (c *chunk) follow(prev *chunk) { c.last, c.sec, c.fed = prev.last, prev.sec, prev.fed }

// see notes a frame of time ts (detect.FrameNanos) in c. The first frame
// of the chunk, and each frame of another second than the frame before
// it, gets a tick record, after one for the largest time of the second
// before, unless a record carried it: what detect.Clock needs to fare as
// it would with every frame.
func (c *chunk) see(ts int64) {
	sec := ts / int64(time.Second) // FrameNanos is never negative
	if c.last != math.MinInt64 && sec == c.sec {
		c.last = max(c.last, ts)
		return
	}
	if c.last != math.MinInt64 && c.last != c.fed {
		c.add(c.last).tick = true
	}
	c.add(ts).tick = true
	c.last, c.sec, c.fed = ts, sec, ts
}

// add appends a record, reusing the chunk's records from before.
func (c *chunk) add(clock int64) *record {
	if len(c.recs) < cap(c.recs) {
		c.recs = c.recs[:len(c.recs)+1]
	} else {
		c.recs = append(c.recs, record{})
	}
	rec := &c.recs[len(c.recs)-1]
	rec.clock, rec.tick = clock, false
	return rec
}

// addPacket keeps p, the latest frame's, for the engine, with the start of
// its payload and rawBytes of its frame.
func (c *chunk) addPacket(p *capture.Packet, rawBytes int) {
	rec := c.add(c.last)
	c.fed = c.last
	rec.pkt = *p
	rec.pay = len(c.pays)
	c.pays = append(c.pays, p.Payload[:min(len(p.Payload), recordPayload)]...)
	rec.npay = len(c.pays) - rec.pay
	rec.raw = len(c.pays)
	c.pays = append(c.pays, p.Raw[:min(len(p.Raw), rawBytes)]...)
	rec.nraw = len(c.pays) - rec.raw
}

// packet returns the packet of rec, a record of c, with its bytes. They
// are c's: valid until c is reset.
func (c *chunk) packet(rec *record) *capture.Packet {
	p := &rec.pkt
	p.Payload = c.pays[rec.pay : rec.pay+rec.npay : rec.pay+rec.npay]
	p.Raw = c.pays[rec.raw : rec.raw+rec.nraw : rec.raw+rec.nraw]
	return p
}

// Chunks in flight per worker: enough to keep every goroutine busy, few
// enough to bound memory and keep the frames in the CPU's caches.
const chunksPerWorker = 2

// A region of a file (2 MiB) holds tens of thousands of frames: under a
// flood of packets that detection wants, tens of megabytes of records,
// which would leave the caches before the engine's goroutine read them. A
// worker sends them in parts of partRecords records (a few hundred KiB),
// with up to partsPerWorker parts in flight.
const (
	partRecords    = 1024
	partsPerWorker = 4
)

// Live, a worker sends its chunk to the engine when it holds liveBatch
// records, or liveLatency of packet time after its first, or when the
// capture is quiet.
const (
	liveBatch   = 256
	liveLatency = 20 * time.Millisecond
)

// newChunks returns a channel of n free chunks, which is their home.
func newChunks(n int) chan *chunk {
	free := make(chan *chunk, n)
	for range n {
		c := &chunk{home: free}
		c.reset()
		free <- c
	}
	return free
}
