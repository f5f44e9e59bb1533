package live

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcap"
	"golang.org/x/net/bpf"

	"github.com/echowatch/echowatch/capture"
)

// maxLinkTypes bounds the programs a BPFFilter keeps, one per link type.
// A capture rarely mixes more than two.
const maxLinkTypes = 8

// BPFFilter is a tcpdump-style filter for frames read from files: libpcap
// compiles the expression once per link type, and the program runs in
// golang.org/x/net/bpf's VM, with no cgo call and no allocation per frame.
//
// The program sees the captured bytes, as libpcap's does: a load beyond
// them rejects the frame. One difference: libpcap's "len" (and so
// "greater" and "less") is the length on the wire, the VM's is the
// captured length, so they differ on frames cut by a snap length.
//
// A BPFFilter is safe for concurrent use.
type BPFFilter struct {
	expr string
	// progs holds the programs compiled so far. It is replaced, never
	// changed, so Match reads it without a lock.
	progs atomic.Pointer[[]program]
	mu    sync.Mutex // serialises compiles
}

// program is expr compiled for one link type. vm is nil when the
// expression means nothing for the link type: no frame of it matches.
type program struct {
	linkType layers.LinkType
	vm       *bpf.VM
}

var _ capture.Filter = (*BPFFilter)(nil)

// CompileFilter compiles expr. It is checked for Ethernet here, so that a
// mistake is an error at start-up; other link types are compiled when
// their first frame comes.
func CompileFilter(expr string) (*BPFFilter, error) {
	vm, err := newVM(layers.LinkTypeEthernet, expr)
	if err != nil {
		return nil, bpfError("", expr, err)
	}
	f := &BPFFilter{expr: expr}
	f.progs.Store(&[]program{{layers.LinkTypeEthernet, vm}})
	return f, nil
}

// Match reports whether the filter accepts f.
func (b *BPFFilter) Match(f *capture.Frame) bool {
	vm := b.vm(f.LinkType)
	if vm == nil {
		return false
	}
	n, err := vm.Run(f.Data)
	return err == nil && n > 0
}

// String returns the filter's expression.
func (b *BPFFilter) String() string { return b.expr }

func (b *BPFFilter) vm(lt layers.LinkType) *bpf.VM {
	for _, p := range *b.progs.Load() {
		if p.linkType == lt {
			return p.vm
		}
	}
	return b.compile(lt)
}

// compile compiles the expression for a new link type. Past maxLinkTypes
// the program is not kept: the first link types, those of a real capture,
// stay fast, and an odd file with many pays a compile per frame.
func (b *BPFFilter) compile(lt layers.LinkType) *bpf.VM {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := *b.progs.Load()
	for _, p := range old {
		if p.linkType == lt {
			return p.vm
		}
	}
	vm, err := newVM(lt, b.expr)
	if err != nil {
		vm = nil // an expression like "udp" is meaningless for some link types
	}
	if len(old) < maxLinkTypes {
		progs := append(old[:len(old):len(old)], program{lt, vm})
		b.progs.Store(&progs)
	}
	return vm
}

// newVM compiles expr for lt into a program for the Go VM.
func newVM(lt layers.LinkType, expr string) (*bpf.VM, error) {
	raw, err := compileBPF(lt, DefaultSnaplen, expr)
	if err != nil {
		return nil, err
	}
	prog, ok := bpf.Disassemble(raw)
	if !ok {
		return nil, errors.New("program uses an instruction the Go BPF VM lacks")
	}
	for _, ins := range prog {
		// The VM decodes negation but cannot run it.
		if _, ok := ins.(bpf.NegateA); ok {
			return nil, errors.New("program uses negation, which the Go BPF VM lacks")
		}
	}
	return bpf.NewVM(prog)
}

// compileBPF compiles expr with libpcap for frames of link type lt. The
// program accepts snaplen bytes of a matching frame, which the kernel
// enforces when the program is a socket filter.
func compileBPF(lt layers.LinkType, snaplen int, expr string) ([]bpf.RawInstruction, error) {
	ins, err := pcap.CompileBPFFilter(toDLT(lt), snaplen, expr)
	if err != nil {
		return nil, err
	}
	raw := make([]bpf.RawInstruction, len(ins))
	for i, in := range ins {
		raw[i] = bpf.RawInstruction{Op: in.Code, Jt: in.Jt, Jf: in.Jf, K: in.K}
	}
	return raw, nil
}

// toDLT returns the value libpcap's compiler knows lt by. Link types in
// files (LINKTYPE_*) and libpcap's (DLT_*) differ only for old ones; the
// one that matters here is raw IP, which files also carry with the DLT
// values of Linux (12) and OpenBSD (14).
func toDLT(lt layers.LinkType) layers.LinkType {
	switch lt {
	case layers.LinkTypeRaw, 12, 14:
		return layers.LinkType(pcap.DatalinkNameToVal("RAW"))
	}
	return lt
}

// fromDLT returns the link type a file would record for libpcap's dlt.
func fromDLT(dlt layers.LinkType) layers.LinkType {
	if int(dlt) == pcap.DatalinkNameToVal("RAW") {
		return layers.LinkTypeRaw
	}
	return dlt
}

// bpfError names the expression and, for a live capture, the interface.
func bpfError(iface, expr string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "can't parse filter expression: ")
	if iface == "" {
		return fmt.Errorf("capture/live: bpf %q: %s", expr, msg)
	}
	return fmt.Errorf("capture/live: %s: bpf %q: %s", iface, expr, msg)
}
