package bootstrap

import (
	"context"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	bootstrapv1 "github.com/custos-ha/custos/plugin/sdk/proto/custos/bootstrap/v1"
)

// server exposes a Creator over gRPC inside the plugin process.
type server struct {
	bootstrapv1.UnimplementedBootstrapServiceServer
	impl Creator
}

func (s *server) Validate(ctx context.Context, req *bootstrapv1.ValidateRequest) (*bootstrapv1.ValidateResponse, error) {
	return &bootstrapv1.ValidateResponse{}, toStatus(s.impl.Validate(ctx, req.GetMethod(), req.GetConfigJson()))
}

func (s *server) CreateCluster(stream bootstrapv1.BootstrapService_CreateClusterServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	preq := first.GetRequest()
	if preq == nil {
		return status.Error(codes.InvalidArgument, "create cluster: the first message must carry the request")
	}
	req, err := requestFromProto(preq)
	if err == nil {
		err = req.Check()
	}
	if err != nil {
		return toStatus(err)
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	// The client asks to stop with a cancel message or by half-closing; the
	// creation then runs its cleanup and the handler still reports how it
	// ended. This goroutine ends when the stream does, which is right after
	// the handler returns.
	go func() {
		for {
			in, err := stream.Recv()
			if err != nil || in.GetCancel() != nil {
				cancel()
				return
			}
		}
	}()
	var (
		mu      sync.Mutex
		sendErr error
	)
	res, err := s.impl.CreateCluster(ctx, req, func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		if sendErr != nil {
			return
		}
		if sendErr = stream.Send(progressToProto(p)); sendErr != nil {
			cancel()
		}
	})
	if err != nil {
		return toStatus(err)
	}
	// The result goes as it is: the host checks it (Result.Check) and
	// removes the data directory when it cannot use it.
	mu.Lock()
	defer mu.Unlock()
	return stream.Send(resultToProto(res))
}
