package bootstrap

import (
	"fmt"
	"time"

	bootstrapv1 "github.com/custos-ha/custos/plugin/sdk/proto/custos/bootstrap/v1"
)

func requestToProto(r Request) *bootstrapv1.CreateClusterRequest {
	return &bootstrapv1.CreateClusterRequest{
		Method:     r.Method,
		Scope:      r.Scope,
		Member:     r.Member,
		DataDir:    r.DataDir,
		ConfigJson: r.Config,
		BinDir:     r.BinDir,
		Env:        r.Env,
		Target:     targetToProto(r.Target),
	}
}

// requestFromProto reads a request; a target time that does not parse is
// ErrInvalidRequest.
func requestFromProto(p *bootstrapv1.CreateClusterRequest) (Request, error) {
	target, err := targetFromProto(p.GetTarget())
	if err != nil {
		return Request{}, err
	}
	return Request{
		Method:  p.GetMethod(),
		Scope:   p.GetScope(),
		Member:  p.GetMember(),
		DataDir: p.GetDataDir(),
		Config:  p.GetConfigJson(),
		BinDir:  p.GetBinDir(),
		Env:     p.GetEnv(),
		Target:  target,
	}, nil
}

// targetToProto sets the oneof from the first kind set; Request.Check,
// run before, refuses a target with none or several.
func targetToProto(t *Target) *bootstrapv1.RecoveryTarget {
	if t == nil {
		return nil
	}
	out := &bootstrapv1.RecoveryTarget{Exclusive: t.Exclusive, Action: t.Action, Timeline: t.Timeline}
	switch {
	case t.Immediate:
		out.Target = &bootstrapv1.RecoveryTarget_Immediate{Immediate: true}
	case !t.Time.IsZero():
		out.Target = &bootstrapv1.RecoveryTarget_Time{Time: t.Time.Format(time.RFC3339Nano)}
	case t.LSN != "":
		out.Target = &bootstrapv1.RecoveryTarget_Lsn{Lsn: t.LSN}
	case t.XID != 0:
		out.Target = &bootstrapv1.RecoveryTarget_Xid{Xid: t.XID}
	case t.Name != "":
		out.Target = &bootstrapv1.RecoveryTarget_Name{Name: t.Name}
	}
	return out
}

// targetFromProto reads a target. A oneof left unset, or set to its zero
// value, gives a Target with no kind, which Check refuses.
func targetFromProto(p *bootstrapv1.RecoveryTarget) (*Target, error) {
	if p == nil {
		return nil, nil
	}
	t := &Target{Exclusive: p.GetExclusive(), Action: p.GetAction(), Timeline: p.GetTimeline()}
	switch v := p.GetTarget().(type) {
	case *bootstrapv1.RecoveryTarget_Immediate:
		t.Immediate = v.Immediate
	case *bootstrapv1.RecoveryTarget_Time:
		if v.Time != "" {
			tm, err := time.Parse(time.RFC3339Nano, v.Time)
			if err != nil {
				return nil, fmt.Errorf("%w: recovery target: time %q is not an RFC 3339 timestamp", ErrInvalidRequest, v.Time)
			}
			t.Time = tm
		}
	case *bootstrapv1.RecoveryTarget_Lsn:
		t.LSN = v.Lsn
	case *bootstrapv1.RecoveryTarget_Xid:
		t.XID = v.Xid
	case *bootstrapv1.RecoveryTarget_Name:
		t.Name = v.Name
	}
	return t, nil
}

func progressToProto(p Progress) *bootstrapv1.CreateClusterOutput {
	out := &bootstrapv1.Progress{Message: p.Message, DoneBytes: p.DoneBytes, TotalBytes: p.TotalBytes}
	if p.Percent >= 0 {
		pct := int32(min(p.Percent, 100))
		out.Percent = &pct
	}
	return &bootstrapv1.CreateClusterOutput{Output: &bootstrapv1.CreateClusterOutput_Progress{Progress: out}}
}

// progressFromProto reads a progress report; a percent outside 0..100
// is reported as unknown.
func progressFromProto(p *bootstrapv1.Progress) Progress {
	out := Progress{Message: p.GetMessage(), Percent: PercentUnknown, DoneBytes: p.GetDoneBytes(), TotalBytes: p.GetTotalBytes()}
	if p.Percent != nil && p.GetPercent() >= 0 && p.GetPercent() <= 100 {
		out.Percent = int(p.GetPercent())
	}
	return out
}

func resultToProto(r Result) *bootstrapv1.CreateClusterOutput {
	return &bootstrapv1.CreateClusterOutput{Output: &bootstrapv1.CreateClusterOutput_Result{
		Result: &bootstrapv1.Result{RestoreCommand: r.RestoreCommand},
	}}
}

func resultFromProto(p *bootstrapv1.Result) Result {
	return Result{RestoreCommand: p.GetRestoreCommand()}
}
