package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"slices"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// ngReader reads the blocks of a pcapng file (draft-ietf-opsawg-pcapng),
// any number of sections in either byte order, without copying frames: a
// frame's data is a slice of the window its block was read into, valid
// until the next call.
//
// It reads every block whole and checks its lengths against each other and
// the format before it believes them, so that a damaged block is found
// where it starts, and skipped to the next block that reads well (a block
// of a known type whose lengths at both ends agree). pcapgo's reader
// trusts a block's leading length, reads on into the blocks after it, and
// calls the result a cut.
type ngReader struct {
	w      *window
	big    bool      // the section's byte order
	ifaces []ngIface // the section's interfaces, in order
	skip   bool      // the section is of a version we cannot read: its blocks are skipped
	// pend is damage skipped and not yet reported: it is reported before
	// the next block that reads well, or at the end.
	pend *damage

	// Over all sections: whether an interface of a link type the decoder
	// reads was declared, and the frames of the others.
	declared, decodable bool
	undecoded           uint64
	undecodedTypes      []layers.LinkType // the first few
}

// ngIface is what reading the packets of an interface needs from its
// description.
type ngIface struct {
	link      layers.LinkType
	snaplen   uint32
	decodable bool
	damaged   bool // its description block is damaged: its packets are skipped

	units  uint64 // of a timestamp, per second
	offset int64  // seconds added to every timestamp
	// A fraction of a second in units is frac*mul/div nanoseconds; div
	// is 0 where neither is exact (binary fractions), and 128-bit
	// arithmetic does it.
	mul, div uint64
}

// Block types, of the pcapng specification's registry.
const (
	ngSHB uint32 = 0x0a0d0d0a
	ngIDB uint32 = 0x00000001
	ngPB  uint32 = 0x00000002 // obsolete
	ngSPB uint32 = 0x00000003
	ngNRB uint32 = 0x00000004
	ngISB uint32 = 0x00000005
	ngEPB uint32 = 0x00000006
	ngDSB uint32 = 0x0000000a
	ngCB  uint32 = 0x00000bad // custom block
	ngDCB uint32 = 0x40000bad // custom block not to be copied

	ngMagic = 0x1a2b3c4d // byte-order magic of a section header

	// maxBlock is the longest block the reader takes: far above a frame
	// and its options, or the name resolution and decryption secrets
	// blocks of real captures. It bounds what one block can cost.
	maxBlock = 16 << 20
	// maxInterfaces is the most interfaces a section may declare: IDs are
	// 32 bits, a table of them is not.
	maxInterfaces = 1 << 16
	// maxOptions is the most bytes of options a packet block may carry
	// for the reader to resync to it.
	maxOptions = 64 << 10
	// maxUndecodedTypes is how many link types FileStats names.
	maxUndecodedTypes = 4
)

// ngKnown reports whether the specification registers a block type, or
// leaves it to local use.
func ngKnown(typ uint32) bool {
	switch {
	case typ >= ngIDB && typ <= ngDSB, // the standard blocks, IRIG timestamps, ARINC 429, systemd journal
		typ == 0x101, typ == 0x102, // Hone project
		typ >= 0x201 && typ <= 0x209, typ >= 0x210 && typ <= 0x213, // Sysdig
		typ == ngSHB, typ == ngCB, typ == ngDCB,
		typ&0x80000000 != 0:
		return true
	}
	return false
}

// ngBlockName names a block type in errors.
func ngBlockName(typ uint32) string {
	switch {
	case typ == ngSHB:
		return "section header block"
	case typ == ngIDB:
		return "interface description block"
	case typ == ngPB:
		return "packet block"
	case typ == ngSPB:
		return "simple packet block"
	case typ == ngNRB:
		return "name resolution block"
	case typ == ngISB:
		return "interface statistics block"
	case typ == ngEPB:
		return "enhanced packet block"
	case typ == ngDSB:
		return "decryption secrets block"
	case typ == ngCB, typ == ngDCB:
		return "custom block"
	case ngKnown(typ):
		return fmt.Sprintf("block of type 0x%08x", typ)
	}
	return fmt.Sprintf("block of unknown type 0x%08x", typ)
}

