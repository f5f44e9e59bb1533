package sensor

import (
	"errors"
	"io"
	"sync/atomic"

	"github.com/echowatch/echowatch/capture"
)

// dealer cuts a stream of frames into chunks and deals the chunks to the
// workers in turn, telling the engine, through tickets, in which order to
// take the workers' results back. A split file is cut into regions that
// the workers read themselves (split); any other source is read here and
// its frames copied into the chunks (stream). Live, a chunk for a worker that
// has fallen behind is dropped, not waited for: the frames are counted as
// its queue drops.
type dealer struct {
	in      []chan *chunk
	free    []chan *chunk
	tickets chan int // the worker of each chunk, in order
	live    bool
	next    int // the worker of the next chunk

	queueDrops []atomic.Uint64 // frames dropped, per worker
}

// newDealer returns a dealer to workers workers, each with chunksPerWorker+1
// chunks of its own: up to chunksPerWorker queued to it, one being filled.
func newDealer(workers int, live bool) *dealer {
	d := &dealer{live: live, in: make([]chan *chunk, workers), free: make([]chan *chunk, workers),
		tickets: make(chan int, workers*chunksPerWorker), queueDrops: make([]atomic.Uint64, workers)}
	for i := range workers {
		d.in[i] = make(chan *chunk, chunksPerWorker)
		d.free[i] = newChunks(chunksPerWorker + 1)
	}
	return d
}

// get returns a free chunk of the next worker, or nil when, live, it has
// none.
func (d *dealer) get() *chunk {
	if !d.live {
		return <-d.free[d.next]
	}
	select {
	case c := <-d.free[d.next]:
		return c
	default:
		return nil
	}
}

// deal sends c to the next worker. Live, it drops c if the worker has no
// room for it, and reports false.
func (d *dealer) deal(c *chunk, frames int) bool {
	w := d.next
	d.next = (d.next + 1) % len(d.in)
	if !d.live {
		d.in[w] <- c
		d.tickets <- w
		return true
	}
	select {
	case d.in[w] <- c:
		d.tickets <- w
		return true
	default:
		d.queueDrops[w].Add(uint64(frames))
		c.reset()
		c.home <- c
		return false
	}
}

// close tells the workers and the stage that no chunk follows.
func (d *dealer) close() {
	for _, c := range d.in {
		close(c)
	}
	close(d.tickets)
}

// split deals the regions of a split file until its end, or until stop is
// closed.
func (d *dealer) split(sp *capture.Splitter, stop <-chan struct{}) {
	defer d.close()
	for {
		select {
		case <-stop:
			return
		default:
		}
		reg, err := sp.Next()
		if err == io.EOF {
			return
		}
		c := d.get()
		if err != nil {
			c.err = err // a file that would not open: in its place in order
		} else {
			c.src, c.region = reg, reg
		}
		d.deal(c, 0)
	}
}

// stream reads src, copies its frames into chunks of up to streamChunk frames
// and deals them, until src ends or stop is closed. Live, a chunk also goes
// out after liveLatency of packet time, and when the capture is quiet.
func (d *dealer) stream(src capture.Source, stop <-chan struct{}) {
	defer d.close()
	var f capture.Frame
	var cur *chunk
	var b *copied
	send := func() {
		if cur != nil && (len(b.frames) > 0 || cur.err != nil) {
			d.deal(cur, len(b.frames))
			cur = nil
		}
	}
	defer send()
	for {
		select {
		case <-stop:
			return
		default:
		}
		err := src.ReadFrame(&f)
		switch {
		case errors.Is(err, capture.ErrTimeout):
			send()
			continue
		case errors.Is(err, io.EOF):
			return
		}
		for placed := false; !placed; {
			if cur == nil {
				if cur = d.get(); cur == nil {
					// Live, and the worker is behind: the frame is lost.
					d.queueDrops[d.next].Add(1)
					d.next = (d.next + 1) % len(d.in)
					break
				}
				b = cur.copied()
				cur.first = f.Timestamp
			}
			if err != nil {
				// The engine takes the error in its place in order.
				cur.err = err
				send()
				break
			}
			if placed = b.add(&f); !placed {
				send() // full: the frame starts the next chunk
			}
		}
		if ie := (*capture.InputError)(nil); err != nil && !errors.As(err, &ie) {
			return // a failure or a stop; after a capture file's error, reading goes on
		}
		if cur != nil && (len(b.frames) >= streamChunk || d.live && f.Timestamp.Sub(cur.first) >= liveLatency) {
			send()
		}
	}
}

// streamChunk is the most frames a dealer copies into one chunk.
const streamChunk = 2048

// copied is a chunk's frames, copied by the dealer. It is the chunk's source
// for the worker.
type copied struct {
	frames []capture.Frame
	arena  []byte
	i      int
}

// copiedArena bounds the bytes of one chunk's copies.
const copiedArena = 1 << 20

// copied returns c's copy buffer, emptied, as c's source.
func (c *chunk) copied() *copied {
	b := c.spare
	if b == nil {
		b = &copied{arena: make([]byte, 0, copiedArena)}
		c.spare = b
	}
	b.frames, b.arena, b.i = b.frames[:0], b.arena[:0], 0
	c.src = b
	return b
}

// add copies f into b, and reports false when b has no room left.
func (b *copied) add(f *capture.Frame) bool {
	if len(b.arena)+len(f.Data) > cap(b.arena) {
		if len(b.frames) > 0 {
			return false
		}
		b.arena = make([]byte, 0, len(f.Data)) // a frame larger than the arena
	}
	off := len(b.arena)
	b.arena = append(b.arena, f.Data...)
	c := *f
	c.Data = b.arena[off:len(b.arena):len(b.arena)]
	b.frames = append(b.frames, c)
	return true
}

// ReadFrame gives the next copy; its Data is b's, valid until the chunk's
// next use empties b.
func (b *copied) ReadFrame(f *capture.Frame) error {
	if b.i == len(b.frames) {
		return io.EOF
	}
	*f = b.frames[b.i]
	b.i++
	return nil
}

func (b *copied) Close() error { return nil }

var _ capture.Source = (*copied)(nil)
