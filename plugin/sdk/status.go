package sdk

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Problem is one thing wrong with a plugin's configuration.
type Problem struct {
	// Path is the key path inside the plugin's section, dot-separated
	// ("hosts", "tls.cacert"); the host prefixes it with the section name.
	Path    string
	Message string
}

// ConfigError lists every problem found in a plugin's configuration.
// Plugins return it from Validate and Configure; it crosses the wire intact,
// so the host can name each key.
type ConfigError struct {
	Problems []Problem
}

// Add records a problem.
func (e *ConfigError) Add(path, format string, args ...any) {
	e.Problems = append(e.Problems, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

// OrNil returns e when it holds problems and nil otherwise, so that
// validation code can end with `return errs.OrNil()`.
func (e *ConfigError) OrNil() error {
	if e == nil || len(e.Problems) == 0 {
		return nil
	}
	return e
}

func (e *ConfigError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		if p.Path == "" {
			parts[i] = p.Message
		} else {
			parts[i] = p.Path + ": " + p.Message
		}
	}
	return "invalid plugin configuration: " + strings.Join(parts, "; ")
}

// Sentinel pairs a contract error with the gRPC code that carries it.
type Sentinel struct {
	Err  error
	Code codes.Code
}

// ToStatus turns an error returned by a plugin implementation into a gRPC
// status error. Errors matching one of the sentinels travel as its code;
// a *ConfigError travels as InvalidArgument with its problems attached;
// context errors keep their meaning.
func ToStatus(err error, sentinels []Sentinel) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok && !hasSentinel(err, sentinels) {
		return err
	}
	var cfgErr *ConfigError
	switch {
	case errors.As(err, &cfgErr):
		st := status.New(codes.InvalidArgument, err.Error())
		br := &errdetails.BadRequest{}
		for _, p := range cfgErr.Problems {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: p.Path, Description: p.Message})
		}
		if withDetails, derr := st.WithDetails(br); derr == nil {
			st = withDetails
		}
		return st.Err()
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	for _, s := range sentinels {
		if errors.Is(err, s.Err) {
			return status.Error(s.Code, err.Error())
		}
	}
	return status.Error(codes.Unknown, err.Error())
}

func hasSentinel(err error, sentinels []Sentinel) bool {
	for _, s := range sentinels {
		if errors.Is(err, s.Err) {
			return true
		}
	}
	return false
}

// FromStatus turns a gRPC error received by the host back into the
// contract's error: errors.Is matches the sentinel whose code it carries,
// a *ConfigError comes back with its problems, and the message is kept.
func FromStatus(err error, sentinels []Sentinel) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.InvalidArgument:
		cfgErr := &ConfigError{}
		for _, d := range st.Details() {
			if br, ok := d.(*errdetails.BadRequest); ok {
				for _, v := range br.GetFieldViolations() {
					cfgErr.Problems = append(cfgErr.Problems, Problem{Path: v.GetField(), Message: v.GetDescription()})
				}
			}
		}
		if len(cfgErr.Problems) > 0 {
			return cfgErr
		}
	case codes.Canceled:
		return &remoteError{msg: st.Message(), err: context.Canceled}
	case codes.DeadlineExceeded:
		return &remoteError{msg: st.Message(), err: context.DeadlineExceeded}
	}
	for _, s := range sentinels {
		if s.Code == st.Code() {
			return &remoteError{msg: st.Message(), err: s.Err}
		}
	}
	return &remoteError{msg: st.Message(), err: err}
}

// remoteError keeps the plugin's message and matches the sentinel.
type remoteError struct {
	msg string
	err error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.err }
