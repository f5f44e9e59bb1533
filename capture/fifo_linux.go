package capture

import (
	"cmp"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// openInput opens a capture file to read. A named pipe is opened without
// waiting for a writer, which open(2) would do with no way to stop it:
// awaitWriter waits instead.
func openInput(name string) (*os.File, error) {
	flag := os.O_RDONLY
	if st, err := os.Stat(name); err == nil && st.Mode()&os.ModeNamedPipe != 0 {
		flag |= syscall.O_NONBLOCK
	}
	return os.OpenFile(name, flag, 0)
}

// awaitWriter waits until a named pipe opened by openInput has data, or a
// writer that came and went; it returns at once for any other file. It
// waits in the runtime's poller, so that closing f ends the wait: reading a
// pipe with no writer yet would return the end of the file, not wait.
func awaitWriter(f *os.File) error {
	if st, err := f.Stat(); err != nil || st.Mode()&os.ModeNamedPipe == 0 {
		return nil
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var pollErr error
	err = rc.Read(func(fd uintptr) bool {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(p, 0)
		if err == unix.EINTR {
			return false
		}
		pollErr = err
		return n > 0 || err != nil
	})
	return cmp.Or(err, pollErr)
}
