package kube

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshbench/meshbench/harness/agent"
	"github.com/meshbench/meshbench/harness/agent/agentpb"
	"github.com/meshbench/meshbench/harness/testbed"
)

var _ testbed.PodReplacer = (*cluster)(nil)

// reapTimeout bounds the wait for a deleted pod's processes to exit.
const reapTimeout = 10 * time.Second

// DeletePod implements testbed.PodReplacer: it deletes the pod with a
// grace period of 0, as Chaos Mesh's pod-kill does (the API server drops
// it at once, and its ReplicaSet creates the replacement), then SIGKILLs
// the processes the harness started in it through the node's agent, as
// the runtime kills the pod's containers, and waits until they exited.
func (cl *cluster) DeletePod(ctx context.Context, pod *testbed.Pod) (string, error) {
	if pod == nil || cl.byName[pod.Name] != pod {
		return "", fmt.Errorf("delete pod: not in run %s", cl.runID)
	}
	cl.mu.Lock()
	name := cl.podNames[pod.Name]
	cl.mu.Unlock()
	zero := int64(0)
	if err := cl.c.cs.CoreV1().Pods(cl.ns.Name).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		return name, fmt.Errorf("delete pod %s/%s: %w", cl.ns.Name, name, err)
	}
	var errs []error
	var procs []*testbed.Process
	for _, pr := range cl.fleet.Processes() {
		if pr.Pod == pod.Name && !pr.Exited() {
			procs = append(procs, pr)
			if err := pr.Signal(syscall.SIGKILL); err != nil && !pr.Exited() {
				errs = append(errs, fmt.Errorf("kill %s (pid %d) of deleted pod %s: %w", pr.Name, pr.PID, name, err))
			}
		}
	}
	deadline := time.After(reapTimeout)
	for _, pr := range procs {
		select {
		case <-pr.Done():
		case <-deadline:
			errs = append(errs, fmt.Errorf("%s (pid %d) of deleted pod %s still runs %v after SIGKILL", pr.Name, pr.PID, name, reapTimeout))
		case <-ctx.Done():
			return name, ctx.Err()
		}
	}
	return name, errors.Join(errs...)
}

// AwaitReplacement implements testbed.PodReplacer: it waits until the
// Deployment's new pod (another UID) runs, has the node's agent resolve
// it, and points pod at it.
func (cl *cluster) AwaitReplacement(ctx context.Context, pod *testbed.Pod) (string, error) {
	if pod == nil || cl.byName[pod.Name] != pod {
		return "", fmt.Errorf("await replacement: pod not in run %s", cl.runID)
	}
	cl.mu.Lock()
	oldUID := cl.uids[pod.Name]
	cl.mu.Unlock()
	var info PodInfo
	for {
		list, err := cl.c.cs.CoreV1().Pods(cl.ns.Name).List(ctx, metav1.ListOptions{LabelSelector: AppLabel + "=" + pod.Name + "," + RunLabel + "=" + cl.runID})
		if err != nil {
			return "", fmt.Errorf("await replacement of pod %s: %w", pod.Name, err)
		}
		found := false
		for i := range list.Items {
			p := &list.Items[i]
			if string(p.UID) == oldUID || p.DeletionTimestamp != nil {
				continue
			}
			if perr := podFailure(p); perr != nil {
				return p.Name, fmt.Errorf("replacement of pod %s: %w", pod.Name, perr)
			}
			if podRunning(p) {
				info, found = PodInfo{Name: p.Name, App: pod.Name, Node: p.Spec.NodeName, IP: p.Status.PodIP, UID: string(p.UID)}, true
				break
			}
		}
		if found {
			break
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("await replacement of pod %s: %w", pod.Name, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	if info.Node != pod.Node {
		return info.Name, fmt.Errorf("replacement %s of pod %s runs on node %s, not %s", info.Name, pod.Name, info.Node, pod.Node)
	}
	ip, err := netip.ParseAddr(info.IP)
	if err != nil {
		return info.Name, fmt.Errorf("replacement %s of pod %s: IP %q: %w", info.Name, pod.Name, info.IP, err)
	}
	h, err := pod.Host.(*agent.Client).API().Resolve(ctx, &agentpb.ResolveRequest{PodUid: info.UID})
	if err != nil {
		return info.Name, fmt.Errorf("resolve replacement %s of pod %s: %w", info.Name, pod.Name, err)
	}
	pod.IP, pod.MAC = ip, h.GetMac()
	pod.NetnsPath, pod.CgroupPath, pod.MemoryCgroupPath = h.GetNetnsPath(), h.GetCgroupPath(), h.GetMemoryCgroupPath()
	pod.HostVeth, pod.PodVeth, pod.HostVethMAC = h.GetHostVeth(), h.GetPodVeth(), h.GetHostVethMac()
	cl.mu.Lock()
	cl.uids[pod.Name], cl.podNames[pod.Name] = info.UID, info.Name
	cl.mu.Unlock()
	return info.Name, nil
}
