package replica

import (
	"context"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	replicav1 "github.com/custos-ha/custos/plugin/sdk/proto/custos/replica/v1"
)

// server exposes a Creator over gRPC inside the plugin process.
type server struct {
	replicav1.UnimplementedReplicaServiceServer
	impl Creator
}

func (s *server) Validate(ctx context.Context, req *replicav1.ValidateRequest) (*replicav1.ValidateResponse, error) {
	return &replicav1.ValidateResponse{}, toStatus(s.impl.Validate(ctx, req.GetMethod(), req.GetConfigJson()))
}

func (s *server) CreateReplica(stream replicav1.ReplicaService_CreateReplicaServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	preq := first.GetRequest()
	if preq == nil {
		return status.Error(codes.InvalidArgument, "create replica: the first message must carry the request")
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	// The client asks to stop with a cancel message or by half-closing; the
	// copy then runs its cleanup and the handler still reports how it
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
	err = s.impl.CreateReplica(ctx, requestFromProto(preq), func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		if sendErr != nil {
			return
		}
		if sendErr = stream.Send(progressToProto(p)); sendErr != nil {
			cancel()
		}
	})
	return toStatus(err)
}