// ngMinLength is the least a block of a type may measure: its fixed
// fields and the 12 bytes of type and lengths.
func ngMinLength(typ uint32) uint32 {
	switch typ {
	case ngSHB:
		return 28
	case ngIDB, ngDSB:
		return 20
	case ngPB, ngEPB:
		return 32
	case ngSPB, ngCB, ngDCB:
		return 16
	case ngISB:
		return 24
	}
	return 12
}

// newNgReader reads a pcapng file from w, which holds its start, up to its
// first section of a version it reads: 1.0, or 1.2, which libpcap takes as
// 1.0.
func newNgReader(w *window) (*ngReader, error) {
	r := &ngReader{w: w}
	for first := true; ; first = false {
		if err := w.want(12); err != nil {
			if first || eofIsEnd(err) != nil {
				return nil, headerError("pcapng", err)
			}
			return nil, errors.New("pcapng: no section of a version echowatch reads (1.0)")
		}
		typ, n, big, ok := r.head(w.bytes())
		why := headProblem(w.bytes(), typ, n, ok)
		if why == "" {
			if err := w.want(int(n)); err != nil {
				if !first && eofIsEnd(err) == nil {
					return nil, errors.New("pcapng: no section of a version echowatch reads (1.0)")
				}
				return nil, headerError("pcapng", err)
			}
			if t := u32(w.bytes()[n-4:], big); t != n {
				why = fmt.Sprintf("block length %d, trailing length %d", n, t)
			}
		}
		if why != "" {
			return nil, fmt.Errorf("pcapng file header: damaged %s at offset %d: %s", ngBlockName(typ), w.pos(), why)
		}
		if typ == ngSHB {
			r.section(w.bytes(), big)
		}
		w.off += int(n)
		if !r.skip {
			return r, nil
		}
	}
}

// head reads the type and length of the block at the start of b, which
// holds 12 bytes at least, in the section's byte order, or the order a
// section header says it is in (big). ok is false for a section header
// whose byte-order magic is neither; headProblem says why.
func (r *ngReader) head(b []byte) (typ, n uint32, big, ok bool) {
	typ, big = binary.LittleEndian.Uint32(b), r.big
	if typ == ngSHB { // the same in both orders
		switch binary.LittleEndian.Uint32(b[8:]) {
		case ngMagic:
			big = false
		case bits.ReverseBytes32(ngMagic):
			big = true
		default:
			return typ, 0, big, false
		}
	} else if big {
		typ = bits.ReverseBytes32(typ)
	}
	return typ, u32(b[4:8], big), big, true
}

// saneLength reports whether n can be the length of a block of type typ.
func saneLength(typ, n uint32) bool {
	format, _ := lengthProblem(typ, n)
	return format == ""
}

// headProblem says what is wrong with the type and length that head read
// at the start of b, or "" if nothing is.
func headProblem(b []byte, typ, n uint32, ok bool) string {
	if !ok {
		return fmt.Sprintf("byte-order magic %08x is not %08x", binary.LittleEndian.Uint32(b[8:]), uint32(ngMagic))
	}
	if format, limit := lengthProblem(typ, n); format != "" {
		return fmt.Sprintf(format, n, limit)
	}
	return ""
}

// lengthProblem says what is wrong with n as the length of a block of type
// typ, as a format for n and limit, or "" if nothing is. It formats
// nothing, for resync, which asks it at every offset it tries.
func lengthProblem(typ, n uint32) (format string, limit uint32) {
	switch {
	case n > maxBlock:
		return "block length %d is over %d MiB", maxBlock >> 20
	case n%4 != 0:
		return "block length %d is not a multiple of %d", 4
	case n < ngMinLength(typ):
		return "block length %d is shorter than %d", ngMinLength(typ)
	}
	return "", 0
}

// section starts the section whose header block b is.
func (r *ngReader) section(b []byte, big bool) {
	r.big, r.ifaces = big, r.ifaces[:0]
	major, minor := u16(b[12:14], big), u16(b[14:16], big)
	r.skip = major != 1 || minor != 0 && minor != 2
}

