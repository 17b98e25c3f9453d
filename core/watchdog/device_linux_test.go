//go:build linux

package watchdog

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/sys/unix"
)

// fakeDevice stands in for the kernel behind the device driver's seam and
// records every call, in order.
type fakeDevice struct {
	calls []string
	fd    int // the fd open returns; -1 when closed

	accessErr, openErr, setErr, getErr, keepErr, writeErr error
	timeout                                               int // what the device keeps
	report                                                int // when set, GETTIMEOUT says this instead
}

func (f *fakeDevice) record(format string, args ...any) {
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

func (f *fakeDevice) sys() sys {
	return sys{
		access: func(path string) error {
			f.record("access %s", path)
			return f.accessErr
		},
		open: func(path string, flags int) (int, error) {
			mode := "O_RDWR"
			switch flags & unix.O_ACCMODE {
			case unix.O_WRONLY:
				mode = "O_WRONLY"
			case unix.O_RDONLY:
				mode = "O_RDONLY"
			}
			if flags&unix.O_CLOEXEC != 0 {
				mode += "|O_CLOEXEC"
			}
			f.record("open %s %s", path, mode)
			if f.openErr != nil {
				return -1, f.openErr
			}
			f.fd = 7
			return f.fd, nil
		},
		ioctl: func(fd int, req uint, arg *int) error {
			f.checkFD(fd)
			switch req {
			case unix.WDIOC_SETTIMEOUT:
				f.record("ioctl WDIOC_SETTIMEOUT %d", *arg)
				if f.setErr != nil {
					return f.setErr
				}
				f.timeout = *arg
			case unix.WDIOC_GETTIMEOUT:
				if f.getErr != nil {
					f.record("ioctl WDIOC_GETTIMEOUT")
					return f.getErr
				}
				*arg = f.timeout
				if f.report != 0 {
					*arg = f.report
				}
				f.record("ioctl WDIOC_GETTIMEOUT -> %d", *arg)
			case unix.WDIOC_KEEPALIVE:
				f.record("ioctl WDIOC_KEEPALIVE")
				return f.keepErr
			default:
				f.record("ioctl %#x", req)
				return unix.ENOTTY
			}
			return nil
		},
		write: func(fd int, p []byte) (int, error) {
			f.checkFD(fd)
			f.record("write %q", p)
			if f.writeErr != nil {
				return 0, f.writeErr
			}
			return len(p), nil
		},
		close: func(fd int) error {
			f.checkFD(fd)
			f.record("close")
			f.fd = -1
			return nil
		},
	}
}

func (f *fakeDevice) checkFD(fd int) {
	if fd != f.fd || fd < 0 {
		f.record("BAD FD %d (open: %d)", fd, f.fd)
	}
}

// take returns the calls since the last take.
func (f *fakeDevice) take() string {
	s := strings.Join(f.calls, "\n")
	f.calls = nil
	return s
}

func newFakeWatchdog(mode string, margin time.Duration, f *fakeDevice) *Watchdog {
	w := New(Config{Mode: mode, Driver: DriverDefault, Device: "/dev/watchdog", SafetyMargin: margin}, nil)
	w.drv = newDeviceWith("/dev/watchdog", f.sys())
	w.publish()
	return w
}

func wantCalls(t *testing.T, f *fakeDevice, want ...string) {
	t.Helper()
	if got := f.take(); got != strings.Join(want, "\n") {
		t.Errorf("calls:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
}

var postmaster = Target{Pid: 4242, StartTime: 99}

func TestDeviceSequence(t *testing.T) {
	f := &fakeDevice{fd: -1}
	w := newFakeWatchdog(ModeRequired, 5*time.Second, f)

	if err := w.Healthy(30*time.Second, 10*time.Second); err != nil {
		t.Fatalf("Healthy: %v", err)
	}
	wantCalls(t, f, "access /dev/watchdog") // never opened: that would arm it

	if err := w.Feed(); err != nil {
		t.Fatalf("Feed while disarmed: %v", err)
	}
	wantCalls(t, f) // nothing to feed

	if err := w.Arm(30*time.Second, 10*time.Second, postmaster); err != nil {
		t.Fatalf("Arm: %v", err)
	}
	wantCalls(t, f,
		"open /dev/watchdog O_WRONLY|O_CLOEXEC",
		"ioctl WDIOC_SETTIMEOUT 25", // ttl 30 - safety_margin 5
		"ioctl WDIOC_GETTIMEOUT -> 25")
	if st := w.Status(); !st.Armed || st.Failed || st.Timeout != 25*time.Second || st.Reason != "" || !w.Armed() {
		t.Errorf("status after Arm = %+v", st)
	}

	if err := w.Feed(); err != nil {
		t.Fatalf("Feed: %v", err)
	}
	wantCalls(t, f, "ioctl WDIOC_KEEPALIVE")

	// The same values again: nothing to do, and a new postmaster does not
	// matter to a device.
	if err := w.Arm(30*time.Second, 10*time.Second, Target{Pid: 5000, StartTime: 1}); err != nil {
		t.Fatalf("Arm again: %v", err)
	}
	wantCalls(t, f)

	// ttl changed: the running device gets the new timeout.
	if err := w.Arm(20*time.Second, 5*time.Second, postmaster); err != nil {
		t.Fatalf("re-Arm: %v", err)
	}
	wantCalls(t, f, "ioctl WDIOC_SETTIMEOUT 15", "ioctl WDIOC_GETTIMEOUT -> 15")
	if st := w.Status(); st.Timeout != 15*time.Second {
		t.Errorf("timeout after re-Arm = %v, want 15s", st.Timeout)
	}

	if err := w.Disarm(); err != nil {
		t.Fatalf("Disarm: %v", err)
	}
	wantCalls(t, f, `write "V"`, "close") // the magic close
	if w.Armed() || w.Status().Armed {
		t.Errorf("still armed after Disarm: %+v", w.Status())
	}
	if err := w.Disarm(); err != nil {
		t.Fatalf("second Disarm: %v", err)
	}
	if err := w.Feed(); err != nil {
		t.Fatalf("Feed after Disarm: %v", err)
	}
	wantCalls(t, f)

	// Close disarms an armed device. A device needs no postmaster (it
	// resets the machine), so it arms without one.
	if err := w.Arm(30*time.Second, 10*time.Second, Target{}); err != nil {
		t.Fatalf("Arm: %v", err)
	}
	f.take()
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wantCalls(t, f, `write "V"`, "close")
	if err := w.Arm(30*time.Second, 10*time.Second, postmaster); !errors.Is(err, errClosed) {
		t.Errorf("Arm after Close = %v, want errClosed", err)
	}
}

func TestDeviceTimeoutArithmetic(t *testing.T) {
	tests := []struct {
		ttl, margin, loopWait time.Duration
		set                   string // the SETTIMEOUT call, "" when refused
		refusal               string
	}{
		{30 * time.Second, 5 * time.Second, 10 * time.Second, "ioctl WDIOC_SETTIMEOUT 25", ""},
		{30 * time.Second, -1 * time.Second, 10 * time.Second, "ioctl WDIOC_SETTIMEOUT 15", ""},                 // -1: ttl/2
		{13 * time.Second, -1 * time.Second, 2 * time.Second, "ioctl WDIOC_SETTIMEOUT 6", ""},                   // 6.5 s rounds down
		{10*time.Second + 900*time.Millisecond, 0, 2 * time.Second, "ioctl WDIOC_SETTIMEOUT 10", ""},            // never later than asked
		{5 * time.Second, 5 * time.Second, 0, "", "watchdog timeout 0s (ttl 5s, safety_margin 5s) is below 1s"}, // nothing left
		{1 * time.Second, -1 * time.Second, 0, "", "is below 1s"},
		{30 * time.Second, 25 * time.Second, 10 * time.Second, "", "watchdog timeout 5s (ttl 30s, safety_margin 25s) is not longer than loop_wait 10s"},
		{20 * time.Second, -1 * time.Second, 10 * time.Second, "", "not longer than loop_wait"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("ttl=%v,margin=%v,loop_wait=%v", tc.ttl, tc.margin, tc.loopWait), func(t *testing.T) {
			f := &fakeDevice{fd: -1}
			w := newFakeWatchdog(ModeRequired, tc.margin, f)
			herr := w.Healthy(tc.ttl, tc.loopWait)
			f.take()
			err := w.Arm(tc.ttl, tc.loopWait, postmaster)
			calls := f.take()
			if tc.refusal != "" {
				if err == nil || !strings.Contains(err.Error(), tc.refusal) {
					t.Errorf("Arm = %v, want an error containing %q", err, tc.refusal)
				}
				if herr == nil || !strings.Contains(herr.Error(), tc.refusal) {
					t.Errorf("Healthy = %v, want an error containing %q", herr, tc.refusal)
				}
				if calls != "" {
					t.Errorf("the device was touched:\n%s", calls)
				}
				if st := w.Status(); st.Armed || !st.Failed || !strings.Contains(st.Reason, tc.refusal) {
					t.Errorf("status = %+v", st)
				}
				return
			}
			if err != nil || herr != nil {
				t.Fatalf("Healthy = %v, Arm = %v", herr, err)
			}
			if !strings.Contains(calls, tc.set) {
				t.Errorf("calls:\n%s\nwant %q", calls, tc.set)
			}
		})
	}
}

func TestDeviceFailures(t *testing.T) {
	tests := []struct {
		name  string
		setup func(*fakeDevice)
		calls []string
		want  []string // in the error
	}{
		{"open ENOENT", func(f *fakeDevice) { f.openErr = unix.ENOENT },
			[]string{"open /dev/watchdog O_WRONLY|O_CLOEXEC"},
			[]string{"opening /dev/watchdog", "no such file or directory"}},
		{"open EACCES", func(f *fakeDevice) { f.openErr = unix.EACCES },
			[]string{"open /dev/watchdog O_WRONLY|O_CLOEXEC"},
			[]string{"opening /dev/watchdog", "permission denied"}},
		{"SETTIMEOUT EINVAL", func(f *fakeDevice) { f.setErr = unix.EINVAL },
			[]string{"open /dev/watchdog O_WRONLY|O_CLOEXEC", "ioctl WDIOC_SETTIMEOUT 25", `write "V"`, "close"},
			[]string{"setting the timeout of /dev/watchdog to 25s", "invalid argument"}},
		{"GETTIMEOUT fails", func(f *fakeDevice) { f.getErr = unix.ENOTTY },
			[]string{"open /dev/watchdog O_WRONLY|O_CLOEXEC", "ioctl WDIOC_SETTIMEOUT 25", "ioctl WDIOC_GETTIMEOUT", `write "V"`, "close"},
			[]string{"reading back the timeout"}},
		{"read back larger", func(f *fakeDevice) { f.report = 30 },
			[]string{"open /dev/watchdog O_WRONLY|O_CLOEXEC", "ioctl WDIOC_SETTIMEOUT 25", "ioctl WDIOC_GETTIMEOUT -> 30", `write "V"`, "close"},
			[]string{"timeout set to 25s but the device reports 30s", "after the leader key expired"}},
		{"read back not longer than loop_wait", func(f *fakeDevice) { f.report = 10 },
			[]string{"open /dev/watchdog O_WRONLY|O_CLOEXEC", "ioctl WDIOC_SETTIMEOUT 25", "ioctl WDIOC_GETTIMEOUT -> 10", `write "V"`, "close"},
			[]string{"its timeout is 10s, not longer than loop_wait 10s"}},
	}
	for _, tc := range tests {
		for _, mode := range []string{ModeRequired, ModeAutomatic} {
			t.Run(tc.name+"/"+mode, func(t *testing.T) {
				f := &fakeDevice{fd: -1}
				tc.setup(f)
				w := newFakeWatchdog(mode, 5*time.Second, f)
				err := w.Arm(30*time.Second, 10*time.Second, postmaster)
				wantCalls(t, f, tc.calls...)
				st := w.Status()
				if mode == ModeRequired {
					if err == nil {
						t.Fatal("Arm succeeded")
					}
					for _, want := range tc.want {
						if !strings.Contains(err.Error(), want) {
							t.Errorf("error %q lacks %q", err, want)
						}
					}
					if !st.Failed {
						t.Errorf("status = %+v, want Failed", st)
					}
					// Unhealthy for a ttl, so it does not race for the key
					// again at once.
					if herr := w.Healthy(30*time.Second, 10*time.Second); herr == nil || !strings.Contains(herr.Error(), tc.want[0]) {
						t.Errorf("Healthy after a failed Arm = %v", herr)
					}
				} else {
					if err != nil {
						t.Errorf("automatic: Arm = %v, want nil", err)
					}
					if st.Failed {
						t.Errorf("automatic: status = %+v, want not Failed", st)
					}
					if herr := w.Healthy(30*time.Second, 10*time.Second); herr != nil {
						t.Errorf("automatic: Healthy = %v", herr)
					}
				}
				if st.Armed || w.Armed() || f.fd >= 0 {
					t.Errorf("armed after a failed Arm: %+v, fd %d", st, f.fd)
				}
				if !strings.Contains(st.Reason, tc.want[0]) {
					t.Errorf("status reason %q lacks %q", st.Reason, tc.want[0])
				}
			})
		}
	}
}

func TestDeviceKeepaliveFails(t *testing.T) {
	f := &fakeDevice{fd: -1}
	w := newFakeWatchdog(ModeRequired, 5*time.Second, f)
	if err := w.Arm(30*time.Second, 10*time.Second, postmaster); err != nil {
		t.Fatal(err)
	}
	f.take()
	f.keepErr = unix.EIO
	err := w.Feed()
	if err == nil || !strings.Contains(err.Error(), "keepalive of /dev/watchdog") || !errors.Is(err, unix.EIO) {
		t.Errorf("Feed = %v", err)
	}
	wantCalls(t, f, "ioctl WDIOC_KEEPALIVE")
	// The device is still open and counting: it will fire unless a
	// later keepalive works.
	if st := w.Status(); !st.Armed || !st.Failed || !strings.Contains(st.Reason, "keepalive") {
		t.Errorf("status = %+v", st)
	}
	f.writeErr = unix.EIO
	if err := w.Disarm(); err == nil || !strings.Contains(err.Error(), "may still fire") {
		t.Errorf("Disarm with a failing write = %v", err)
	}
	wantCalls(t, f, `write "V"`, "close")
	if w.Armed() {
		t.Error("armed after Disarm")
	}
}

func TestDeviceHealthy(t *testing.T) {
	for _, tc := range []struct {
		mode string
		err  error
	}{{ModeRequired, unix.ENOENT}, {ModeRequired, unix.EACCES}, {ModeAutomatic, unix.ENOENT}, {ModeOff, unix.ENOENT}} {
		t.Run(tc.mode+"/"+tc.err.Error(), func(t *testing.T) {
			f := &fakeDevice{fd: -1, accessErr: tc.err}
			w := newFakeWatchdog(tc.mode, 5*time.Second, f)
			err := w.Healthy(30*time.Second, 10*time.Second)
			st := w.Status()
			switch tc.mode {
			case ModeRequired:
				if err == nil || !strings.Contains(err.Error(), "/dev/watchdog") || !errors.Is(err, tc.err) {
					t.Errorf("Healthy = %v, want an error naming the device", err)
				}
				if !st.Failed || !strings.Contains(st.Reason, "/dev/watchdog") {
					t.Errorf("status = %+v", st)
				}
			case ModeAutomatic:
				if err != nil || st.Failed || !strings.Contains(st.Reason, "/dev/watchdog") {
					t.Errorf("Healthy = %v, status %+v: want nil, not failed, the reason shown", err, st)
				}
			case ModeOff:
				if err != nil || st.Failed || st.Reason != "" || f.take() != "" {
					t.Errorf("off: Healthy = %v, status %+v", err, st)
				}
			}
		})
	}
}

func TestFailedArmBacksOffForTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeDevice{fd: -1, report: 30}
		w := newFakeWatchdog(ModeRequired, 5*time.Second, f)
		if err := w.Arm(30*time.Second, 10*time.Second, postmaster); err == nil {
			t.Fatal("Arm succeeded")
		}
		time.Sleep(29 * time.Second)
		if err := w.Healthy(30*time.Second, 10*time.Second); err == nil {
			t.Error("healthy 29 s after a failed Arm at ttl 30 s")
		}
		time.Sleep(time.Second)
		if err := w.Healthy(30*time.Second, 10*time.Second); err != nil {
			t.Errorf("still unhealthy a ttl after the failed Arm: %v", err)
		}
		if st := w.Status(); st.Failed || st.Reason != "" {
			t.Errorf("status = %+v", st)
		}
		f.report = 0
		if err := w.Arm(30*time.Second, 10*time.Second, postmaster); err != nil {
			t.Errorf("Arm: %v", err)
		}
	})
}

