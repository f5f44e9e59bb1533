package main

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// dropPrivileges makes the process run as the named user (and its primary
// group) from here on. A live sensor started as root opens its capture
// first, which needs root, then gives root up: a parser of hostile bytes
// should not run with it. The open capture keeps working.
func dropPrivileges(name string) (uid, gid int, err error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, fmt.Errorf("--user %s: %w", name, err)
	}
	uid, err = strconv.Atoi(u.Uid)
	if err != nil {
		return 0, 0, fmt.Errorf("--user %s: uid %q is not a number", name, u.Uid)
	}
	gid, err = strconv.Atoi(u.Gid)
	if err != nil {
		return 0, 0, fmt.Errorf("--user %s: gid %q is not a number", name, u.Gid)
	}
	if os.Geteuid() != 0 {
		if os.Geteuid() == uid {
			return uid, gid, nil // already that user
		}
		return 0, 0, fmt.Errorf("--user %s: only root can change user", name)
	}
	// Groups first, then the group, then the user: after Setuid nothing
	// else may be changed. Go applies these to every thread of the process.
	if err := syscall.Setgroups([]int{gid}); err != nil {
		return 0, 0, fmt.Errorf("--user %s: setgroups: %w", name, err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return 0, 0, fmt.Errorf("--user %s: setgid: %w", name, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return 0, 0, fmt.Errorf("--user %s: setuid: %w", name, err)
	}
	return uid, gid, nil
}
