package callback

import (
	"errors"

	"google.golang.org/grpc/codes"

	"github.com/custos-ha/custos/plugin/sdk"
)

// Sentinel errors of the callback contract. The host matches them with
// errors.Is after they crossed the wire. Any other error from Deliver is
// the event's failure, its message saying why.
var (
	// ErrInvalidEvent: the event breaks the contract's rules (Seq 0, no
	// Action, no Time, or a Time the wire cannot carry); it was not
	// delivered. The SDK refuses such an event on both sides, so a plugin
	// never sees one.
	ErrInvalidEvent = errors.New("callback: invalid event")
)

// sentinels maps each sentinel onto the gRPC code that carries it. A
// *sdk.ConfigError travels as InvalidArgument with its problems attached;
// ErrInvalidEvent shares the code and is told apart by having none.
var sentinels = []sdk.Sentinel{
	{Err: ErrInvalidEvent, Code: codes.InvalidArgument},
}

func toStatus(err error) error   { return sdk.ToStatus(err, sentinels) }
func fromStatus(err error) error { return sdk.FromStatus(err, sentinels) }
