package dcs

import (
	"errors"

	"google.golang.org/grpc/codes"

	"github.com/custos-ha/custos/plugin/sdk"
)

// Sentinel errors of the DCS contract. Backends return them (wrapped or
// not); the host matches them with errors.Is after they crossed the wire.
var (
	// ErrVersionMismatch: a compare-and-set or compare-and-delete found
	// another version, or the leader key holds another member's name.
	ErrVersionMismatch = errors.New("dcs: version mismatch")
	// ErrExists: a create-only write found the key present (leader race
	// lost, cluster already initialized).
	ErrExists = errors.New("dcs: key already exists")
	// ErrNotFound: a compare-and-set or compare-and-delete with a version
	// found no key.
	ErrNotFound = errors.New("dcs: key not found")
	// ErrUnavailable: the store cannot be reached or did not answer in time.
	ErrUnavailable = errors.New("dcs: store unavailable")
)

// sentinels maps each sentinel onto the gRPC code that carries it.
var sentinels = []sdk.Sentinel{
	{Err: ErrVersionMismatch, Code: codes.FailedPrecondition},
	{Err: ErrExists, Code: codes.AlreadyExists},
	{Err: ErrNotFound, Code: codes.NotFound},
	{Err: ErrUnavailable, Code: codes.Unavailable},
}

func toStatus(err error) error   { return sdk.ToStatus(err, sentinels) }
func fromStatus(err error) error { return sdk.FromStatus(err, sentinels) }
