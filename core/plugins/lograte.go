package plugins

import (
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/time/rate"
)

const (
	// pluginLogRate is how many of a plugin's stderr lines per second the
	// host re-emits, sustained. A healthy plugin logs a few lines per HA
	// cycle; one that logs faster is in a loop (a retry without backoff, a
	// stack dump per call), and re-emitting all of it would fill the
	// agent's disk or journal and cost it CPU the HA loop needs.
	pluginLogRate = 50
	// pluginLogBurst is how many lines may come at once above that rate:
	// enough for a start-up, or a Go panic's trace of a plugin's few
	// goroutines, to come through whole.
	pluginLogBurst = 500
	// droppedReportInterval paces the warning that counts dropped lines:
	// one line per interval while a plugin floods, so the count itself
	// cannot flood.
	droppedReportInterval = 10 * time.Second
)

// stderrLimiter caps the stderr lines of one plugin process that the host
// re-emits. go-plugin reads the plugin's stderr and logs each line through
// ClientConfig.Logger.Named(<binary>); the logger handed to go-plugin
// (logger) returns, from Named, one whose line methods pass a token bucket
// first. go-plugin's own messages (process started, exited) do not go
// through Named and are never dropped.
type stderrLimiter struct {
	base   hclog.Logger // where the drop counts are reported
	bucket *rate.Limiter

	mu         sync.Mutex
	dropped    int
	lastReport time.Time
	now        func() time.Time
}

func newStderrLimiter(base hclog.Logger) *stderrLimiter {
	return &stderrLimiter{base: base, bucket: rate.NewLimiter(pluginLogRate, pluginLogBurst), now: time.Now}
}

// logger is the logger to give go-plugin.
func (l *stderrLimiter) logger() hclog.Logger { return namedLimited{Logger: l.base, lim: l} }

// allow takes a token for one line; a line without one is counted as
// dropped. The count is reported at most every droppedReportInterval, and
// by flush.
func (l *stderrLimiter) allow() bool {
	now := l.now()
	ok := l.bucket.AllowN(now, 1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if !ok {
		if l.dropped == 0 && now.Sub(l.lastReport) >= droppedReportInterval {
			// The first drop of a flood says so at once.
			l.lastReport = now
			l.base.Warn("plugin logs too fast; dropping its lines above the limit", "lines_per_second", pluginLogRate, "burst", pluginLogBurst)
		}
		l.dropped++
		return false
	}
	if l.dropped > 0 && now.Sub(l.lastReport) >= droppedReportInterval {
		l.reportLocked(now)
	}
	return true
}

// flush reports the lines dropped since the last report, if any: when the
// process has ended and no line will come to trigger it.
func (l *stderrLimiter) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dropped > 0 {
		l.reportLocked(l.now())
	}
}

func (l *stderrLimiter) reportLocked(now time.Time) {
	l.base.Warn("plugin log lines dropped", "dropped", l.dropped, "since", l.lastReport.Format(time.RFC3339), "lines_per_second", pluginLogRate)
	l.dropped, l.lastReport = 0, now
}

// namedLimited is the logger go-plugin gets: only what it names is
// limited.
type namedLimited struct {
	hclog.Logger
	lim *stderrLimiter
}

func (n namedLimited) Named(name string) hclog.Logger {
	return limitedLines{Logger: n.Logger.Named(name), lim: n.lim}
}

// limitedLines drops the lines the limiter refuses.
type limitedLines struct {
	hclog.Logger
	lim *stderrLimiter
}

func (l limitedLines) Log(level hclog.Level, msg string, args ...interface{}) {
	if l.Logger.GetLevel() <= level && l.lim.allow() {
		l.Logger.Log(level, msg, args...)
	}
}

func (l limitedLines) Trace(msg string, args ...interface{}) { l.Log(hclog.Trace, msg, args...) }
func (l limitedLines) Debug(msg string, args ...interface{}) { l.Log(hclog.Debug, msg, args...) }
func (l limitedLines) Info(msg string, args ...interface{})  { l.Log(hclog.Info, msg, args...) }
func (l limitedLines) Warn(msg string, args ...interface{})  { l.Log(hclog.Warn, msg, args...) }
func (l limitedLines) Error(msg string, args ...interface{}) { l.Log(hclog.Error, msg, args...) }
