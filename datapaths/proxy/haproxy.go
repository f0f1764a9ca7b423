package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/meshbench/meshbench/internal/nsutil"
)

// ErrHAProxyNotFound is returned (wrapped) when no haproxy binary is found.
var ErrHAProxyNotFound = errors.New("no haproxy binary on PATH")

// HAProxyAvailable returns the path of the haproxy binary (binary, else
// haproxy on PATH), or an error wrapping ErrHAProxyNotFound.
func HAProxyAvailable(binary string) (string, error) {
	if binary == "" {
		binary = "haproxy"
	}
	p, err := exec.LookPath(binary)
	if err != nil {
		return "", fmt.Errorf("%w (apt-get install haproxy; make bench installs it): %v", ErrHAProxyNotFound, err)
	}
	return p, nil
}

// HAProxyEngineOptions configure the haproxy engine.
type HAProxyEngineOptions struct {
	// Binary is the haproxy binary; default haproxy on PATH.
	Binary    string
	XDSSocket string
	NodeID    string
	// Cluster is the node's cluster; default "meshbench".
	Cluster string
	// AdminAddr serves /stats (the builtin engine's JSON, from haproxy's
	// counters), /ready and /config; default 127.0.0.1:15000.
	AdminAddr string
	// ListenIP, OutboundPort and InboundPort place the listeners, as the
	// builtin engine's options do (0: the listeners' own ports).
	ListenIP                  string
	OutboundPort, InboundPort int
	// ConfigDir receives haproxy.cfg and the runtime API's socket; default
	// a new temporary directory.
	ConfigDir string
	// ConnectTimeout bounds the wait for the first configuration; default
	// 10s.
	ConnectTimeout time.Duration
	// Threads is haproxy's nbthread (its worker threads); default 1.
	Threads int
	// Netns is the network namespace haproxy runs in; "": this process's
	// (the proxy process is started in its pod's). Tests set it.
	Netns          string
	Stdout, Stderr io.Writer
	Logger         *slog.Logger
}

// HAProxy is the engine that runs a real haproxy, configured by the xDS
// control plane through this process: it is an xDS client like the
// builtin engine, renders what it accepts as haproxy.cfg (renderHAProxy)
// and starts haproxy on it; endpoint changes reach the running haproxy
// through its runtime API (servers' addresses and states), not a reload,
// and are ACKed once applied. Its admin endpoint serves haproxy's counters
// in the builtin engine's /stats form, so proofs read both alike.
type HAProxy struct {
	opts HAProxyEngineOptions
	bin  string
	dir  string
	sock string

	admin    net.Listener
	adminSrv *http.Server
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	done     chan struct{}

	ready     chan struct{}
	readyOnce sync.Once
	failed    chan struct{}
	failOnce  sync.Once
	failErr   error

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{}
	exitErr  error
	cfg      *haproxyConfig
	versions map[string]string
	// slots maps, per EDS cluster, each endpoint address ever configured to
	// its server slot: an address keeps its slot (and counters) for life.
	slots map[string]map[netip.AddrPort]int
	// up is each EDS server's state as last set (by "backend/server").
	up map[string]bool
	// listenerBackends are the clusters each listener reaches.
	listenerBackends map[string][]string
	// applies counts endpoint changes applied through the runtime API,
	// restarts the times haproxy had to be started again; apply is the
	// slowest endpoint change's time in the runtime API.
	applies, restarts int
	apply             time.Duration
}

var _ Engine = (*HAProxy)(nil)

