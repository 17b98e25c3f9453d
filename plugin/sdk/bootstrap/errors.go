package bootstrap

import (
	"errors"

	"google.golang.org/grpc/codes"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/replica"
)

// Sentinel errors of the bootstrap contract. Plugins return them (wrapped
// or not); the host matches them with errors.Is after they crossed the
// wire. Any other error from CreateCluster is a failed creation, its
// message saying why.
var (
	// ErrDataDirNotEmpty: the target data directory exists and is not
	// empty; nothing was touched. It is replica.ErrDataDirNotEmpty: both
	// kinds claim their directory with replica.ClaimDataDir.
	ErrDataDirNotEmpty = replica.ErrDataDirNotEmpty
	// ErrInvalidRequest: the request itself is unusable (see
	// Request.Check), or it has a Target and the method does not restore
	// to one. It is replica.ErrInvalidRequest, which replica.ClaimDataDir
	// returns for an empty path.
	ErrInvalidRequest = replica.ErrInvalidRequest
	// ErrUnknownMethod: the plugin does not serve the requested method.
	ErrUnknownMethod = errors.New("bootstrap: unknown bootstrap method")
	// ErrInvalidResult: the plugin reported success with a Result the
	// host cannot use (see Result.Check), or broke the stream's protocol
	// (no result, progress after it). Only the host's Client returns it;
	// the data directory then holds what the plugin made, and the host
	// removes it before trying again.
	ErrInvalidResult = errors.New("bootstrap: invalid result from plugin")
)

// sentinels maps each sentinel onto the gRPC code that carries it. A
// *sdk.ConfigError travels as InvalidArgument with its problems attached;
// ErrInvalidRequest shares the code and is told apart by having none.
var sentinels = []sdk.Sentinel{
	{Err: ErrDataDirNotEmpty, Code: codes.AlreadyExists},
	{Err: ErrUnknownMethod, Code: codes.Unimplemented},
	{Err: ErrInvalidRequest, Code: codes.InvalidArgument},
}

func toStatus(err error) error   { return sdk.ToStatus(err, sentinels) }
func fromStatus(err error) error { return sdk.FromStatus(err, sentinels) }
