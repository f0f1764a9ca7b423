package app

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no command", nil, "no command"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"bench without scenario", []string{"bench"}, "exactly one scenario"},
		{"bench two scenarios", []string{"bench", "a.yaml", "b.yaml"}, "exactly one scenario"},
		{"bench unknown flag", []string{"bench", "--nope", "a.yaml"}, "flag provided but not defined"},
		{"compare one file", []string{"compare", "a.json"}, "base and a new"},
		{"unknown provider", []string{"bench", "../../../scenarios/quick.yaml", "--provider", "nomad"}, `--provider "nomad": want one of netns, kube, kind`},
		{"kube flag on netns", []string{"bench", "../../../scenarios/quick.yaml", "--kubeconfig", "k"}, "--kubeconfig applies to --provider kube only"},
		{"pull policy on netns", []string{"bench", "../../../scenarios/quick.yaml", "--image-pull", "Never"}, "--image-pull applies to --provider kube only"},
		{"kubeconfig on kind", []string{"bench", "../../../scenarios/quick.yaml", "--provider", "kind", "--kubeconfig", "k"}, "--kubeconfig does not apply to --provider kind: it creates its own cluster"},
		{"context on kind", []string{"bench", "../../../scenarios/quick.yaml", "--provider", "kind", "--context", "c"}, "--context does not apply to --provider kind"},
		{"image on kind", []string{"bench", "../../../scenarios/quick.yaml", "--provider", "kind", "--image", "x"}, "--image does not apply to --provider kind: it builds the meshbench image"},
		{"pull policy on kind", []string{"bench", "../../../scenarios/quick.yaml", "--provider", "kind", "--image-pull", "Never"}, "--image-pull does not apply to --provider kind"},
		{"kubeconfig on kind down", []string{"down", "--provider", "kind", "--kubeconfig", "k"}, "--kubeconfig does not apply to --provider kind"},
		{"unknown provider on doctor", []string{"doctor", "--provider", "nomad"}, `--provider "nomad"`},
		{"kube without image", []string{"bench", "../../../scenarios/quick.yaml", "--provider", "kube"}, "--provider kube needs --image"},
		{"image and image repo", []string{"bench", "../../../scenarios/quick.yaml", "--provider", "kube", "--image", "x", "--image-repo", "r.example/team"}, "--image and --image-repo: give one"},
		{"image repo without kube", []string{"bench", "../../../scenarios/quick.yaml", "--image-repo", "r.example/team"}, "--image-repo applies to --provider kube only"},
		{"bad pull policy", []string{"bench", "../../../scenarios/quick.yaml", "--provider", "kube", "--image", "x", "--image-pull", "sometimes"}, `--image-pull "sometimes"`},
		{"haproxy on kind", []string{"bench", "../../../scenarios/engines.yaml", "--provider", "kind"}, "engine haproxy: the image meshbench builds for --provider kind holds only meshbench"},
		{"haproxy on kube, image pushed", []string{"bench", "../../../scenarios/quick.yaml", "--datapaths", "none,nodeproxy/haproxy", "--provider", "kube", "--image-repo", "r.example/team"}, "engine haproxy: the image meshbench builds for --provider kube"},
		{"image without out", []string{"image"}, "image needs --out"},
		{"pause with arguments", []string{"pause", "x"}, "pause takes no arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := Run(context.Background(), tt.args, &out, &errb)
			if !errors.Is(err, ErrUsage) {
				t.Fatalf("err = %v, want a usage error", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

// A bad scenario is reported with file, line and field before anything is
// created, whoever runs it.
func TestBenchBadScenario(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(path, []byte("load:\n  rates: [100]\n  duraton: 5s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	err := Run(context.Background(), []string{"bench", path, "--out", out}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), path+":3:") || !strings.Contains(err.Error(), "duraton") {
		t.Fatalf("err = %v, want %s:3 and the field", err, path)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("output directory created for a bad scenario (stat: %v)", err)
	}
}

func TestBenchBadDatapathFlag(t *testing.T) {
	err := Run(context.Background(), []string{"bench", "../../../scenarios/quick.yaml", "--datapaths", "none,warp"}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "--datapaths") || !strings.Contains(err.Error(), "warp") {
		t.Fatalf("err = %v, want a --datapaths error naming warp", err)
	}
}

// TestProviderResolve checks which provider the flags and the scenario
// choose, and that kind takes the Kubernetes side's route.
func TestProviderResolve(t *testing.T) {
	tests := []struct {
		flag, scenario, want string
		kubeSide             bool
	}{
		{"", "", "netns", false},
		{"", "kind", "kind", true},
		{"kind", "netns", "kind", true},
		{"netns", "kind", "netns", false},
		{"kube", "", "kube", true},
	}
	for _, tt := range tests {
		f := providerFlags{Name: tt.flag}
		got, err := f.resolve(tt.scenario)
		if err != nil || got != tt.want || needsKube(got) != tt.kubeSide {
			t.Errorf("resolve(flag %q, scenario %q) = %q, %v (Kubernetes side %v); want %q (%v)", tt.flag, tt.scenario, got, err, needsKube(got), tt.want, tt.kubeSide)
		}
	}
}

// A scenario naming kind gets the kind rules (its flags refused) and is
// handed to the Kubernetes side.
func TestBenchKindScenario(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kind.yaml")
	if err := os.WriteFile(path, []byte("provider: kind\nload: {rates: [100]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := Run(context.Background(), []string{"bench", path, "--image", "x"}, &bytes.Buffer{}, &bytes.Buffer{})
	if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "--image does not apply to --provider kind") {
		t.Errorf("err = %v, want the kind usage error", err)
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"version"}, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "meshbench ") {
		t.Errorf("version output %q", out.String())
	}
}

func TestParseInterspersed(t *testing.T) {
	var f benchFlags
	fs := newFlagSet("bench", &bytes.Buffer{}, "")
	fs.StringVar(&f.out, "out", "", "")
	fs.BoolVar(&f.retain, "retain", false, "")
	pos, err := parseInterspersed(fs, []string{"--out", "d", "s.yaml", "--retain"})
	if err != nil {
		t.Fatal(err)
	}
	if len(pos) != 1 || pos[0] != "s.yaml" || f.out != "d" || !f.retain {
		t.Errorf("pos %v, flags %+v", pos, f)
	}
}