// next fills f with the next packet's frame. It returns io.EOF at the end,
// io.ErrUnexpectedEOF for a block cut short by the end of the input (with
// nothing readable after it), and a *damage for damaged blocks, skipped:
// the next call goes on after them.
func (r *ngReader) next(f *Frame) error {
	w := r.w
	for {
		err := w.want(12)
		if err != nil && (err != io.ErrUnexpectedEOF || len(w.bytes()) == 0) {
			if err != io.EOF && err != io.ErrUnexpectedEOF {
				return err
			}
			// The end of the input, or of a gzip stream cut between
			// blocks.
			if d := r.pend; d != nil {
				r.pend, d.toEnd = nil, true
				return d
			}
			return err
		}
		var typ, n uint32
		var big bool
		why, cut := "block cut short by the end of the file", err != nil
		if !cut {
			var ok bool
			typ, n, big, ok = r.head(w.bytes())
			why = headProblem(w.bytes(), typ, n, ok)
		}
		if why == "" {
			switch err := w.want(int(n)); {
			case err == io.ErrUnexpectedEOF:
				why, cut = fmt.Sprintf("block length %d runs past the end of the file", n), true
			case err != nil:
				return err
			case u32(w.bytes()[n-4:], big) != n:
				why = fmt.Sprintf("block length %d, trailing length %d", n, u32(w.bytes()[n-4:], big))
			}
		}
		if why != "" {
			if err := r.damaged(typ, why, cut); err != nil {
				return err
			}
			continue
		}
		if ok, err := r.block(f, typ, w.bytes()[:n], big); ok || err != nil {
			return err
		}
	}
}

// damaged skips the damaged block at the start of the window, of type typ,
// to the next block that reads well, and notes the damage for the report.
// A block cut short by the end of the input, with nothing readable after
// it, is a cut: io.ErrUnexpectedEOF.
func (r *ngReader) damaged(typ uint32, why string, cut bool) error {
	at := r.w.pos()
	found, err := r.resync()
	if err != nil {
		return err
	}
	if cut && !found && r.pend == nil {
		return io.ErrUnexpectedEOF
	}
	r.skipped(at, ngBlockName(typ), why, r.w.pos()-at)
	return nil
}

// skipped notes the n bytes at offset at, of a block damaged as why says,
// as skipped: a stretch of its own, or the end of the one pending report.
func (r *ngReader) skipped(at int64, name, why string, n int64) {
	if r.pend == nil {
		r.pend = &damage{at: at, what: name, why: why, unit: "block"}
	}
	r.pend.skipped = at + n - r.pend.at
}

// resync moves the window past the damaged block at its start to the next
// block that reads well: found is false, the window empty, when none does
// to the end of the input.
func (r *ngReader) resync() (found bool, err error) {
	w := r.w
	if err := w.want(1); err != nil {
		return false, eofIsEnd(err)
	}
	w.off++
	for {
		if len(w.bytes()) < 12 {
			if w.ended() {
				w.off = w.end
				return false, nil
			}
			if err := w.want(12); eofIsEnd(err) != nil {
				return false, err
			}
			continue
		}
		ok, need := r.candidate(w.bytes(), w.ended())
		if ok {
			return true, nil
		}
		if need == 0 {
			w.off++
		} else if err := w.want(need); eofIsEnd(err) != nil {
			return false, err
		}
	}
}

// candidate reports whether a block that reads well starts b: of a
// registered type, its lengths agree and fit what it holds. need > 0 says
// how many bytes b must hold to tell, when end is false.
func (r *ngReader) candidate(b []byte, end bool) (ok bool, need int) {
	typ, n, big, ok := r.head(b)
	if !ok || !saneLength(typ, n) || !ngKnown(typ) || typ&0x80000000 != 0 {
		return false, 0
	}
	switch typ {
	case ngEPB, ngPB:
		if len(b) < 28 {
			if end {
				return false, 0
			}
			return false, 28
		}
		caplen := u32(b[20:24], big)
		iface := u32(b[8:12], big)
		if typ == ngPB {
			iface = uint32(u16(b[8:10], big))
		}
		if iface >= uint32(len(r.ifaces)) || caplen > MaxSnaplen || n < 32+caplen || n > 32+caplen+maxOptions {
			return false, 0
		}
	case ngSPB:
		if len(r.ifaces) == 0 || n > 16+MaxSnaplen+3 {
			return false, 0
		}
	}
	if len(b) < int(n) {
		if end {
			return false, 0
		}
		return false, int(n)
	}
	return u32(b[n-4:], big) == n, 0
}