func TestRequiredWithoutDevice(t *testing.T) {
	// The real kernel: this path does not exist.
	dev := filepath.Join(t.TempDir(), "watchdog")
	w := New(Config{Mode: ModeRequired, Driver: DriverDefault, Device: dev, SafetyMargin: 5 * time.Second}, nil)
	defer w.Close()
	err := w.Healthy(30*time.Second, 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), dev) || !errors.Is(err, unix.ENOENT) {
		t.Errorf("Healthy = %v, want an error naming %s", err, dev)
	}
	if st := w.Status(); !st.Failed || st.Armed || !strings.Contains(st.Reason, dev) || st.Mode != ModeRequired || st.Driver != DriverDefault {
		t.Errorf("status = %+v", st)
	}
	err = w.Arm(30*time.Second, 10*time.Second, postmaster)
	if err == nil || !strings.Contains(err.Error(), dev) {
		t.Errorf("Arm = %v, want an error naming %s", err, dev)
	}

	// automatic goes on without it, and says why.
	a := New(Config{Mode: ModeAutomatic, Device: dev, SafetyMargin: 5 * time.Second}, nil)
	defer a.Close()
	if err := a.Healthy(30*time.Second, 10*time.Second); err != nil {
		t.Errorf("automatic Healthy = %v", err)
	}
	if err := a.Arm(30*time.Second, 10*time.Second, postmaster); err != nil {
		t.Errorf("automatic Arm = %v", err)
	}
	if st := a.Status(); st.Failed || st.Armed || !strings.Contains(st.Reason, dev) {
		t.Errorf("automatic status = %+v", st)
	}
}

