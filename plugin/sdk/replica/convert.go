package replica

import (
	replicav1 "github.com/custos-ha/custos/plugin/sdk/proto/custos/replica/v1"
)

func requestToProto(r Request) *replicav1.CreateReplicaRequest {
	return &replicav1.CreateReplicaRequest{
		Method:     r.Method,
		Scope:      r.Scope,
		Member:     r.Member,
		DataDir:    r.DataDir,
		Source:     sourceToProto(r.Source),
		Role:       r.Role,
		ConfigJson: r.Config,
		BinDir:     r.BinDir,
		Env:        r.Env,
		KeepData:   r.KeepData,
	}
}

func requestFromProto(p *replicav1.CreateReplicaRequest) Request {
	return Request{
		Method:   p.GetMethod(),
		Scope:    p.GetScope(),
		Member:   p.GetMember(),
		DataDir:  p.GetDataDir(),
		Source:   sourceFromProto(p.GetSource()),
		Role:     p.GetRole(),
		Config:   p.GetConfigJson(),
		BinDir:   p.GetBinDir(),
		Env:      p.GetEnv(),
		KeepData: p.GetKeepData(),
	}
}

func sourceToProto(s *Source) *replicav1.Source {
	if s == nil {
		return nil
	}
	return &replicav1.Source{
		Member:     s.Member,
		ConnString: s.ConnString,
		Host:       s.Host,
		Port:       int32(s.Port),
		Dbname:     s.DBName,
		Username:   s.User,
		Passfile:   s.PassFile,
	}
}

func sourceFromProto(p *replicav1.Source) *Source {
	if p == nil {
		return nil
	}
	return &Source{
		Member:     p.GetMember(),
		ConnString: p.GetConnString(),
		Host:       p.GetHost(),
		Port:       int(p.GetPort()),
		DBName:     p.GetDbname(),
		User:       p.GetUsername(),
		PassFile:   p.GetPassfile(),
	}
}

func progressToProto(p Progress) *replicav1.Progress {
	out := &replicav1.Progress{Message: p.Message, DoneBytes: p.DoneBytes, TotalBytes: p.TotalBytes}
	if p.Percent >= 0 {
		pct := int32(min(p.Percent, 100))
		out.Percent = &pct
	}
	return out
}

func progressFromProto(p *replicav1.Progress) Progress {
	out := Progress{Message: p.GetMessage(), Percent: PercentUnknown, DoneBytes: p.GetDoneBytes(), TotalBytes: p.GetTotalBytes()}
	if p.Percent != nil {
		out.Percent = int(p.GetPercent())
	}
	return out
}
