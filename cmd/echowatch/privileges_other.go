//go:build !linux

package main

// withNetRaw runs open: capabilities are Linux's.
func withNetRaw(open func() error) error { return open() }
