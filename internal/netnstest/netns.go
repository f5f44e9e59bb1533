//go:build linux

// Package netnstest lets tests run code inside a network namespace that
// `ip netns add` made.
package netnstest

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Do runs fn on an OS thread of its own that has entered network namespace
// ns. Sockets and capture handles opened there stay in ns wherever they
// are used later. The thread is never unlocked, so Go ends it with its
// goroutine and no other goroutine runs in ns.
func Do(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open("/run/netns/" + ns)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}
