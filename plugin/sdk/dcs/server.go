package dcs

import (
	"context"
	"sync"

	dcsv1 "github.com/custos-ha/custos/plugin/sdk/proto/custos/dcs/v1"
)

// server exposes a Backend over gRPC inside the plugin process.
type server struct {
	dcsv1.UnimplementedDCSServiceServer
	impl Backend
}

func (s *server) Validate(ctx context.Context, req *dcsv1.ValidateRequest) (*dcsv1.ValidateResponse, error) {
	return &dcsv1.ValidateResponse{}, toStatus(s.impl.Validate(ctx, req.GetConfigJson()))
}

func (s *server) Configure(ctx context.Context, req *dcsv1.ConfigureRequest) (*dcsv1.ConfigureResponse, error) {
	err := s.impl.Configure(ctx, ConfigureRequest{
		Scope:        req.GetScope(),
		Namespace:    req.GetNamespace(),
		Member:       req.GetMember(),
		TTL:          durationFromMillis(req.GetTtlMs()),
		RetryTimeout: durationFromMillis(req.GetRetryTimeoutMs()),
		Config:       req.GetConfigJson(),
	})
	return &dcsv1.ConfigureResponse{}, toStatus(err)
}

func (s *server) SetTTL(ctx context.Context, req *dcsv1.SetTTLRequest) (*dcsv1.SetTTLResponse, error) {
	return &dcsv1.SetTTLResponse{}, toStatus(s.impl.SetTTL(ctx, durationFromMillis(req.GetTtlMs())))
}

func (s *server) GetCluster(ctx context.Context, _ *dcsv1.GetClusterRequest) (*dcsv1.GetClusterResponse, error) {
	c, err := s.impl.GetCluster(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	fitCluster(c)
	return &dcsv1.GetClusterResponse{Cluster: clusterToProto(c)}, nil
}

func (s *server) AcquireLeader(ctx context.Context, _ *dcsv1.AcquireLeaderRequest) (*dcsv1.AcquireLeaderResponse, error) {
	v, err := s.impl.AcquireLeader(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &dcsv1.AcquireLeaderResponse{Version: v}, nil
}

func (s *server) RenewLeader(ctx context.Context, _ *dcsv1.RenewLeaderRequest) (*dcsv1.RenewLeaderResponse, error) {
	return &dcsv1.RenewLeaderResponse{}, toStatus(s.impl.RenewLeader(ctx))
}

func (s *server) TakeLeader(ctx context.Context, _ *dcsv1.TakeLeaderRequest) (*dcsv1.TakeLeaderResponse, error) {
	return &dcsv1.TakeLeaderResponse{}, toStatus(s.impl.TakeLeader(ctx))
}

func (s *server) DeleteLeader(ctx context.Context, _ *dcsv1.DeleteLeaderRequest) (*dcsv1.DeleteLeaderResponse, error) {
	return &dcsv1.DeleteLeaderResponse{}, toStatus(s.impl.DeleteLeader(ctx))
}

func (s *server) TouchMember(ctx context.Context, req *dcsv1.TouchMemberRequest) (*dcsv1.TouchMemberResponse, error) {
	return &dcsv1.TouchMemberResponse{}, toStatus(s.impl.TouchMember(ctx, req.GetData()))
}

func (s *server) CompareAndSet(ctx context.Context, req *dcsv1.CompareAndSetRequest) (*dcsv1.CompareAndSetResponse, error) {
	key, err := keyFromProto(req.GetKey())
	if err != nil {
		return nil, toStatus(err)
	}
	v, err := s.impl.CompareAndSet(ctx, key, req.GetData(), req.GetVersion())
	if err != nil {
		return nil, toStatus(err)
	}
	return &dcsv1.CompareAndSetResponse{Version: v}, nil
}

func (s *server) CompareAndDelete(ctx context.Context, req *dcsv1.CompareAndDeleteRequest) (*dcsv1.CompareAndDeleteResponse, error) {
	key, err := keyFromProto(req.GetKey())
	if err != nil {
		return nil, toStatus(err)
	}
	return &dcsv1.CompareAndDeleteResponse{}, toStatus(s.impl.CompareAndDelete(ctx, key, req.GetVersion()))
}

func (s *server) Set(ctx context.Context, req *dcsv1.SetRequest) (*dcsv1.SetResponse, error) {
	key, err := keyFromProto(req.GetKey())
	if err != nil {
		return nil, toStatus(err)
	}
	return &dcsv1.SetResponse{}, toStatus(s.impl.Set(ctx, key, req.GetData()))
}

func (s *server) DeleteCluster(ctx context.Context, _ *dcsv1.DeleteClusterRequest) (*dcsv1.DeleteClusterResponse, error) {
	return &dcsv1.DeleteClusterResponse{}, toStatus(s.impl.DeleteCluster(ctx))
}

func (s *server) Watch(_ *dcsv1.WatchRequest, stream dcsv1.DCSService_WatchServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	var (
		mu      sync.Mutex
		sendErr error
	)
	err := s.impl.Watch(ctx, func(e Event) {
		mu.Lock()
		defer mu.Unlock()
		if sendErr != nil {
			return
		}
		if sendErr = stream.Send(eventToProto(e)); sendErr != nil {
			cancel()
		}
	})
	mu.Lock()
	defer mu.Unlock()
	if sendErr != nil {
		return sendErr
	}
	return toStatus(err)
}

func (s *server) Close(ctx context.Context, _ *dcsv1.CloseRequest) (*dcsv1.CloseResponse, error) {
	return &dcsv1.CloseResponse{}, toStatus(s.impl.Close(ctx))
}
