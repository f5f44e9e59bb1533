package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/pcapgo"
)

// benchTelemetry writes packets frames of router telemetry: the datagrams
// of from (a capture of what a real exporter sent, Ethernet, IPv4 and UDP)
// over and over, each pass stamped after the one before (its datagrams as
// far apart as in from, passes one millisecond apart) and sent from the
// next of exporters addresses (10.0.0.1 up), so that every exporter gets
// the capture's templates before its data. The UDP checksum is left out
// (0, as IPv4 allows), the IPv4 checksum made again.
func benchTelemetry(pw packetWriter, from string, packets, exporters int) error {
	f, err := os.Open(from)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", from, err)
	}
	type frame struct {
		data []byte
		at   time.Duration // after the first
	}
	var frames []frame
	var first time.Time
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w", from, err)
		}
		if len(data) < 14+20+8 || binary.BigEndian.Uint16(data[12:]) != 0x0800 || data[14]>>4 != 4 || data[14+9] != 17 {
			return fmt.Errorf("%s: a frame that is not Ethernet, IPv4 and UDP", from)
		}
		if len(frames) == 0 {
			first = ci.Timestamp
		}
		frames = append(frames, frame{data: data, at: ci.Timestamp.Sub(first)})
	}
	if len(frames) == 0 {
		return fmt.Errorf("%s: no datagrams", from)
	}
	pass := frames[len(frames)-1].at + time.Millisecond
	at := time.Date(2024, 3, 19, 12, 0, 0, 0, time.UTC)
	buf := make([]byte, 65536)
	for i := 0; i < packets; i++ {
		fr := frames[i%len(frames)]
		n := i / len(frames)
		b := buf[:copy(buf, fr.data)]
		ip := b[14:]
		ihl := int(ip[0]&0xf) * 4
		binary.BigEndian.PutUint32(ip[12:], 10<<24|uint32(n%exporters+1))
		ip[10], ip[11] = 0, 0
		binary.BigEndian.PutUint16(ip[10:], gopacket.FoldChecksum(gopacket.ComputeChecksum(ip[:ihl], 0)))
		if len(ip) >= ihl+8 {
			ip[ihl+6], ip[ihl+7] = 0, 0
		}
		ts := at.Add(time.Duration(n)*pass + fr.at)
		if err := pw.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(b), Length: len(b)}, b); err != nil {
			return err
		}
	}
	return nil
}
