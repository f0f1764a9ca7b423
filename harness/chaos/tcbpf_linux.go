package chaos

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"sync"

	"github.com/meshbench/meshbench/harness/chaos/impl"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/internal/nsutil"
	"github.com/meshbench/meshbench/scenarios"
)

// __sk_buff offsets and tcx verdicts.
const (
	skbProtocol = 16
	skbData     = 76
	skbDataEnd  = 80
	tcxNext     = -1
	tcxDrop     = 2
)

// dropProgram builds a tc program that drops IPv4 packets whose source is
// one of srcs (any source when srcs is empty) with probability p, counting
// each drop in element 0 of the array map counter (a uint64), and hands
// every other packet to the next program.
func dropProgram(p float64, srcs []net.IP, counter int) asm.Instructions {
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R2, asm.R6, skbProtocol, asm.Word),
		// skb->protocol is big-endian in the low 16 bits: ETH_P_IP reads 0x0008.
		asm.JNE.Imm(asm.R2, int32(binary.LittleEndian.Uint16([]byte{0x08, 0x00})), "pass"),
	}
	if len(srcs) > 0 {
		insns = append(insns,
			asm.LoadMem(asm.R2, asm.R6, skbData, asm.Word),
			asm.LoadMem(asm.R3, asm.R6, skbDataEnd, asm.Word),
			asm.Mov.Reg(asm.R4, asm.R2),
			asm.Add.Imm(asm.R4, 14+20),
			asm.JGT.Reg(asm.R4, asm.R3, "pass"),
			asm.LoadMem(asm.R5, asm.R2, 14+12, asm.Word), // saddr, as stored
		)
		for _, ip := range srcs {
			insns = append(insns, asm.JEq.Imm32(asm.R5, int32(binary.NativeEndian.Uint32(ip.To4())), "match"))
		}
		insns = append(insns, asm.Ja.Label("pass"))
	}
	insns = append(insns, asm.Mov.Imm(asm.R0, 0).WithSymbol("match"))
	if p < 1 {
		threshold := uint64(p * math.MaxUint32)
		insns = append(insns,
			asm.FnGetPrandomU32.Call(),
			asm.LoadImm(asm.R1, int64(threshold), asm.DWord),
			asm.JGE.Reg(asm.R0, asm.R1, "pass"),
		)
	}
	return append(insns,
		// counter[0] += 1, atomically: several CPUs may drop at once.
		asm.StoreImm(asm.RFP, -4, 0, asm.Word),
		asm.LoadMapPtr(asm.R1, counter),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "drop"),
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, tcxDrop).WithSymbol("drop"),
		asm.Return(),
		asm.Mov.Imm(asm.R0, tcxNext).WithSymbol("pass"),
		asm.Return(),
	)
}

// tcDrops attaches drop programs to pod interfaces' ingress and detaches
// exactly those.
type tcDrops struct {
	mu    sync.Mutex
	links []tcAttached
}

type tcAttached struct {
	prog    *ebpf.Program
	counter *ebpf.Map
	l       link.Link
}

// add attaches a program dropping packets from srcs with probability p to
// pod's eth0 (ingress or egress), first in the tcx chain.
func (d *tcDrops) add(pod *testbed.Pod, at ebpf.AttachType, p float64, srcs []*testbed.Pod) error {
	if pod.Host != nil {
		return fmt.Errorf("tc-bpf on pod %s: the program is attached from the harness's process, which needs the pod on this machine (through a node agent, iptables is used)", pod.Name)
	}
	if err := nsutil.RefuseRoot(pod.NetnsPath); err != nil {
		return err
	}
	var addrs []net.IP
	for _, s := range srcs {
		if s != pod {
			addrs = append(addrs, net.IP(s.IP.AsSlice()))
		}
	}
	if srcs != nil && len(addrs) == 0 {
		return nil
	}
	counter, err := ebpf.NewMap(&ebpf.MapSpec{Name: "mb_chaos_drops", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		return fmt.Errorf("create drop counter: %w", err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "mb_chaos_drop", Type: ebpf.SchedCLS, License: "GPL",
		Instructions: dropProgram(p, addrs, counter.FD()),
	})
	if err != nil {
		counter.Close()
		return fmt.Errorf("load drop program: %w", err)
	}
	var l link.Link
	err = nsutil.Do(pod.NetnsPath, func() error {
		nl, err := netlink.LinkByName(podLink(pod))
		if err != nil {
			return fmt.Errorf("link %s: %w", podLink(pod), err)
		}
		l, err = link.AttachTCX(link.TCXOptions{Interface: nl.Attrs().Index, Program: prog, Attach: at, Anchor: link.Head()})
		if err != nil {
			return fmt.Errorf("attach tcx %s of %s in %s: %w", at, podLink(pod), pod.Name, err)
		}
		return nil
	})
	if err != nil {
		prog.Close()
		counter.Close()
		return err
	}
	d.mu.Lock()
	d.links = append(d.links, tcAttached{prog, counter, l})
	d.mu.Unlock()
	return nil
}

func (d *tcDrops) removeAll() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for _, a := range d.links {
		if err := a.l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach drop program: %w", err))
		}
		a.prog.Close()
		a.counter.Close()
	}
	d.links = nil
	return errors.Join(errs...)
}