// block reads b, a whole block whose lengths agree, of type typ. It fills
// f and reports true for a packet; it returns the damage pending report,
// if any, before a block that reads well, which the next call reads again.
func (r *ngReader) block(f *Frame, typ uint32, b []byte, big bool) (ok bool, err error) {
	w := r.w
	if r.skip && typ != ngSHB {
		w.off += len(b) // a section we cannot read
		return false, nil
	}
	var why string
	switch typ {
	case ngEPB, ngPB, ngSPB:
		why = r.packet(f, typ, b, big)
	case ngIDB:
		var ifc ngIface
		ifc, why = r.iface(b, big)
		if why != "" || r.pend == nil { // a good one waits for the report
			if len(r.ifaces) == maxInterfaces {
				why = fmt.Sprintf("more than %d interfaces in a section", maxInterfaces)
			} else {
				// A damaged description keeps its place: interfaces are
				// numbered in the order they are declared.
				r.ifaces = append(r.ifaces, ifc)
				r.declare(ifc)
			}
		}
	case ngSHB:
		if r.pend == nil {
			r.section(b, big)
		}
	default:
		if !ngKnown(typ) {
			why = "not a pcapng block type"
		}
	}
	if why != "" {
		r.skipped(w.pos(), ngBlockName(typ), why, int64(len(b)))
		w.off += len(b)
		return false, nil
	}
	if d := r.pend; d != nil {
		r.pend = nil
		return false, d
	}
	w.off += len(b)
	if typ == ngEPB || typ == ngPB || typ == ngSPB {
		if ifc := &r.ifaces[f.Interface]; !ifc.decodable {
			r.undecoded++
		}
		return true, nil
	}
	return false, nil
}

// declare notes an interface's link type, for FileStats and the check for
// a file the decoder cannot read at all.
func (r *ngReader) declare(ifc ngIface) {
	if ifc.damaged {
		return
	}
	r.declared = true
	if ifc.decodable {
		r.decodable = true
		return
	}
	if len(r.undecodedTypes) < maxUndecodedTypes && !slices.Contains(r.undecodedTypes, ifc.link) {
		r.undecodedTypes = append(r.undecodedTypes, ifc.link)
	}
}

// iface reads an interface description block: its link type, snap length
// and the options that say how to read its timestamps. A description
// whose options do not fit its block, or whose timestamps cannot be
// read, is damaged: ifc is then a placeholder whose packets are skipped.
func (r *ngReader) iface(b []byte, big bool) (ifc ngIface, why string) {
	ifc = ngIface{link: layers.LinkType(u16(b[8:10], big)), snaplen: u32(b[12:16], big)}
	ifc.decodable = SupportedLinkType(ifc.link)
	resol := byte(6) // microseconds
	for opts := b[16 : len(b)-4]; len(opts) >= 4; {
		code, l := u16(opts[0:2], big), int(u16(opts[2:4], big))
		if code == 0 { // end of options
			break
		}
		if 4+l > len(opts) {
			ifc.damaged = true
			return ifc, fmt.Sprintf("option %d of %d bytes runs past the block", code, l)
		}
		v := opts[4 : 4+l]
		switch {
		case code == 9 && l >= 1: // if_tsresol
			resol = v[0]
		case code == 14 && l >= 8: // if_tsoffset, seconds
			if big {
				ifc.offset = int64(binary.BigEndian.Uint64(v))
			} else {
				ifc.offset = int64(binary.LittleEndian.Uint64(v))
			}
		}
		opts = opts[min(len(opts), 4+(l+3)&^3):]
	}
	// A timestamp is in units of 10^-n seconds, or 2^-n with the top bit.
	exp, base := uint64(resol&0x7f), uint64(10)
	if resol&0x80 != 0 {
		base = 2
	}
	if base == 10 && exp > 19 || base == 2 && exp > 63 {
		ifc.damaged = true
		return ifc, fmt.Sprintf("timestamp resolution %d^-%d is finer than 64 bits hold", base, exp)
	}
	ifc.units = 1
	for range exp {
		ifc.units *= base
	}
	switch {
	case 1e9%ifc.units == 0:
		ifc.mul, ifc.div = 1e9/ifc.units, 1
	case ifc.units%1e9 == 0:
		ifc.mul, ifc.div = 1, ifc.units/1e9
	}
	return ifc, ""
}

