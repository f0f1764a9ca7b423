package kubeenv

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// hostPaths are fixed paths kubelet, containerd, runc and CNI plugins use
// by default.
var hostPaths = []string{
	"/var/lib/kubelet", "/var/lib/cni", "/var/lib/containerd", "/var/log/containers", "/var/log/pods",
	"/run/containerd", "/run/xtables.lock", "/opt/containerd", "/opt/cni", "/etc/cni", "/etc/kubernetes",
}

var hostSysctls = append(slices.Clone(kubeletSysctls),
	"net/ipv4/ip_forward",
	"net/ipv4/conf/all/route_localnet",
	"net/bridge/bridge-nf-call-iptables",
	"net/bridge/bridge-nf-call-ip6tables",
	"net/netfilter/nf_conntrack_max",
	"net/netfilter/nf_conntrack_tcp_timeout_established",
	"net/netfilter/nf_conntrack_tcp_timeout_close_wait",
)

var (
	counterRe = regexp.MustCompile(`\[\d+:\d+\]`)
	anyRunRe  = regexp.MustCompile(`(?:^|[^a-z0-9])(?:mb-|meshbench-kube-|meshbench-)([0-9a-f]{1,8})(?:[^0-9a-f]|$)`)
	// Names kubelet, containerd and CNI plugins give links and cgroups.
	envLinkRe   = regexp.MustCompile(`^(veth|cni|kube|flannel|cali|k[0-9]|fab|eth0@)`)
	envCgroupRe = regexp.MustCompile(`kube|k8s|containerd|pod|runtime|system\.slice`)
	envProcName = regexp.MustCompile(`^(etcd|kube-apiserver|kube-controller|kube-scheduler|kwok|kubelet|kube-proxy|containerd.*|runc|pause)$`)
)

// SnapshotHost records the host's state. runID names the run whose objects
// are kept; objects of other runs are dropped.
func SnapshotHost(ctx context.Context, runID string) (HostState, error) {
	h := HostState{Sections: map[string][]string{}}
	keep := func(line string) bool {
		for _, m := range anyRunRe.FindAllStringSubmatch(line, -1) {
			if m[1] != runID {
				return false
			}
		}
		return true
	}
	add := func(section string, lines []string) {
		var out []string
		for _, l := range lines {
			l = strings.TrimRight(l, " ")
			if l != "" && keep(l) {
				out = append(out, l)
			}
		}
		slices.Sort(out)
		h.Sections[section] = out
	}
	run := func(section string, argv ...string) error {
		if _, err := exec.LookPath(argv[0]); err != nil {
			add(section, []string{argv[0] + " not installed"})
			return nil
		}
		out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).Output()
		if err != nil {
			return fmt.Errorf("snapshot: %s: %w", strings.Join(argv, " "), err)
		}
		var lines []string
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "#") {
				continue
			}
			lines = append(lines, counterRe.ReplaceAllString(l, ""))
		}
		add(section, lines)
		return nil
	}
	for _, c := range [][]string{
		{"iptables", "iptables-save"},
		{"ip6tables", "ip6tables-save"},
		{"nftables", "nft", "list", "ruleset"},
		{"links", "ip", "-o", "link", "show"},
		{"addresses", "ip", "-o", "addr", "show"},
		{"routes", "ip", "route", "show", "table", "all"},
		{"routes6", "ip", "-6", "route", "show", "table", "all"},
		{"rules", "ip", "rule", "show"},
	} {
		if err := run(c[0], c[1:]...); err != nil {
			return h, err
		}
	}
	// Interface statistics and neighbour-driven flags change on their own;
	// keep the identity of links only, and only links the environment could
	// have made (other sessions on a shared host add their own).
	var links []string
	for _, l := range h.Sections["links"] {
		if j := strings.Index(l, " qlen"); j > 0 {
			l = l[:j]
		}
		if f := strings.Fields(l); len(f) > 1 && (envLinkRe.MatchString(strings.TrimSuffix(f[1], ":")) || strings.Contains(l, runID)) {
			links = append(links, l)
		}
	}
	h.Sections["links"] = links
	var sys []string
	for _, k := range hostSysctls {
		b, err := os.ReadFile(filepath.Join("/proc/sys", k))
		if err != nil {
			continue
		}
		sys = append(sys, k+" = "+strings.TrimSpace(string(b)))
	}
	add("sysctls", sys)

	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return h, fmt.Errorf("snapshot: %w", err)
	}
	var mounts []string
	for _, l := range strings.Split(string(mi), "\n") {
		f := strings.Fields(l)
		if len(f) < 10 {
			continue
		}
		i := slices.Index(f, "-")
		if i < 0 || i+2 >= len(f) {
			continue
		}
		// Named network namespaces of others (not this run's) come and go
		// on a shared host.
		if strings.HasPrefix(f[4], netnsDir+"/") && !strings.HasPrefix(f[4], netnsDir+"/mb-"+runID+"-") {
			continue
		}
		// mount point, root, options, type, source (ids and peer groups
		// left out: they are renumbered by unrelated mounts).
		mounts = append(mounts, strings.Join([]string{f[4], f[3], f[5], f[i+1], f[i+2]}, " "))
	}
	add("mounts", mounts)

	var nsNames []string
	if ents, err := os.ReadDir(netnsDir); err == nil {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "mb-"+runID+"-") {
				nsNames = append(nsNames, e.Name())
			}
		}
	}
	add("netns", nsNames)

	cg, err := detectCgroups()
	if err != nil {
		return h, fmt.Errorf("snapshot: %w", err)
	}
	var cgs []string
	for _, root := range cg.roots {
		ents, err := os.ReadDir(root)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if !e.IsDir() {
				continue
			}
			if envCgroupRe.MatchString(e.Name()) || strings.Contains(e.Name(), runID) {
				cgs = append(cgs, filepath.Join(root, e.Name()))
			}
			filepath.WalkDir(filepath.Join(root, e.Name()), func(p string, d os.DirEntry, err error) error {
				if err != nil || !d.IsDir() {
					return nil
				}
				if strings.Count(strings.TrimPrefix(p, root), "/") > 4 {
					return filepath.SkipDir
				}
				if strings.HasPrefix(d.Name(), "kubepods") {
					cgs = append(cgs, p)
					return filepath.SkipDir
				}
				return nil
			})
		}
	}
	add("cgroups", cgs)

	var paths []string
	for _, p := range hostPaths {
		st, err := os.Lstat(p)
		if err != nil {
			continue
		}
		paths = append(paths, fmt.Sprintf("%s %v", p, st.Mode()))
		if st.IsDir() {
			filepath.WalkDir(p, func(q string, d os.DirEntry, err error) error {
				if err == nil && q != p {
					paths = append(paths, q)
				}
				return nil
			})
		}
	}
	if runs, err := filepath.Glob(filepath.Join(os.TempDir(), "meshbench-kube-"+runID+"-*")); err == nil {
		paths = append(paths, runs...)
	}
	add("paths", paths)

	var procs []string
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return h, fmt.Errorf("snapshot: %w", err)
	}
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err != nil {
			continue
		}
		if comm := strings.TrimSpace(string(b)); envProcName.MatchString(comm) {
			procs = append(procs, comm+" "+e.Name())
		}
	}
	add("processes", procs)

	if b, err := os.ReadFile("/proc/modules"); err == nil {
		var mods []string
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) > 0 {
				mods = append(mods, f[0])
			}
		}
		add("modules", mods)
	}
	return h, nil
}
