package capture

import (
	"encoding/binary"
	"errors"
)

// sflowWalk reads an sFlow v5 datagram in place, allocating nothing: the
// header, then one flow sample after another. It reads what detection
// needs of a flow sample (its sampling rate, interfaces and raw packet
// header record) exactly as goflow2's sflow decoder does, which a
// differential test (FuzzSFlowWalk) holds it to: wherever goflow2 accepts
// a datagram, the walk accepts it and reads the same samples. goflow2
// makes a value of every sample and record it reads, several allocations
// each; at a million samples a second that is what the collector would
// spend its time on. The walk is also more lenient in one way: a record
// that detection never reads (an extended switch or gateway record, a
// counter sample's records) is passed over, not decoded, so a damaged one
// does not cost the datagram's other samples.
//
// The datagram must have passed sflowFits: every sample and record lies
// within it, as their lengths say.
type sflowWalk struct {
	b        []byte // the samples not read yet
	left     uint32 // how many
	subAgent uint32
	seq      uint32
}

// sflowFlow is a flow sample as sflowWalk reads it.
type sflowFlow struct {
	rate, in, out uint32
	// The raw packet header record (format 1), when the sample has one:
	// the header protocol (1 Ethernet, 11 IPv4, 12 IPv6, ...), the
	// sampled frame's length and what the agent stripped from it, and the
	// header as the record holds it (with XDR's padding, as goflow2
	// gives it).
	hasHeader             bool
	protocol              uint32
	frameLength, stripped uint32
	headerLength          uint32
	header                []byte
}

// The errors of a walk; any of them refuses the datagram, as goflow2's
// decoder would.
var (
	errSFlowVersion  = errors.New("sflow: not version 5")
	errSFlowAddress  = errors.New("sflow: unknown agent address type")
	errSFlowSamples  = errors.New("sflow: more than 1000 samples")
	errSFlowFormat   = errors.New("sflow: unknown sample format")
	errSFlowRecords  = errors.New("sflow: more than 1000 records in a sample")
	errSFlowRawShort = errors.New("sflow: raw packet header record cut short")
)

// maxSFlowCount is goflow2's bound on the samples of a datagram and the
// records of a sample (but an expanded flow sample's records, which it
// does not bound; sflowFits bounds them by the datagram's size).
const maxSFlowCount = 1000

// start reads the datagram's header.
func (w *sflowWalk) start(b []byte) error {
	be := binary.BigEndian
	*w = sflowWalk{}
	if len(b) < 8 || be.Uint32(b) != 5 {
		return errSFlowVersion
	}
	n, err := sflowHeaderLen(b)
	if err != nil {
		return err
	}
	if len(b) < n {
		return errCut
	}
	w.subAgent, w.seq, w.left = be.Uint32(b[n-16:]), be.Uint32(b[n-12:]), be.Uint32(b[n-4:])
	if w.left > maxSFlowCount {
		return errSFlowSamples
	}
	w.b = b[n:]
	return nil
}

// next reads the next flow sample (formats 1 and 3) into s, passing over
// counter and drop samples. It returns false at the end of the samples.
func (w *sflowWalk) next(s *sflowFlow) (bool, error) {
	be := binary.BigEndian
	for ; w.left > 0 && len(w.b) >= 8; w.left-- {
		format, size := be.Uint32(w.b), be.Uint32(w.b[4:])
		if uint64(size) > uint64(len(w.b)-8) {
			return false, nil // as goflow2: the samples end there
		}
		b := w.b[8 : 8+size]
		w.b = w.b[8+size:]
		var recs []byte
		var count uint32
		*s = sflowFlow{}
		switch format {
		case 1: // flow sample: seq, source, rate, pool, drops, input, output
			if len(b) < 32 {
				return false, errCut
			}
			s.rate, s.in, s.out = be.Uint32(b[8:]), ifIndex(be.Uint32(b[20:])), ifIndex(be.Uint32(b[24:]))
			count, recs = be.Uint32(b[28:]), b[32:]
			if count > maxSFlowCount {
				return false, errSFlowRecords
			}
		case 3: // expanded: seq, source type and index, rate, pool, drops, input and output as format and value
			if len(b) < 44 {
				return false, errCut
			}
			s.rate = be.Uint32(b[12:])
			if be.Uint32(b[24:]) == 0 {
				s.in = be.Uint32(b[28:])
			}
			if be.Uint32(b[32:]) == 0 {
				s.out = be.Uint32(b[36:])
			}
			count, recs = be.Uint32(b[40:]), b[44:]
		case 2, 4, 5: // counter, expanded counter, drop: nothing to count
			if err := sflowOtherSample(format, b); err != nil {
				return false, err
			}
			continue
		default:
			return false, errSFlowFormat
		}
		for ; count > 0 && len(recs) >= 8; count-- {
			rf, rl := be.Uint32(recs), be.Uint32(recs[4:])
			if uint64(rl) > uint64(len(recs)-8) {
				break // as goflow2: the records end there
			}
			r := recs[8 : 8+rl]
			recs = recs[8+rl:]
			if rf != 1 {
				continue
			}
			if len(r) < 16 {
				return false, errSFlowRawShort
			}
			if !s.hasHeader {
				s.hasHeader = true
				s.protocol, s.frameLength, s.stripped, s.headerLength = be.Uint32(r), be.Uint32(r[4:]), be.Uint32(r[8:]), be.Uint32(r[12:])
				s.header = r[16:]
			}
		}
		w.left--
		return true, nil
	}
	return false, nil
}

// sflowOtherSample checks what goflow2 checks of a sample that counts no
// packet: its header words, and the bound on its records.
func sflowOtherSample(format uint32, b []byte) error {
	words := 2 // counter: seq, source
	switch format {
	case 4: // expanded counter: seq, source type and index
		words = 3
	case 5: // drop: seq, source type and index, drops, input, output, reason
		words = 7
	}
	if len(b) < 4*words+4 {
		return errCut
	}
	if binary.BigEndian.Uint32(b[4*words:]) > maxSFlowCount {
		return errSFlowRecords
	}
	return nil
}
