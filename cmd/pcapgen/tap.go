package main

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// tapOutputs splits a capture as a passive tap's two outputs see it: a
// holds the frames sent by the hosts of side, b every other frame. Both
// keep the capture's times, link type and snap length; na and nb count
// their frames.
func tapOutputs(capture []byte, side []netip.Addr) (a, b []byte, na, nb int, err error) {
	r, err := pcapgo.NewReader(bytes.NewReader(capture))
	if err != nil {
		return nil, nil, 0, 0, err
	}
	var outs [2]bytes.Buffer
	var ws [2]*pcapgo.Writer
	var n [2]int
	for i := range ws {
		ws[i] = pcapgo.NewWriter(&outs[i])
		if err := ws[i].WriteFileHeader(r.Snaplen(), r.LinkType()); err != nil {
			return nil, nil, 0, 0, err
		}
	}
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			break // the end of a capture written whole
		}
		p := gopacket.NewPacket(data, r.LinkType(), gopacket.NoCopy)
		ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if !ok {
			return nil, nil, 0, 0, fmt.Errorf("tap: a frame at %v without IPv4", ci.Timestamp)
		}
		src, _ := netip.AddrFromSlice(ip.SrcIP)
		out := 1
		if slices.Contains(side, src) {
			out = 0
		}
		if err := ws[out].WritePacket(ci, data); err != nil {
			return nil, nil, 0, 0, err
		}
		n[out]++
	}
	return outs[0].Bytes(), outs[1].Bytes(), n[0], n[1], nil
}
