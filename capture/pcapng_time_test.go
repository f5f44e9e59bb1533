package capture

import (
	"math"
	"math/big"
	"testing"
	"time"
)

// TestNgIfaceTime checks the conversion of pcapng timestamps to times at
// the resolutions that have a path of their own (micro- and nanoseconds)
// and at others, against arithmetic without shortcuts.
func TestNgIfaceTime(t *testing.T) {
	stamps := []uint64{0, 1, 999_999, 1_000_000, 999_999_999, 1_000_000_000,
		1715000000123456, 1715000000123456789, math.MaxUint64 >> 1, math.MaxUint64}
	for _, r := range []struct {
		resol  uint8 // if_tsresol: 10^-n, or 2^-n with the top bit
		offset int64
	}{{6, 0}, {9, 0}, {6, -3600}, {9, 86400}, {3, 0}, {12, 0}, {0x80 | 20, 0}, {0x80 | 30, 7}} {
		exp, base := int64(r.resol&0x7f), int64(10)
		if r.resol&0x80 != 0 {
			base = 2
		}
		units := new(big.Int).Exp(big.NewInt(base), big.NewInt(exp), nil)
		ifc := ngIface{units: units.Uint64(), offset: r.offset}
		switch {
		case 1e9%ifc.units == 0:
			ifc.mul, ifc.div = 1e9/ifc.units, 1
		case ifc.units%1e9 == 0:
			ifc.mul, ifc.div = 1, ifc.units/1e9
		}
		for _, ts := range stamps {
			sec, frac := new(big.Int).DivMod(new(big.Int).SetUint64(ts), units, new(big.Int))
			ns := frac.Mul(frac, big.NewInt(1e9)).Div(frac, units)
			want := time.Unix(sec.Int64()+r.offset, ns.Int64()).UTC()
			if got := ifc.time(ts); got != want {
				t.Errorf("resolution %#x, offset %d, timestamp %d: %v, want %v", r.resol, r.offset, ts, got, want)
			}
		}
	}
}