// NewHAProxy returns an haproxy engine; Start runs it.
func NewHAProxy(opts HAProxyEngineOptions) *HAProxy {
	if opts.AdminAddr == "" {
		opts.AdminAddr = DefaultAdminAddr
	}
	if opts.Cluster == "" {
		opts.Cluster = "meshbench"
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	if opts.Stdout == nil {
		opts.Stdout = io.Discard
	}
	if opts.Stderr == nil {
		opts.Stderr = io.Discard
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &HAProxy{opts: opts, ready: make(chan struct{}), failed: make(chan struct{}), done: make(chan struct{}),
		versions: map[string]string{}, slots: map[string]map[netip.AddrPort]int{}}
}

// Name is "haproxy".
func (h *HAProxy) Name() string { return EngineHAProxy }

// Start opens the admin endpoint and the xDS stream; haproxy starts once
// the first full configuration is in.
func (h *HAProxy) Start(ctx context.Context) error {
	bin, err := HAProxyAvailable(h.opts.Binary)
	if err != nil {
		return fmt.Errorf("start haproxy: %w", err)
	}
	h.bin = bin
	h.dir = h.opts.ConfigDir
	if h.dir == "" {
		if h.dir, err = os.MkdirTemp("", "meshbench-haproxy-"); err != nil {
			return fmt.Errorf("start haproxy: %w", err)
		}
	}
	h.sock = filepath.Join(h.dir, "haproxy-"+strings.ReplaceAll(h.opts.NodeID, "~", "-")+".sock")
	if h.admin, err = net.Listen("tcp", h.opts.AdminAddr); err != nil {
		return fmt.Errorf("start haproxy: admin: %w", err)
	}
	ctx, h.cancel = context.WithCancel(ctx)
	h.adminSrv = &http.Server{Handler: h.adminHandler(), ReadHeaderTimeout: 5 * time.Second}
	h.wg.Add(2)
	go func() { defer h.wg.Done(); _ = h.adminSrv.Serve(h.admin) }()
	go func() {
		defer h.wg.Done()
		runXDS(ctx, xdsConfig{
			socket: h.opts.XDSSocket, nodeID: h.opts.NodeID, cluster: h.opts.Cluster,
			connectTimeout: h.opts.ConnectTimeout, log: h.opts.Logger, sink: h,
			ready: func() { h.readyOnce.Do(func() { close(h.ready) }) }, isReady: h.isReady,
			fail: func(err error) { h.failOnce.Do(func() { h.failErr = err; close(h.failed) }) },
		})
	}()
	go func() {
		<-ctx.Done()
		_ = h.adminSrv.Close()
		h.wg.Wait()
		h.stopHAProxy()
		if h.opts.ConfigDir == "" {
			os.RemoveAll(h.dir)
		}
		close(h.done)
	}()
	return nil
}

// AdminAddr returns the admin endpoint's address once started.
func (h *HAProxy) AdminAddr() string {
	if h.admin == nil {
		return h.opts.AdminAddr
	}
	return h.admin.Addr().String()
}

func (h *HAProxy) isReady() bool {
	select {
	case <-h.ready:
		return true
	default:
		return false
	}
}

// Ready returns nil once haproxy runs the first full configuration.
func (h *HAProxy) Ready(ctx context.Context) error {
	select {
	case <-h.ready:
		return nil
	case <-h.failed:
		return h.failErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stop stops haproxy and the xDS stream.
func (h *HAProxy) Stop(context.Context) error {
	if h.cancel != nil {
		h.cancel()
		<-h.done
	}
	return nil
}

// Counters returns haproxy's counters in the builtin engine's flat form.
func (h *HAProxy) Counters(context.Context) (map[string]int64, error) {
	s, err := h.Stats()
	if err != nil {
		return nil, err
	}
	return s.Flatten(), nil
}

// commit implements xdsSink. Until the configuration is complete (every
// route and endpoint set it names received) nothing runs. Then haproxy
// starts on the rendered configuration; afterwards an endpoint change goes
// through the runtime API, and any other change restarts haproxy on the
// new configuration (its counters start again; listeners and clusters
// change only when a datapath is installed).
func (h *HAProxy) commit(c *compiledSet, url string, _, _ map[string]bool, _ map[string]map[string]proto.Message, version string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !configComplete(c) {
		h.versions[typeNames[url]] = version
		return nil
	}
	cfg, err := renderHAProxy(*c, HAProxyOptions{ListenIP: h.opts.ListenIP, OutboundPort: h.opts.OutboundPort, InboundPort: h.opts.InboundPort,
		StatsSocket: h.sock, ACLDir: h.aclDir(), Threads: h.opts.Threads})
	if err != nil {
		return err
	}
	if h.cmd != nil && skeleton(cfg.text) == skeleton(h.cfg.text) {
		// Only servers and ACL patterns differ (endpoints, or a pod's
		// new address): the running haproxy takes them through its
		// runtime API.
		start := time.Now()
		na, err := h.updateACLs(cfg.aclFiles)
		if err != nil {
			return err
		}
		all := map[string]bool{}
		for _, cl := range c.clusters {
			if cl.eds {
				all[cl.edsName] = true
			}
		}
		n, err := h.updateEndpoints(c, all)
		if err == nil {
			h.versions[typeNames[url]] = version
			if n+na > 0 {
				h.applies++
				h.apply = max(h.apply, time.Since(start))
			}
			return nil
		}
		if !errors.Is(err, errNoSlot) {
			return err
		}
		h.opts.Logger.Info("haproxy: no free server slot; restarting on a new configuration", "err", err)
	}
	if h.cmd != nil {
		h.stopHAProxyLocked()
		h.restarts++
	}
	if err := h.startHAProxy(cfg); err != nil {
		return err
	}
	h.cfg = cfg
	h.slots, h.up = map[string]map[netip.AddrPort]int{}, map[string]bool{}
	for cn, cl := range c.clusters {
		if !cl.eds {
			continue
		}
		m := map[netip.AddrPort]int{}
		for i, ep := range c.assignments[cl.edsName] {
			m[ep.addr] = i
			h.up[cfg.backends[cn]+"/"+cfg.servers[cn][i]] = ep.healthy
		}
		h.slots[cn] = m
	}
	h.listenerBackends = listenerClusters(c)
	h.versions[typeNames[url]] = version
	return nil
}

// configComplete says whether every route configuration and endpoint set
// the listeners and clusters name has been received.
func configComplete(c *compiledSet) bool {
	if len(c.listeners) == 0 {
		return false
	}
	for _, l := range c.listeners {
		for _, ch := range append(slices.Clone(l.chains), l.def) {
			if ch != nil && ch.http != nil && ch.http.inline == nil {
				if _, ok := c.routes[ch.http.rds]; !ok {
					return false
				}
			}
		}
	}
	for _, cl := range c.clusters {
		if cl.eds {
			if _, ok := c.assignments[cl.edsName]; !ok {
				return false
			}
		}
	}
	return true
}

// listenerClusters returns the clusters each listener's chains reach.
func listenerClusters(c *compiledSet) map[string][]string {
	out := map[string][]string{}
	for ln, l := range c.listeners {
		set := map[string]bool{}
		for _, ch := range append(slices.Clone(l.chains), l.def) {
			switch {
			case ch == nil:
			case ch.tcp != nil:
				set[ch.tcp.cluster] = true
			case ch.http != nil:
				rc := ch.http.inline
				if rc == nil {
					rc = c.routes[ch.http.rds]
				}
				if rc == nil {
					continue
				}
				for _, v := range vhosts(rc) {
					for _, r := range v.routes {
						set[r.cluster] = true
					}
				}
			}
		}
		out[ln] = sortedKeys(set)
	}
	return out
}

// aclDir is where the ACL files are.
func (h *HAProxy) aclDir() string {
	return filepath.Join(h.dir, "acl-"+strings.ReplaceAll(h.opts.NodeID, "~", "-"))
}

// writeACLs writes the ACL files haproxy loads at start.
func writeACLs(files map[string][]string) error {
	for path, values := range files {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(strings.Join(values, "\n")+"\n"), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// updateACLs replaces the patterns of every ACL file whose patterns
// changed, each atomically (prepare a new version, add to it, commit it),
// and rewrites the file for a later start. It returns how many it
// replaced. h.mu is held.
func (h *HAProxy) updateACLs(files map[string][]string) (int, error) {
	n := 0
	for _, path := range sortedKeys(files) {
		values := files[path]
		if slices.Equal(values, h.cfg.aclFiles[path]) {
			continue
		}
		out, err := h.runtime("prepare acl " + path)
		if err != nil {
			return n, err
		}
		var ver int
		if _, err := fmt.Sscanf(strings.TrimSpace(out), "New version created: %d", &ver); err != nil {
			return n, fmt.Errorf("haproxy runtime API: prepare acl %s: %q", path, strings.TrimSpace(out))
		}
		cmds := make([]string, 0, len(values)+1)
		for _, v := range values {
			cmds = append(cmds, fmt.Sprintf("add acl @%d %s %s", ver, path, v))
		}
		cmds = append(cmds, fmt.Sprintf("commit acl @%d %s", ver, path))
		if out, err = h.runtime(strings.Join(cmds, ";")); err != nil {
			return n, err
		}
		if l := strings.TrimSpace(out); l != "" {
			return n, fmt.Errorf("haproxy runtime API: acl %s: %s", path, l)
		}
		h.cfg.aclFiles[path] = values
		if err := writeACLs(map[string][]string{path: values}); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// skeleton is a rendered configuration without its server lines: two
// configurations with the same skeleton differ only in endpoints.
func skeleton(text string) string {
	var b strings.Builder
	for line := range strings.Lines(text) {
		if !strings.HasPrefix(line, "    server ") {
			b.WriteString(line)
		}
	}
	return b.String()
}

// errNoSlot: an endpoint change needs more server slots than the
// backend has.
var errNoSlot = errors.New("no free server slot")

// updateEndpoints applies the changed endpoint sets through the runtime
// API: a known address keeps its server (enabled or put in maintenance by
// its health), a new one takes a free slot, and addresses no longer
// listed go into maintenance (their counters stay theirs). h.mu is held.
func (h *HAProxy) updateEndpoints(c *compiledSet, changed map[string]bool) (int, error) {
	var cmds []string
	for cn, cl := range c.clusters {
		if !cl.eds || !changed[cl.edsName] {
			continue
		}
		be, names, slots := h.cfg.backends[cn], h.cfg.servers[cn], h.slots[cn]
		if be == "" || slots == nil {
			return 0, fmt.Errorf("%w: cluster %s is not in the running configuration", errNoSlot, cn)
		}
		used := map[int]bool{}
		for _, i := range slots {
			used[i] = true
		}
		listed := map[netip.AddrPort]bool{}
		for _, ep := range c.assignments[cl.edsName] {
			listed[ep.addr] = true
			i, ok := slots[ep.addr]
			if !ok {
				i = -1
				for j := range names {
					if !used[j] {
						i = j
						break
					}
				}
				if i < 0 {
					return 0, fmt.Errorf("%w in backend %s for %s", errNoSlot, be, ep.addr)
				}
				used[i] = true
				slots[ep.addr] = i
				cmds = append(cmds, fmt.Sprintf("set server %s/%s addr %s port %d", be, names[i], ep.addr.Addr(), ep.addr.Port()))
			}
			up := ep.healthy
			if h.up[be+"/"+names[i]] != up || !ok {
				state := "ready"
				if !up {
					state = "maint"
				}
				cmds = append(cmds, fmt.Sprintf("set server %s/%s state %s", be, names[i], state))
				h.up[be+"/"+names[i]] = up
			}
		}
		for a, i := range slots {
			if !listed[a] && h.up[be+"/"+names[i]] {
				cmds = append(cmds, fmt.Sprintf("set server %s/%s state maint", be, names[i]))
				h.up[be+"/"+names[i]] = false
			}
		}
	}
	if len(cmds) == 0 {
		return 0, nil
	}
	out, err := h.runtime(strings.Join(cmds, ";"))
	if err != nil {
		return 0, err
	}
	// The runtime API answers each command with a line, empty on success.
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.Contains(l, "changed from") {
			return 0, fmt.Errorf("haproxy runtime API: %s (for %q)", l, cmds)
		}
	}
	return len(cmds), nil
}

// runtime sends commands (";"-separated) to the runtime API and returns
// its answer.
func (h *HAProxy) runtime(cmds string) (string, error) {
	c, err := net.DialTimeout("unix", h.sock, 2*time.Second)
	if err != nil {
		return "", fmt.Errorf("haproxy runtime API: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, cmds+"\n"); err != nil {
		return "", fmt.Errorf("haproxy runtime API: %w", err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return "", fmt.Errorf("haproxy runtime API: %w", err)
	}
	return string(b), nil
}

// startHAProxy writes cfg and starts haproxy on it, returning once its
// runtime API answers. h.mu is held.
func (h *HAProxy) startHAProxy(cfg *haproxyConfig) error {
	path := filepath.Join(h.dir, "haproxy-"+strings.ReplaceAll(h.opts.NodeID, "~", "-")+".cfg")
	if err := os.WriteFile(path, []byte(cfg.text), 0o644); err != nil {
		return fmt.Errorf("start haproxy: %w", err)
	}
	if err := writeACLs(cfg.aclFiles); err != nil {
		return fmt.Errorf("start haproxy: %w", err)
	}
	os.Remove(h.sock)
	cmd := exec.Command(h.bin, "-db", "-f", path)
	cmd.Stdout, cmd.Stderr = h.opts.Stdout, h.opts.Stderr
	dieWithParent(cmd)
	exited := make(chan struct{})
	started := make(chan error, 1)
	run := func() error {
		if err := cmd.Start(); err != nil {
			started <- err
			return nil
		}
		started <- nil
		h.exitErr = cmd.Wait()
		close(exited)
		return nil
	}
	go func() {
		// The parent-death signal fires when the forking thread ends:
		// hold it for haproxy's life.
		if h.opts.Netns != "" {
			if err := nsutil.Do(h.opts.Netns, run); err != nil {
				started <- err
			}
			return
		}
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		_ = run()
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("start haproxy: %w", err)
	}
	h.cmd, h.exited = cmd, exited
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := h.runtime("show info"); err == nil {
			return nil
		}
		select {
		case <-exited:
			h.cmd = nil
			return fmt.Errorf("haproxy exited at start: %v", h.exitErr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			h.stopHAProxyLocked()
			return errors.New("haproxy's runtime API did not answer within 10s")
		}
	}
}

func (h *HAProxy) stopHAProxy() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stopHAProxyLocked()
}

// stopHAProxyLocked stops haproxy (SIGTERM, SIGKILL after 5 s). h.mu is
// held.
func (h *HAProxy) stopHAProxyLocked() {
	if h.cmd == nil {
		return
	}
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.exited:
	case <-time.After(5 * time.Second):
		_ = h.cmd.Process.Kill()
		<-h.exited
	}
	h.cmd = nil
}

// Stats reads haproxy's counters (`show stat`) into the builtin engine's
// form: listeners from their frontends (bytes and connections) and the
// backends they reach (requests by status), clusters from their backends,
// hosts from the backends' servers by the address each slot was given;
// with the engine's figures and the xDS settings its configuration does
// not render as in xDS (Notes, distinct and sorted).
func (h *HAProxy) Stats() (Stats, error) {
	h.mu.Lock()
	cfg, slots, lb := h.cfg, h.slots, h.listenerBackends
	versions := make(map[string]string, len(h.versions))
	for k, v := range h.versions {
		versions[k] = v
	}
	notes := slices.Clone(h.notes())
	h.mu.Unlock()
	slices.Sort(notes)
	s := Stats{Version: versions, Listeners: map[string]map[string]int64{}, Clusters: map[string]map[string]int64{}, Engine: h.Metrics(),
		Notes: slices.Compact(notes)}
	if cfg == nil {
		return s, nil
	}
	raw, err := h.runtime("show stat")
	if err != nil {
		return Stats{}, err
	}
	rows := parseShowStat(raw)
	num := func(row map[string]string, k string) int64 {
		v, _ := strconv.ParseInt(row[k], 10, 64)
		return v
	}
	for cn, be := range cfg.backends {
		row := rows[be+"/BACKEND"]
		if row == nil {
			continue
		}
		s.Clusters[cn] = map[string]int64{
			// Connections, not sessions: in HTTP mode a session (stot) is
			// a request.
			"cx_total": num(row, "connect"), "cx_active": num(row, "scur"), "cx_connect_fail": num(row, "econ"),
			"rq_total": num(row, "req_tot"), "rq_2xx": num(row, "hrsp_2xx"), "rq_4xx": num(row, "hrsp_4xx"), "rq_5xx": num(row, "hrsp_5xx"),
			"rq_retry": num(row, "wretr"), "bytes_in": num(row, "bout"), "bytes_out": num(row, "bin"),
		}
		names := cfg.servers[cn]
		addrs := map[string]string{}
		for a, i := range slots[cn] {
			if i < len(names) {
				addrs[names[i]] = a.String()
			}
		}
		if len(names) == 0 {
			// Static clusters: their servers' own addresses.
			for key, r := range rows {
				if strings.HasPrefix(key, be+"/") && key != be+"/BACKEND" && r["addr"] != "" && r["addr"] != "0.0.0.0:0" {
					addrs[strings.TrimPrefix(key, be+"/")] = r["addr"]
				}
			}
		}
		for srv, addr := range addrs {
			r := rows[be+"/"+srv]
			if r == nil {
				continue
			}
			if s.Hosts == nil {
				s.Hosts = map[string]map[string]map[string]int64{}
			}
			if s.Hosts[cn] == nil {
				s.Hosts[cn] = map[string]map[string]int64{}
			}
			hm := map[string]int64{
				"cx_total": num(r, "connect"), "rq_total": num(r, "hrsp_1xx") + num(r, "hrsp_2xx") + num(r, "hrsp_3xx") + num(r, "hrsp_4xx") + num(r, "hrsp_5xx") + num(r, "hrsp_other"),
				"rq_2xx": num(r, "hrsp_2xx"), "rq_error": num(r, "hrsp_4xx") + num(r, "hrsp_5xx") + num(r, "eresp"),
				"bytes_in": num(r, "bout"), "bytes_out": num(r, "bin"),
			}
			if counted(hm) {
				s.Hosts[cn][addr] = hm
			}
		}
	}
	for ln, fe := range cfg.frontends {
		row := rows[fe+"/FRONTEND"]
		if row == nil {
			continue
		}
		m := map[string]int64{
			"cx_total": num(row, "conn_tot"), "cx_active": num(row, "scur"),
			"bytes_in": num(row, "bin"), "bytes_out": num(row, "bout"),
			// Requests no virtual host matched: denied with a 404.
			"no_route": num(row, "dreq"), "rq_4xx": num(row, "dreq"), "rq_total": num(row, "dreq"),
		}
		for _, cn := range lb[ln] {
			c := s.Clusters[cn]
			m["rq_total"] += c["rq_total"]
			m["rq_2xx"] += c["rq_2xx"]
			m["rq_4xx"] += c["rq_4xx"]
			m["rq_5xx"] += c["rq_5xx"]
			m["rq_retry"] += c["rq_retry"]
		}
		s.Listeners[ln] = m
	}
	return s, nil
}

// parseShowStat reads `show stat` CSV into "proxy/server" → field → value.
func parseShowStat(raw string) map[string]map[string]string {
	out := map[string]map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var head []string
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "# ") {
			head = strings.Split(strings.TrimPrefix(line, "# "), ",")
			continue
		}
		if line == "" || head == nil {
			continue
		}
		f := strings.Split(line, ",")
		row := make(map[string]string, len(head))
		for i, v := range f {
			if i < len(head) {
				row[head[i]] = v
			}
		}
		out[row["pxname"]+"/"+row["svname"]] = row
	}
	return out
}

// Metrics returns what the engine measured of itself: endpoint changes
// applied through the runtime API, the slowest one's time there, and
// restarts.
func (h *HAProxy) Metrics() map[string]float64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return map[string]float64{
		"haproxy_runtime_applies":  float64(h.applies),
		"haproxy_runtime_apply_us": float64(h.apply.Microseconds()),
		"haproxy_restarts":         float64(h.restarts),
		"haproxy_unrendered_notes": float64(len(h.notes())),
	}
}

func (h *HAProxy) notes() []string {
	if h.cfg == nil {
		return nil
	}
	return h.cfg.notes
}

// adminHandler serves /stats (the builtin engine's JSON), /ready, /config
// (the rendered haproxy.cfg and what it could not render) and /metrics.
func (h *HAProxy) adminHandler() http.Handler {
	mux := http.NewServeMux()
	handleStatsReady(mux, h.Stats, h.isReady, h.opts.XDSSocket)
	mux.HandleFunc("/config", func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		cfg := h.cfg
		h.mu.Unlock()
		if cfg == nil {
			http.Error(w, "no configuration yet", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, cfg.text)
		for _, n := range cfg.notes {
			fmt.Fprintf(w, "# not as in xDS: %s\n", n)
		}
	})
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, h.Metrics()) })
	return mux
}
