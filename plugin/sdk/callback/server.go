package callback

import (
	"context"

	callbackv1 "github.com/custos-ha/custos/plugin/sdk/proto/custos/callback/v1"
)

// server exposes a Receiver over gRPC inside the plugin process. The
// Receiver's ctx carries the host's deadline and ends when the host's ctx
// does; when the deadline passes, its Err may be context.Canceled rather
// than DeadlineExceeded (the host cuts the call at its deadline, usually
// before the plugin's own timer fires), which the host's Client reports as
// its own ctx.Err().
type server struct {
	callbackv1.UnimplementedCallbackServiceServer
	impl Receiver
}

func (s *server) Validate(ctx context.Context, req *callbackv1.ValidateRequest) (*callbackv1.ValidateResponse, error) {
	return &callbackv1.ValidateResponse{}, toStatus(s.impl.Validate(ctx, req.GetConfigJson()))
}

func (s *server) Deliver(ctx context.Context, req *callbackv1.DeliverRequest) (*callbackv1.DeliverResponse, error) {
	ev, err := eventFromProto(req.GetEvent())
	if err != nil {
		return nil, toStatus(err)
	}
	if err := s.impl.Deliver(ctx, req.GetConfigJson(), ev); err != nil {
		return nil, toStatus(err)
	}
	return &callbackv1.DeliverResponse{}, nil
}