// packet fills f with the frame of b, a packet block of type typ, and
// says why not, if it cannot.
func (r *ngReader) packet(f *Frame, typ uint32, b []byte, big bool) (why string) {
	var iface, tsHigh, tsLow, caplen, wire uint32
	var data []byte
	switch typ {
	case ngSPB:
		// No interface ID, no timestamp, no captured length: what the
		// block holds of the packet, up to the first interface's snap
		// length.
		if len(r.ifaces) == 0 {
			return "a simple packet block before any interface description"
		}
		wire, caplen = u32(b[8:12], big), uint32(len(b)-16)
		if s := r.ifaces[0].snaplen; s != 0 {
			caplen = min(caplen, s)
		}
		caplen = min(caplen, wire)
		data = b[12:]
	default:
		iface = u32(b[8:12], big)
		if typ == ngPB {
			iface = uint32(u16(b[8:10], big)) // then 16 bits of drops count
		}
		tsHigh, tsLow, caplen, wire = u32(b[12:16], big), u32(b[16:20], big), u32(b[20:24], big), u32(b[24:28], big)
		data = b[28:]
	}
	switch {
	case iface >= uint32(len(r.ifaces)):
		return fmt.Sprintf("interface %d is not declared (the section has %d)", iface, len(r.ifaces))
	case r.ifaces[iface].damaged:
		return fmt.Sprintf("interface %d's description is damaged", iface)
	case caplen > uint32(len(data)-4):
		return fmt.Sprintf("captured length %d is longer than the block", caplen)
	case caplen > MaxSnaplen:
		return fmt.Sprintf("captured length %d is over %d", caplen, MaxSnaplen)
	}
	ifc := &r.ifaces[iface]
	f.Data = data[:caplen:caplen]
	f.CaptureLength, f.Length = int(caplen), max(int(wire), int(caplen))
	f.LinkType, f.Interface = ifc.link, int(iface)
	f.Timestamp = time.Time{}
	if typ != ngSPB {
		f.Timestamp = ifc.time(uint64(tsHigh)<<32 | uint64(tsLow))
	}
	return ""
}

// time converts a timestamp of the interface to a time.
func (ifc *ngIface) time(ts uint64) time.Time {
	var sec, ns uint64
	// Micro- and nanoseconds, what capture tools write, divide by
	// constants, which compile to multiplications; the general case costs
	// two divisions a frame.
	switch ifc.units {
	case 1e6:
		sec, ns = ts/1e6, ts%1e6*1e3
	case 1e9:
		sec, ns = ts/1e9, ts%1e9
	default:
		sec, ns = ifc.split(ts)
	}
	return time.Unix(int64(sec)+ifc.offset, int64(ns)).UTC()
}

// split divides a timestamp of the interface into seconds and nanoseconds.
func (ifc *ngIface) split(ts uint64) (sec, ns uint64) {
	sec, frac := ts/ifc.units, ts%ifc.units
	if ifc.div != 0 {
		ns = frac * ifc.mul / ifc.div
	} else {
		hi, lo := bits.Mul64(frac, 1e9)
		ns, _ = bits.Div64(hi, lo, ifc.units) // frac < units: no overflow
	}
	return sec, ns
}

// finish checks, at the end of the file, that the decoder reads one of
// its interfaces' link types at least.
func (r *ngReader) finish() error {
	if !r.declared || r.decodable {
		return nil
	}
	return unsupportedLinkType(r.undecodedTypes...)
}
