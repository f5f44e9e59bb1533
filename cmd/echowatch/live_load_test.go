//go:build linux

package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/echowatch/echowatch/internal/netnstest"
	"github.com/echowatch/echowatch/internal/sensor"
)

// TestLiveUnderLoad replays traffic over a veth pair, as fast as one core
// can hand it to an AF_PACKET socket (sendmmsg, 64 frames a call, past
// the queueing discipline), into echowatch -i in each capture
// mode: mostly ordinary UDP between many hosts, and 1 in 50 frames an echo
// reply from 198.18.0.1:7 toward 198.18.0.2, which never asked. It logs
// what was sent, what echowatch saw, what the kernel dropped and the
// alerts, and checks that the reflection was found and that every frame
// sent is accounted for: seen, or dropped by the kernel (socket, ring or
// interface) or by a worker's queue. BENCHMARKS.md records the figures.
func TestLiveUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("sends two million frames per mode")
	}
	frames := loadFrames()
	const rounds = 20 // 2 million frames
	for _, mode := range [][]string{
		{"--capture", "pcap"},
		{"--capture", "pcap", "--workers", "2"},
		{"--capture", "afpacket", "--workers", "2"},
	} {
		name := strings.Join(mode[1:], "-")
		t.Run(name, func(t *testing.T) {
			sender, sensor := netnsPair(t, "ld"+name[:2]+name[len(name)-1:])
			ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
			defer cancel()
			proc := startSensor(ctx, t, sensor, append([]string{"-i", "ew1", "--format", "eve", "--stats", "--stats-interval", "200ms",
				"--home-net", "198.18.0.0/30", "--sensor-name", "load"}, mode...)...)
			time.Sleep(200 * time.Millisecond) // every worker's socket is in place
			rxDropped := func() uint64 { return rxDroppedIn(t, sensor, "ew1") }
			before := rxDropped()
			sent, elapsed, err := replay(sender, "ew0", frames, rounds)
			if err != nil {
				t.Fatalf("replay: %v", err)
			}
			proc.settle(t, 1) // the workers drained their rings
			ifDrops := rxDropped() - before
			if err := proc.stop(); err != nil {
				t.Fatalf("echowatch: %v\nstderr:\n%s", err, proc.errors())
			}
			st, alerts := liveResults(t, proc.stdout.String())
			t.Logf("%s: sent %d frames in %v (%.0f frames/s); the kernel gave echowatch %d, it decoded %d; kernel drops %d, interface drops %d, ring freezes %d, queue drops %d; %d alerts: %s",
				name, sent, elapsed.Round(time.Millisecond), float64(sent)/elapsed.Seconds(), st.kernelPackets, st.seen,
				st.kernelDrops, ifDrops, st.freezes, st.queueDrops, len(alerts), strings.Join(alerts, ", "))
			for _, w := range st.workers {
				t.Logf("  %s", w)
			}
			if !strings.Contains(proc.stdout.String(), `"kind":"reflection","phase":"start"`) {
				t.Errorf("no reflection alert")
			}
			// What reached the capture sockets was seen or dropped there;
			// the rest the interface dropped. The namespace adds a few
			// frames of its own (IPv6 neighbour discovery).
			total := st.seen + st.kernelDrops + st.queueDrops + ifDrops
			if total < sent || total > sent+100 {
				t.Errorf("seen %d + dropped %d + %d + %d = %d, sent %d", st.seen, st.kernelDrops, st.queueDrops, ifDrops, total, sent)
			}
		})
	}
}

// loadFrames returns 100,000 frames: UDP between many hosts on ports that
// detection ignores (DNS, NTP, QUIC), and every 50th an echo reply toward
// 198.18.0.2 from 198.18.0.1:7. Frames are 64 to 200 bytes.
func loadFrames() [][]byte {
	var frames [][]byte
	for i := range 100_000 {
		src, dst := [4]byte{10, byte(i >> 8), byte(i), 1}, [4]byte{10, 200, byte(i % 7), byte(i % 251)}
		sport, dport := uint16(1024+i%50000), []uint16{53, 123, 443}[i%3]
		size := 22 + i%136
		if i%50 == 0 {
			src, dst, sport, dport, size = [4]byte{198, 18, 0, 1}, [4]byte{198, 18, 0, 2}, 7, 40000, 64
		}
		frames = append(frames, udpFrame(src, dst, sport, dport, size))
	}
	return frames
}

