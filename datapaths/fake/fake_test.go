package fake

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/meshbench/meshbench/datapaths"
	"github.com/meshbench/meshbench/harness/results"
	"github.com/meshbench/meshbench/harness/testbed"
)

func TestDatapath(t *testing.T) {
	ctx := context.Background()
	var trace []string
	injected := errors.New("injected")
	d := &Datapath{
		ID:           "dp",
		UninstallErr: injected,
		CountersFunc: func(n int) (map[string]int64, error) { return map[string]int64{"rq": int64(10 * n)}, nil },
		VerifyFunc: func(delta map[string]int64, w datapaths.Work) []results.ProofCheck {
			return []results.ProofCheck{datapaths.Near("rq", delta["rq"], w.Successes, 0, "", "")}
		},
		Trace: func(ev string) { trace = append(trace, ev) },
	}
	env := &datapaths.Env{}
	if err := d.Install(ctx, env); err != nil || d.Env() != env {
		t.Fatalf("Install: %v", err)
	}
	svc := &datapaths.Service{Port: 8080, Backends: []*testbed.Pod{{IP: netip.MustParseAddr("198.18.1.10")}}}
	if got := d.Target(svc); !slices.Equal(got, []netip.AddrPort{netip.MustParseAddrPort("198.18.1.10:8080")}) {
		t.Errorf("Target = %v", got)
	}
	a, _ := d.Counters(ctx)
	b, _ := d.Counters(ctx)
	p := datapaths.Prove(d.ProofSource(), d.Verify, map[string]int64{"rq": b["rq"] - a["rq"]}, datapaths.Work{Successes: 10})
	if !p.Verified {
		t.Errorf("proof with matching counters: %s", p.Detail)
	}
	if err := d.Uninstall(ctx); !errors.Is(err, injected) {
		t.Errorf("Uninstall: %v", err)
	}
	if c := d.Calls(); c != (Calls{Install: 1, Uninstall: 1, Target: 1, Counters: 2, Verify: 1}) {
		t.Errorf("calls %+v", c)
	}
	if w := d.Works(); len(w) != 1 || w[0].Successes != 10 {
		t.Errorf("works %+v", w)
	}
	want := []string{"install dp", "target dp", "counters dp", "counters dp", "verify dp", "uninstall dp"}
	if !slices.Equal(trace, want) {
		t.Errorf("trace %q, want %q", trace, want)
	}
	var zero Datapath
	if zero.Name() != "fake" || !datapaths.Prove(zero.ProofSource(), zero.Verify, nil, datapaths.Work{Successes: 1}).Verified {
		t.Error("a zero Datapath is not named fake or does not prove its path")
	}
}
