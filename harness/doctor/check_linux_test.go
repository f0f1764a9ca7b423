package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCheck(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: Check's netns, netfilter and BPF probes only run as root")
	}
	before := leftovers(t)
	rulesBefore := rootRules(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := Check(ctx, Options{})

	var text bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", text.String())

	if !r.Has(FeatRoot) {
		t.Error("root not reported as present though euid is 0")
	}
	for _, kind := range []string{KindDatapath, KindFault} {
		want := map[string][]string{
			KindDatapath: {"none", "sidecar", "sockmap", "nodeproxy", "afxdp"},
			KindFault:    {"pod-kill", "proxy-kill", "delay", "loss", "partition", "bandwidth"},
		}[kind]
		for _, name := range want {
			q, ok := r.Requirement(kind, name)
			if !ok {
				t.Errorf("no %s %q in the report", kind, name)
				continue
			}
			if !q.Ready && len(q.Missing) == 0 {
				t.Errorf("%s %s not ready but nothing missing: %+v", kind, name, q)
			}
		}
	}
	for _, f := range featureOrder {
		got, ok := r.Feature(f.name)
		if !ok {
			t.Errorf("feature %s missing from the report", f.name)
			continue
		}
		if got.Detail == "" || strings.HasPrefix(got.Detail, "not probed") && f.name != FeatDockerDaemon {
			t.Errorf("feature %s: detail %q, want a probe result", f.name, got.Detail)
		}
	}
	// The probes created a netns and a veth, so those must work as root.
	for _, f := range []string{FeatNetns, FeatVeth, FeatBPF} {
		if !r.Has(f) {
			f, _ := r.Feature(f)
			t.Errorf("%s absent as root: %s", f.Name, f.Detail)
		}
	}
	// Cross-check two probes against the host itself.
	_, ipErr := exec.LookPath("iptables")
	if r.Has(FeatIptables) != (ipErr == nil) {
		t.Errorf("iptables present = %v, but LookPath error = %v", r.Has(FeatIptables), ipErr)
	}
	_, btfErr := os.Stat("/sys/kernel/btf/vmlinux")
	if r.Has(FeatBTF) != (btfErr == nil) {
		t.Errorf("btf present = %v, but stat error = %v", r.Has(FeatBTF), btfErr)
	}
	// A fault with alternatives that is ready says which one it uses.
	if q, _ := r.Requirement(KindFault, "delay"); q.Ready {
		want := "netem"
		if !r.Has(FeatNetem) {
			want = "nfqueue"
		}
		if q.Using != want {
			t.Errorf("delay uses %q, want %q", q.Using, want)
		}
	}

	var js bytes.Buffer
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatalf("report JSON does not decode: %v", err)
	}
	if len(back.Features) != len(r.Features) || len(back.Requirements) != len(r.Requirements) {
		t.Errorf("JSON round trip lost entries")
	}

	if after := rootRules(t); after != rulesBefore {
		t.Errorf("the root netns's iptables rules changed:\nbefore:\n%s\nafter:\n%s", rulesBefore, after)
	}
	if after := leftovers(t); after != before {
		t.Errorf("Check left objects behind:\nbefore: %s\nafter:  %s", before, after)
	}
}

// rootRules lists the iptables rules of the test's own (root) network
// namespace, which Check must never touch.
func rootRules(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("iptables"); err != nil {
		return ""
	}
	var all strings.Builder
	for _, table := range []string{"filter", "nat", "mangle"} {
		out, err := exec.Command("iptables", "-w", "5", "-t", table, "-S").CombinedOutput()
		if err != nil {
			t.Fatalf("iptables -t %s -S: %v: %s", table, err, out)
		}
		all.Write(out)
	}
	return all.String()
}

// leftovers lists the doctor's throwaway netns and cgroups that exist now.
func leftovers(t *testing.T) string {
	t.Helper()
	var found []string
	for _, glob := range []string{"/run/netns/mbt-doctor-*", "/sys/fs/cgroup/mbt-doctor-*", "/sys/fs/cgroup/unified/mbt-doctor-*"} {
		m, err := filepath.Glob(glob)
		if err != nil {
			t.Fatal(err)
		}
		found = append(found, m...)
	}
	return strings.Join(found, " ")
}

func TestCheckCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := Check(ctx, Options{Timeout: time.Second})
	// Commands cannot run with a cancelled context, but the report is
	// still complete.
	if len(r.Features) != len(featureOrder) || len(r.Requirements) != len(specs) {
		t.Errorf("cancelled Check: %d features, %d requirements", len(r.Features), len(r.Requirements))
	}
}
