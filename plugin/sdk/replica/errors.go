package replica

import (
	"errors"

	"google.golang.org/grpc/codes"

	"github.com/custos-ha/custos/plugin/sdk"
)

// Sentinel errors of the replica contract. Plugins return them (wrapped or
// not); the host matches them with errors.Is after they crossed the wire.
// Any other error is a failed copy, its message saying why.
// ErrDataDirNotEmpty and ErrInvalidRequest are also the bootstrap kind's
// (ClaimDataDir serves both), so their messages do not name a kind.
var (
	// ErrDataDirNotEmpty: the target data directory exists and is not
	// empty; nothing was touched.
	ErrDataDirNotEmpty = errors.New("data directory is not empty")
	// ErrUnknownMethod: the plugin does not serve the requested method.
	ErrUnknownMethod = errors.New("replica: unknown replica method")
	// ErrNoSource: the method needs a member to copy from and the request
	// has none.
	ErrNoSource = errors.New("replica: no source member to copy from")
	// ErrInvalidRequest: the request itself is unusable (no data
	// directory, a password in the connection string, ...).
	ErrInvalidRequest = errors.New("invalid request")
)

// sentinels maps each sentinel onto the gRPC code that carries it. A
// *sdk.ConfigError travels as InvalidArgument with its problems attached;
// ErrInvalidRequest shares the code and is told apart by having none.
var sentinels = []sdk.Sentinel{
	{Err: ErrDataDirNotEmpty, Code: codes.AlreadyExists},
	{Err: ErrUnknownMethod, Code: codes.Unimplemented},
	{Err: ErrNoSource, Code: codes.FailedPrecondition},
	{Err: ErrInvalidRequest, Code: codes.InvalidArgument},
}

func toStatus(err error) error   { return sdk.ToStatus(err, sentinels) }
func fromStatus(err error) error { return sdk.FromStatus(err, sentinels) }
