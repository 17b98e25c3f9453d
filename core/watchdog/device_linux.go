//go:build linux

package watchdog

import (
	"errors"
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sys is the seam between the device driver and the kernel, so tests can
// check the exact calls without a device.
type sys struct {
	open func(path string, flags int) (fd int, err error)
	// ioctl passes arg as a pointer to a C int; the kernel may write it.
	ioctl  func(fd int, req uint, arg *int) error
	write  func(fd int, p []byte) (int, error)
	close  func(fd int) error
	access func(path string) error // writable by this process?
}

var kernel = sys{
	open:   func(path string, flags int) (int, error) { return unix.Open(path, flags, 0) },
	ioctl:  ioctlInt,
	write:  unix.Write,
	close:  unix.Close,
	access: func(path string) error { return unix.Access(path, unix.W_OK) },
}

func ioctlInt(fd int, req uint, arg *int) error {
	v := int32(*arg)
	for {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(unsafe.Pointer(&v)))
		if errno == unix.EINTR {
			continue
		}
		*arg = int(v)
		if errno != 0 {
			return errno
		}
		return nil
	}
}

// device is the Linux watchdog device driver. The device stays open while
// armed and only then.
type device struct {
	path string
	sys  sys
	fd   int // -1 when closed
	want int // seconds asked for
	secs int // seconds in effect
}

func newDevice(path string) driver { return newDeviceWith(path, kernel) }

func newDeviceWith(path string, s sys) *device { return &device{path: path, sys: s, fd: -1} }

func (d *device) describe() string { return "watchdog device " + d.path }

func (d *device) usable() error {
	if d.fd >= 0 {
		return nil
	}
	// Only checked, never opened: opening starts the countdown.
	if err := d.sys.access(d.path); err != nil {
		return fmt.Errorf("watchdog device %s: %w", d.path, err)
	}
	return nil
}

func (d *device) arm(timeout time.Duration, _ Target) (time.Duration, error) {
	secs := int(timeout / time.Second) // whole seconds, rounded down: never later than asked
	if d.fd >= 0 && secs == d.want {
		return time.Duration(d.secs) * time.Second, nil
	}
	if d.fd < 0 {
		// Opening starts the device's countdown; O_CLOEXEC keeps it out
		// of the processes the agent starts (a child holding it open
		// would keep the device armed after our magic close).
		fd, err := d.sys.open(d.path, unix.O_WRONLY|unix.O_CLOEXEC)
		if err != nil {
			return 0, fmt.Errorf("opening %s: %w", d.path, err)
		}
		d.fd = fd
	}
	v := secs
	if err := d.sys.ioctl(d.fd, unix.WDIOC_SETTIMEOUT, &v); err != nil {
		return 0, errors.Join(fmt.Errorf("setting the timeout of %s to %ds: %w", d.path, secs, err), d.disarm())
	}
	got := 0
	if err := d.sys.ioctl(d.fd, unix.WDIOC_GETTIMEOUT, &got); err != nil {
		return 0, errors.Join(fmt.Errorf("reading back the timeout of %s: %w", d.path, err), d.disarm())
	}
	if got > secs {
		return 0, errors.Join(fmt.Errorf("%s: timeout set to %ds but the device reports %ds, which would fire after the leader key expired", d.path, secs, got), d.disarm())
	}
	if got < 1 {
		return 0, errors.Join(fmt.Errorf("%s: timeout set to %ds but the device reports %ds", d.path, secs, got), d.disarm())
	}
	d.want, d.secs = secs, got
	return time.Duration(got) * time.Second, nil
}

func (d *device) feed() error {
	if d.fd < 0 {
		return nil
	}
	var unused int
	if err := d.sys.ioctl(d.fd, unix.WDIOC_KEEPALIVE, &unused); err != nil {
		return fmt.Errorf("keepalive of %s: %w", d.path, err)
	}
	return nil
}

// disarm is the magic close: writing 'V' just before closing tells the
// driver the close is deliberate, so it stops the countdown (a device
// with nowayout set keeps counting: the kernel's choice).
func (d *device) disarm() error {
	if d.fd < 0 {
		return nil
	}
	n, werr := d.sys.write(d.fd, []byte("V"))
	if werr == nil && n != 1 {
		werr = fmt.Errorf("wrote %d bytes", n)
	}
	cerr := d.sys.close(d.fd)
	d.fd, d.want, d.secs = -1, 0, 0
	if werr != nil {
		return fmt.Errorf("magic close of %s: writing 'V': %w (the device may still fire)", d.path, werr)
	}
	if cerr != nil {
		return fmt.Errorf("closing %s: %w", d.path, cerr)
	}
	return nil
}

func (d *device) armed() bool  { return d.fd >= 0 }
func (d *device) close() error { return d.disarm() }