func TestUnknownModeOrDriverFailsClosed(t *testing.T) {
	for _, cfg := range []Config{{Mode: "sometimes"}, {Mode: ModeAutomatic, Driver: "softdog"}} {
		w := New(cfg, nil)
		err := w.Healthy(30*time.Second, 10*time.Second)
		if cfg.Mode == ModeAutomatic {
			if err != nil || !strings.Contains(w.Status().Reason, "softdog") {
				t.Errorf("%+v: Healthy = %v, status %+v", cfg, err, w.Status())
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "sometimes") || !w.Status().Failed {
			t.Errorf("%+v: Healthy = %v, status %+v", cfg, err, w.Status())
		}
		if err := w.Arm(30*time.Second, 10*time.Second, postmaster); err == nil {
			t.Errorf("%+v: Arm succeeded", cfg)
		}
	}
}

// A renewal answered late restarts the countdown with a shorter timeout,
// so that it still runs out the safety margin before the key's expiry; the
// next timely renewal restores the timeout.
func TestFeedBeforeShortensALateRenewal(t *testing.T) {
	f := &fakeDevice{fd: -1}
	w := newFakeWatchdog(ModeRequired, 5*time.Second, f)
	if err := w.Arm(30*time.Second, 10*time.Second, postmaster); err != nil {
		t.Fatalf("Arm: %v", err)
	}
	f.take()

	// Answered at once: the key lives 30 s, the countdown its 25 s.
	if err := w.FeedBefore(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, f, "ioctl WDIOC_KEEPALIVE")

	// Answered 10 s after it was sent: 20 s of the key left, so at most
	// 15 s (rounded down) before the watchdog fires.
	if err := w.FeedBefore(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, f, "ioctl WDIOC_SETTIMEOUT 14", "ioctl WDIOC_GETTIMEOUT -> 14", "ioctl WDIOC_KEEPALIVE")
	if st := w.Status(); st.Timeout != 14*time.Second || !st.Armed {
		t.Errorf("status after a late renewal = %+v", st)
	}

	// Later than the safety margin allows at all: the shortest timeout.
	if err := w.FeedBefore(time.Now().Add(3 * time.Second)); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, f, "ioctl WDIOC_SETTIMEOUT 1", "ioctl WDIOC_GETTIMEOUT -> 1", "ioctl WDIOC_KEEPALIVE")

	// Timely again: the configured timeout is back.
	if err := w.FeedBefore(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, f, "ioctl WDIOC_SETTIMEOUT 25", "ioctl WDIOC_GETTIMEOUT -> 25", "ioctl WDIOC_KEEPALIVE")
	if err := w.FeedBefore(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, f, "ioctl WDIOC_KEEPALIVE")
}
