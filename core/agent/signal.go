package agent

import (
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// reloadTimeout bounds a configuration reload (reading the file, rendering
// postgresql.conf, SIGHUP to the postmaster).
const reloadTimeout = 30 * time.Second

// onSIGHUP runs fn for every SIGHUP until the returned stop is called.
func onSIGHUP(fn func()) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ch:
				fn()
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
		wg.Wait()
	}
}
