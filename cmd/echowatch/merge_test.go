package main

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/echowatch/echowatch/capture"
)

// writeSubset writes the frames of p at the indexes idx, in that order, as
// a classic pcap like p's.
func writeSubset(t *testing.T, path string, p pcapFrames, idx []int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(p.snaplen, p.link); err != nil {
		t.Fatal(err)
	}
	for _, i := range idx {
		if err := w.WritePacket(p.cis[i], p.datas[i]); err != nil {
			t.Fatal(err)
		}
	}
}

// inTimeOrder fails the test unless p's frames are in time order: what a
// merge of its parts gives back.
func inTimeOrder(t *testing.T, name string, p pcapFrames) {
	t.Helper()
	for i := 1; i < len(p.cis); i++ {
		if p.cis[i].Timestamp.Before(p.cis[i-1].Timestamp) {
			t.Fatalf("%s: frame %d is older than the one before it", name, i)
		}
	}
}

// TestMergedFilesProperty: a capture whose records are dealt at random to
// 2 to 4 files (frames of equal times to the same file, whose order is
// theirs), read as those files in any order, with one worker or three,
// gives the alerts of the whole capture byte for byte.
func TestMergedFilesProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 2024))
	cases := []struct {
		name string
		args []string
	}{
		{"loop-echo-chargen-vlan", nil},
		{"reflection-in", []string{"--config", pcap("reflection-in/config.yaml")}},
		{"random-source-flood", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			whole := pcap(c.name + "/capture.pcap")
			p := readFrames(t, whole)
			inTimeOrder(t, c.name, p)
			code, want, errOut := runMain(t, nil, append([]string{"-r", whole, "--format", "eve"}, c.args...)...)
			if code != 0 || want == "" {
				t.Fatalf("the whole capture: exit %d, no alerts; stderr %s", code, errOut)
			}
			for _, k := range []int{2, 3, 4} {
				dir := t.TempDir()
				parts := make([][]int, k)
				for i := range p.cis {
					part := rng.IntN(k)
					if i > 0 && p.cis[i].Timestamp.Equal(p.cis[i-1].Timestamp) {
						part = partOf(parts, i-1)
					}
					parts[part] = append(parts[part], i)
				}
				paths := make([]string, k)
				for j := range parts {
					paths[j] = filepath.Join(dir, fmt.Sprintf("part%d.pcap", j))
					writeSubset(t, paths[j], p, parts[j])
				}
				for n, order := range fileOrders(rng, k) {
					var args []string
					var stdin []byte
					for _, j := range order {
						args = append(args, "-r", paths[j])
					}
					if n == 1 { // the second order reads its last file from standard input
						var err error
						if stdin, err = os.ReadFile(paths[order[k-1]]); err != nil {
							t.Fatal(err)
						}
						args[len(args)-1] = "-"
					}
					for _, workers := range []string{"1", "3"} {
						all := slices.Concat(args, []string{"--format", "eve", "--workers", workers}, c.args)
						code, got, errOut := runMain(t, stdin, all...)
						if code != 0 || errOut != "" {
							t.Fatalf("%d files in order %v, %s workers: exit %d, stderr %s", k, order, workers, code, errOut)
						}
						if got != want {
							t.Errorf("%d files in order %v, %s workers: alerts differ from the whole capture's:\n%s",
								k, order, workers, firstDiff(want, got))
						}
					}
				}
			}
		})
	}
}

// partOf returns the part that holds frame i.
func partOf(parts [][]int, i int) int {
	for j, part := range parts {
		if n := len(part); n > 0 && part[n-1] == i {
			return j
		}
	}
	panic("frame not dealt")
}

// fileOrders returns every order of k files for k up to 3, and a few at
// random beyond, the given order first.
func fileOrders(rng *rand.Rand, k int) [][]int {
	id := make([]int, k)
	for i := range id {
		id[i] = i
	}
	if k > 3 {
		orders := [][]int{id}
		for range 3 {
			o := append([]int(nil), id...)
			rng.Shuffle(k, func(i, j int) { o[i], o[j] = o[j], o[i] })
			orders = append(orders, o)
		}
		return orders
	}
	var orders [][]int
	var permute func(o []int, n int)
	permute = func(o []int, n int) {
		if n == 1 {
			orders = append(orders, append([]int(nil), o...))
			return
		}
		for i := range n {
			permute(o, n-1)
			if n%2 == 0 {
				o[i], o[n-1] = o[n-1], o[i]
			} else {
				o[0], o[n-1] = o[n-1], o[0]
			}
		}
	}
	permute(id, k)
	return orders
}

// The tap: a loop captured one direction per file (the two
// outputs of a passive tap) is the loop of the whole capture, with its
// rate each way, whichever file comes first. Read one after the other, the
// second direction's packets all came after the first's, and the rates
// were nonsense.
func TestMergedTapDirections(t *testing.T) {
	whole := pcap("loop-echo-chargen-vlan/capture.pcap")
	p := readFrames(t, whole)
	inTimeOrder(t, "loop-echo-chargen-vlan", p)
	one := netip.MustParseAddr("198.51.100.7")
	dec := capture.NewDecoder()
	var pkt capture.Packet
	var a, b []int // from the one end of the loop, and everything else
	for i, ci := range p.cis {
		f := capture.Frame{Data: p.datas[i], Timestamp: ci.Timestamp, CaptureLength: ci.CaptureLength, Length: ci.Length, LinkType: p.link}
		dec.Decode(&f, &pkt)
		if pkt.Src == one {
			a = append(a, i)
		} else {
			b = append(b, i)
		}
	}
	if len(a) < 100 || len(b) < 100 {
		t.Fatalf("%d frames one way, %d the other: not a loop split by direction", len(a), len(b))
	}
	dir := t.TempDir()
	aPath, bPath := filepath.Join(dir, "tap-a.pcap"), filepath.Join(dir, "tap-b.pcap")
	writeSubset(t, aPath, p, a)
	writeSubset(t, bPath, p, b)

	for _, format := range []string{"eve", "text"} {
		_, want, _ := runMain(t, nil, "-r", whole, "--format", format)
		if format == "text" && !strings.Contains(want, "(2 / 2 pps each way)") {
			t.Fatalf("the whole capture's loop:\n%s", want)
		}
		for _, order := range [][]string{{aPath, bPath}, {bPath, aPath}} {
			for _, workers := range []string{"1", "3"} {
				code, got, errOut := runMain(t, nil, "-r", order[0], "-r", order[1], "--format", format, "--workers", workers)
				if code != 0 || got != want {
					t.Errorf("%s first, %s workers, %s: exit %d, stderr %s\n%s", filepath.Base(order[0]), workers, format,
						code, errOut, firstDiff(want, got))
				}
			}
		}
	}
}
