package sidecar

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/meshbench/meshbench/harness/testbed"
	"github.com/meshbench/meshbench/harness/testbed/netns"
	"github.com/meshbench/meshbench/harness/testbed/testutil"
	"github.com/meshbench/meshbench/internal/golden"
)

func TestMain(m *testing.M) {
	os.Exit(testutil.TestMainLeakCheck(m))
}

// The rules land in the pod's namespace exactly as iptables-save shows them
// (golden), and uninstall leaves the namespace's nat table as it was.
func TestRulesInstalledAndRemoved(t *testing.T) {
	testutil.Privileged(t)
	if _, err := exec.LookPath("iptables-restore"); err != nil {
		t.Skip("iptables-restore not installed (apt-get install iptables)")
	}
	ctx := context.Background()
	id := testutil.NewRunID(t)
	cl, err := netns.New(netns.Options{}).Create(ctx, testbed.Spec{RunID: id, Nodes: 1, Pods: []testbed.PodSpec{{Name: "app", Node: 0}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Destroy(context.Background()) })
	ns := cl.Pod("app").Netns()
	before, err := SaveNat(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	if err := applyRules(ctx, ns, DefaultRuleOptions()); err != nil {
		t.Fatal(err)
	}
	installed, err := SaveNat(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, filepath.Join("testdata", "iptables-save.golden"), []byte(installed))
	if err := deleteRules(ctx, ns, DefaultRuleOptions()); err != nil {
		t.Fatal(err)
	}
	after, err := SaveNat(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("nat table after uninstall:\n%s\nbefore install:\n%s", after, before)
	}
}