// dropped returns the packets the attached programs have dropped.
func (d *tcDrops) dropped() (int64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var n uint64
	for _, a := range d.links {
		var v uint64
		if err := a.counter.Lookup(uint32(0), &v); err != nil {
			return 0, fmt.Errorf("read drop counter: %w", err)
		}
		n += v
	}
	return int64(n), nil
}

// activity is the drop programs' activity: active when they dropped.
func (d *tcDrops) activity(what string) (results.FaultActivity, error) {
	n, err := d.dropped()
	if err != nil {
		return results.FaultActivity{}, err
	}
	return dropActivity("dropped", n, what+" programs"), nil
}

// tcLoss is loss by tc BPF: on the receiving pods' ingress, except for
// "to" loss without peers, which drops at the selected pods' egress so that
// it works whatever the datapath does to addresses on the way. It falls
// back to iptables statistic when the kernel refuses tcx.
type tcLoss struct {
	probability float64
	tag         string
	drops       tcDrops
	fallback    *loss
}

func (f *tcLoss) Kind() string { return scenarios.FaultLoss }
func (f *tcLoss) Implementation() string {
	if f.fallback != nil {
		return impl.Statistic
	}
	return impl.TCBPF
}

func (f *tcLoss) Inject(ctx context.Context, t Target) error {
	var err error
	if t.Peers == nil && (t.Direction == "to" || t.Direction == "both") {
		// Everything the selected pods send: drop it as it leaves their
		// eth0, before any datapath outside the pod rewrites its addresses.
		// (The sender sees a local drop, as from a full queue, not EPERM.)
		for _, p := range t.Pods {
			if err = f.drops.add(p, ebpf.AttachTCXEgress, f.probability, nil); err != nil {
				break
			}
		}
		if err == nil && t.Direction == "both" {
			from := t
			from.Direction = "from"
			err = injectReceivers(from, func(pod *testbed.Pod, srcs []*testbed.Pod) error {
				return f.drops.add(pod, ebpf.AttachTCXIngress, f.probability, srcs)
			})
		}
	} else {
		err = injectReceivers(t, func(pod *testbed.Pod, srcs []*testbed.Pod) error {
			return f.drops.add(pod, ebpf.AttachTCXIngress, f.probability, srcs)
		})
	}
	if err != nil && errors.Is(err, ebpf.ErrNotSupported) {
		f.drops.removeAll()
		f.fallback = &loss{probability: f.probability, tag: f.tag}
		return f.fallback.Inject(ctx, t)
	}
	return err
}

func (f *tcLoss) Activity(ctx context.Context) (results.FaultActivity, error) {
	if f.fallback != nil {
		return f.fallback.Activity(ctx)
	}
	return f.drops.activity("its tc drop")
}

func (f *tcLoss) Recover(ctx context.Context, t Target) error {
	errs := []error{f.drops.removeAll()}
	if f.fallback != nil {
		errs = append(errs, f.fallback.Recover(ctx, t))
	}
	return errors.Join(errs...)
}

// injectReceivers calls add for every receiver of t's traffic with the
// sources to drop from (nil: any): the selected pods for "from" (from the
// peers, if any), the peers (or every other pod) for "to".
func injectReceivers(t Target, add func(pod *testbed.Pod, srcs []*testbed.Pod) error) error {
	if t.Direction == "from" || t.Direction == "both" {
		for _, p := range t.Pods {
			if err := add(p, t.Peers); err != nil {
				return err
			}
		}
	}
	if t.Direction == "to" || t.Direction == "both" {
		receivers := t.Peers
		if receivers == nil {
			receivers = t.Others
		}
		for _, p := range receivers {
			if err := add(p, t.Pods); err != nil {
				return err
			}
		}
	}
	return nil
}

// tcPartition drops everything between the selected pods and the peers
// with tc BPF on each receiver's ingress; it falls back to iptables DROP
// when the kernel refuses tcx.
type tcPartition struct {
	tag      string
	drops    tcDrops
	fallback *partition
}

func (f *tcPartition) Kind() string { return scenarios.FaultPartition }
func (f *tcPartition) Implementation() string {
	if f.fallback != nil {
		return impl.IptablesDrop
	}
	return impl.TCBPF
}

func (f *tcPartition) Inject(ctx context.Context, t Target) error {
	if len(t.Peers) == 0 {
		return errors.New("partition needs a target")
	}
	err := injectReceivers(t, func(pod *testbed.Pod, srcs []*testbed.Pod) error {
		return f.drops.add(pod, ebpf.AttachTCXIngress, 1, srcs)
	})
	if err != nil && errors.Is(err, ebpf.ErrNotSupported) {
		f.drops.removeAll()
		f.fallback = &partition{tag: f.tag}
		return f.fallback.Inject(ctx, t)
	}
	return err
}

func (f *tcPartition) Activity(ctx context.Context) (results.FaultActivity, error) {
	if f.fallback != nil {
		return f.fallback.Activity(ctx)
	}
	return f.drops.activity("its tc drop")
}

func (f *tcPartition) Recover(ctx context.Context, t Target) error {
	errs := []error{f.drops.removeAll()}
	if f.fallback != nil {
		errs = append(errs, f.fallback.Recover(ctx, t))
	}
	return errors.Join(errs...)
}
