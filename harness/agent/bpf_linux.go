package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshbench/meshbench/bpf/attach"
	"github.com/meshbench/meshbench/harness/agent/agentpb"
)

// bpfSets are the BPF sets an agent holds for the harness, by id.
type bpfSets struct {
	mu   sync.Mutex
	next int64
	byID map[int64]attach.Set
}

// AttachBPF implements agentpb.AgentServer: it loads the set in the
// agent's process (attach.Local), so the set lives as long as the agent
// holds it and goes with the agent.
func (s *Server) AttachBPF(ctx context.Context, req *agentpb.AttachBPFRequest) (*agentpb.AttachBPFResult, error) {
	var spec attach.Spec
	if err := json.Unmarshal(req.GetSpecJson(), &spec); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "agent: bpf spec: %v", err)
	}
	if err := spec.Validate(); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	set, err := attach.Local{}.AttachBPF(ctx, spec)
	if err != nil {
		return nil, toStatus(err)
	}
	s.bpf.mu.Lock()
	defer s.bpf.mu.Unlock()
	if s.bpf.byID == nil {
		s.bpf.byID = map[int64]attach.Set{}
	}
	s.bpf.next++
	s.bpf.byID[s.bpf.next] = set
	return &agentpb.AttachBPFResult{Id: s.bpf.next, MemlockBytes: set.MemlockBytes()}, nil
}

func (s *Server) bpfSet(id int64) (attach.Set, error) {
	s.bpf.mu.Lock()
	defer s.bpf.mu.Unlock()
	set := s.bpf.byID[id]
	if set == nil {
		return nil, status.Errorf(codes.NotFound, "agent: no BPF set %d of this agent", id)
	}
	return set, nil
}

// BPFCounters implements agentpb.AgentServer.
func (s *Server) BPFCounters(ctx context.Context, req *agentpb.BPFCountersRequest) (*agentpb.BPFCountersResult, error) {
	set, err := s.bpfSet(req.GetId())
	if err != nil {
		return nil, err
	}
	c, err := set.Counters(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &agentpb.BPFCountersResult{Counters: c}, nil
}

// UpdateBPF implements agentpb.AgentServer.
func (s *Server) UpdateBPF(ctx context.Context, req *agentpb.UpdateBPFRequest) (*agentpb.UpdateBPFResult, error) {
	set, err := s.bpfSet(req.GetId())
	if err != nil {
		return nil, err
	}
	if err := set.Update(ctx, req.GetAttach(), req.GetDetach()); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &agentpb.UpdateBPFResult{}, nil
}

// DetachBPF implements agentpb.AgentServer.
func (s *Server) DetachBPF(ctx context.Context, req *agentpb.DetachBPFRequest) (*agentpb.DetachBPFResult, error) {
	s.bpf.mu.Lock()
	set := s.bpf.byID[req.GetId()]
	delete(s.bpf.byID, req.GetId())
	s.bpf.mu.Unlock()
	if set == nil {
		return nil, status.Errorf(codes.NotFound, "agent: no BPF set %d of this agent", req.GetId())
	}
	if err := set.Close(ctx); err != nil {
		return nil, toStatus(err)
	}
	return &agentpb.DetachBPFResult{}, nil
}

// detachAll closes every BPF set the agent holds.
func (s *Server) detachAll(ctx context.Context) error {
	s.bpf.mu.Lock()
	all := s.bpf.byID
	s.bpf.byID = nil
	s.bpf.mu.Unlock()
	var errs []error
	for _, set := range all {
		errs = append(errs, set.Close(ctx))
	}
	return errors.Join(errs...)
}

// AttachBPF implements attach.Loader: the set is loaded and held by the
// agent, on its node.
func (c *Client) AttachBPF(ctx context.Context, spec attach.Spec) (attach.Set, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	raw, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	c.calls.bpf.Add(1)
	r, err := c.api.AttachBPF(ctx, &agentpb.AttachBPFRequest{SpecJson: raw})
	if err != nil {
		return nil, fmt.Errorf("agent: attach BPF: %w", err)
	}
	return &remoteSet{c: c, id: r.GetId(), memlock: r.GetMemlockBytes()}, nil
}

var _ attach.Loader = (*Client)(nil)

// remoteSet is a set an agent holds.
type remoteSet struct {
	c       *Client
	id      int64
	memlock int64

	mu     sync.Mutex
	closed bool
}

func (r *remoteSet) Counters(ctx context.Context) (map[string]uint64, error) {
	r.c.calls.bpf.Add(1)
	res, err := r.c.api.BPFCounters(ctx, &agentpb.BPFCountersRequest{Id: r.id})
	if err != nil {
		return nil, fmt.Errorf("agent: BPF set %d counters: %w", r.id, err)
	}
	return res.GetCounters(), nil
}

func (r *remoteSet) MemlockBytes() int64 { return r.memlock }

func (r *remoteSet) Update(ctx context.Context, attach, detach []string) error {
	r.c.calls.bpf.Add(1)
	if _, err := r.c.api.UpdateBPF(ctx, &agentpb.UpdateBPFRequest{Id: r.id, Attach: attach, Detach: detach}); err != nil {
		return fmt.Errorf("agent: update BPF set %d: %w", r.id, err)
	}
	return nil
}

func (r *remoteSet) Close(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.c.calls.bpf.Add(1)
	if _, err := r.c.api.DetachBPF(ctx, &agentpb.DetachBPFRequest{Id: r.id}); err != nil {
		return fmt.Errorf("agent: detach BPF set %d: %w", r.id, err)
	}
	r.closed = true
	return nil
}
