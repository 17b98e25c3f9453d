package etcd3

import (
	"sort"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// zapLogger adapts hclog for the etcd client, which logs through zap. Its
// lines (retries, reconnects, balancer changes) are noise next to the
// backend's own, so they only show at debug level; the backend reports what
// matters through its errors and its own logs.
func zapLogger(logger hclog.Logger) *zap.Logger {
	return zap.New(&hclogCore{logger: logger})
}

type hclogCore struct {
	logger hclog.Logger
	fields []zapcore.Field
}

func (c *hclogCore) Enabled(zapcore.Level) bool { return c.logger.IsDebug() }

func (c *hclogCore) With(fields []zapcore.Field) zapcore.Core {
	return &hclogCore{logger: c.logger, fields: append(append([]zapcore.Field(nil), c.fields...), fields...)}
}

func (c *hclogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *hclogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fields {
		f.AddTo(enc)
	}
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	args := make([]any, 0, 2*len(keys)+2)
	args = append(args, "zap_level", e.Level.String())
	for _, k := range keys {
		args = append(args, k, enc.Fields[k])
	}
	c.logger.Debug(e.Message, args...)
	return nil
}

func (c *hclogCore) Sync() error { return nil }
