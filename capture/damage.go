package capture

import "fmt"

// damage is a stretch of an input that a reader could not read as records,
// and skipped: from the record or block at offset at, which is damaged as
// why says, to the next one that reads well.
type damage struct {
	at      int64  // the input's offset (decompressed) of its first byte
	what    string // what starts it: "record", "enhanced packet block"...
	why     string
	skipped int64  // bytes skipped from at
	toEnd   bool   // no record or block reads well after it: skipped to the end
	unit    string // what the reader skipped to: "record" or "block"
}

func (d *damage) Error() string {
	s := fmt.Sprintf("damaged %s at offset %d: %s; ", d.what, d.at, d.why)
	if d.toEnd {
		return s + fmt.Sprintf("skipped the last %d bytes: no good %s after it", d.skipped, d.unit)
	}
	return s + fmt.Sprintf("skipped %d bytes to the next %s", d.skipped, d.unit)
}

func (d *damage) Unwrap() error { return ErrDamaged }

// maxDamageReports is how many damaged stretches of one input are
// reported one by one; the others are counted, so that the warnings a
// badly damaged file gives stay few.
const maxDamageReports = 10

// damaged counts d, a damaged stretch of input in, and returns the error to
// report for it: nil once the input has had its share of reports. FileStats
// counts it; its Err stays for what ends an input early.
func (s *FileSource) damaged(in *input, d *damage) error {
	n := in.damaged.Add(1)
	in.skipped.Add(uint64(d.skipped))
	var err error
	switch {
	case n <= maxDamageReports:
		err = fmt.Errorf("capture: %s: %w", displayName(in.name), d)
	case n == maxDamageReports+1:
		err = fmt.Errorf("capture: %s: %w; further damage in this file is counted, not reported", displayName(in.name), d)
	default:
		return nil
	}
	return &InputError{Name: in.name, Err: err}
}