// udpFrame builds an Ethernet IPv4 UDP frame with payload bytes of zeros.
// Checksums are left at zero: nothing here checks them.
func udpFrame(src, dst [4]byte, sport, dport uint16, payload int) []byte {
	be := binary.BigEndian
	b := make([]byte, 14+20+8+payload)
	copy(b[0:6], []byte{0x02, 0, 0, 0, 0, 2})  // destination MAC
	copy(b[6:12], []byte{0x02, 0, 0, 0, 0, 1}) // source MAC
	be.PutUint16(b[12:], 0x0800)
	ip := b[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 17 // version and header length, TTL, UDP
	be.PutUint16(ip[2:], uint16(20+8+payload))
	copy(ip[12:16], src[:])
	copy(ip[16:20], dst[:])
	udp := ip[20:]
	be.PutUint16(udp[0:], sport)
	be.PutUint16(udp[2:], dport)
	be.PutUint16(udp[4:], uint16(8+payload))
	return b
}

// replay writes frames rounds times, as fast as it can, to an AF_PACKET
// socket on iface in namespace ns, bypassing the queueing discipline. It
// returns how many frames the kernel took.
func replay(ns, iface string, frames [][]byte, rounds int) (sent uint64, elapsed time.Duration, err error) {
	err = netnstest.Do(ns, func() error {
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0) // send only
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifi.Index}); err != nil {
			return err
		}
		unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1)
		// sendmmsg sends a batch of frames per system call.
		const batch = 64
		iov := make([]unix.Iovec, batch)
		msgs := make([]mmsghdr, batch)
		for i := range msgs {
			msgs[i].hdr.Iov, msgs[i].hdr.Iovlen = &iov[i], 1
		}
		start := time.Now()
		for range rounds {
			for i := 0; i < len(frames); {
				n := min(batch, len(frames)-i)
				for j := range n {
					iov[j].Base = &frames[i+j][0]
					iov[j].SetLen(len(frames[i+j]))
				}
				done, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), uintptr(n), 0, 0, 0)
				switch {
				case errno == 0:
					sent += uint64(done)
					i += int(done)
				case errno != unix.ENOBUFS && errno != unix.EAGAIN && errno != unix.EINTR:
					return fmt.Errorf("sendmmsg: %w", errno)
				}
			}
		}
		elapsed = time.Since(start)
		return nil
	})
	return sent, elapsed, err
}

// mmsghdr is struct mmsghdr of sendmmsg(2).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

// rxDroppedIn reads an interface's receive drop counter in a namespace.
func rxDroppedIn(t *testing.T, ns, iface string) uint64 {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "cat", "/sys/class/net/"+iface+"/statistics/rx_dropped").Output()
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.ParseUint(strings.TrimSpace(string(out)), 10, 64)
	return n
}

// liveStats is what the final stats event says about capture.
type liveStats struct {
	seen, kernelPackets, kernelDrops, freezes, queueDrops uint64
	workers                                               []string
}

// liveResults reads the final stats event and the alerts of a live run.
func liveResults(t *testing.T, out string) (liveStats, []string) {
	t.Helper()
	var st liveStats
	var alerts []string
	var last string
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.Contains(line, `"event_type":"stats"`):
			last = line
		case strings.Contains(line, `"event_type":"alert"`):
			var a struct {
				Incident struct{ Kind, Phase string } `json:"incident"`
			}
			json.Unmarshal([]byte(line), &a)
			alerts = append(alerts, a.Incident.Kind+"/"+a.Incident.Phase)
		}
	}
	var ev struct {
		Stats struct {
			Echowatch struct {
				Capture struct {
					KernelPackets uint64 `json:"kernel_packets"`
					KernelDrops   uint64 `json:"kernel_drops"`
					KernelFreezes uint64 `json:"kernel_freezes"`
					QueueDrops    uint64 `json:"queue_drops"`
				} `json:"capture"`
				Workers []sensor.WorkerStats `json:"workers"`
				Decoder struct {
					Frames uint64 `json:"frames"`
				} `json:"decoder"`
			} `json:"echowatch"`
		} `json:"stats"`
	}
	if err := json.Unmarshal([]byte(last), &ev); err != nil {
		t.Fatalf("no final stats event: %v\n%s", err, out)
	}
	ours := &ev.Stats.Echowatch
	c := ours.Capture
	st.seen, st.kernelPackets, st.kernelDrops, st.freezes, st.queueDrops = ours.Decoder.Frames, c.KernelPackets, c.KernelDrops, c.KernelFreezes, c.QueueDrops
	for _, w := range ours.Workers {
		st.workers = append(st.workers, fmt.Sprintf("worker %d: frames %d, kernel packets %d, drops %d, freezes %d, queue drops %d",
			w.Worker, w.Frames, w.KernelPackets, w.KernelDrops, w.KernelFreezes, w.QueueDrops))
	}
	return st, alerts
}
