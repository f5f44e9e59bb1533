package main

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// withNetRaw runs open, which opens a live capture, with CAP_NET_RAW in
// effect on its thread when the process holds it only as permitted: the
// image's binary carries the file capability cap_net_raw=p, without the
// effective bit, so that the kernel runs it wherever the capability is
// not granted (an empty bounding set, a Kubernetes pod that drops ALL),
// where it reads files as well as ever, and lends the capability to it
// where it is (docker run --cap-add NET_RAW). Capabilities are a
// thread's: open runs on this thread, locked, and the capability leaves
// it again afterwards, permitted and effective. Root, whose capabilities
// are in effect already, goes through unchanged.
func withNetRaw(open func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	const bit = 1 << unix.CAP_NET_RAW // in data[0]: capabilities 0 to 31
	raised := false
	if unix.Capget(&hdr, &data[0]) == nil && data[0].Permitted&bit != 0 && data[0].Effective&bit == 0 {
		data[0].Effective |= bit
		raised = unix.Capset(&hdr, &data[0]) == nil
	}
	err := open()
	if raised {
		data[0].Effective &^= bit
		data[0].Permitted &^= bit
		unix.Capset(&hdr, &data[0]) // it can only give up what it holds
	}
	return err
}
