//go:build unix

package sinks

import "syscall"

// noFollow makes opening a file fail when its last component is a symbolic
// link: no one who can write to the evidence directory can send the
// sensor's writes elsewhere.
const noFollow = syscall.O_NOFOLLOW
