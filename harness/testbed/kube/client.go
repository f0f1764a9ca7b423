package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Options says which cluster to use and how.
type Options struct {
	// Config, when set, is used as is; otherwise Kubeconfig and Context
	// are loaded as kubectl loads them ($KUBECONFIG, ~/.kube/config).
	Config     *rest.Config
	Kubeconfig string
	Context    string
	// Timeout bounds the first request that checks the server is
	// reachable. Default 10s.
	Timeout time.Duration
	// Log receives progress; default: discard.
	Log *slog.Logger
}

// Client is a connection to one cluster.
type Client struct {
	cfg     *rest.Config
	cs      kubernetes.Interface
	log     *slog.Logger
	server  string
	version string
}

// Connect loads the configuration, and returns once the API server has
// answered a version request. The error names the server and the context.
func Connect(ctx context.Context, opts Options) (*Client, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	cfg := opts.Config
	where := "the given configuration"
	if cfg == nil {
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		if opts.Kubeconfig != "" {
			rules.ExplicitPath = opts.Kubeconfig
		}
		over := &clientcmd.ConfigOverrides{CurrentContext: opts.Context}
		loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, over)
		c, err := loader.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", describeKubeconfig(opts), err)
		}
		cfg = c
		where = "kubeconfig " + describeKubeconfig(opts)
	} else {
		cfg = rest.CopyConfig(cfg)
	}
	cfg.Timeout = 0
	// client-go's default (5 requests/s, bursts of 10) held a run's 16
	// access reviews back by 1.2 s; a run makes a few dozen requests in
	// all, which any API server's priority and fairness can take.
	if cfg.QPS == 0 && cfg.Burst == 0 {
		cfg.QPS, cfg.Burst = 50, 100
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	c := &Client{cfg: cfg, cs: cs, log: opts.Log, server: cfg.Host}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	v, err := serverVersion(ctx, cs)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("no answer in %s: %w", opts.Timeout, err)
		}
		return nil, fmt.Errorf("API server %s (%s) unreachable: %w", cfg.Host, where, err)
	}
	c.version = v
	c.log.Info("connected", "server", cfg.Host, "version", v)
	return c, nil
}

func serverVersion(ctx context.Context, cs kubernetes.Interface) (string, error) {
	body, err := cs.Discovery().RESTClient().Get().AbsPath("/version").Do(ctx).Raw()
	if err != nil {
		return "", err
	}
	var v version.Info
	if err := json.Unmarshal(body, &v); err != nil {
		return "", fmt.Errorf("/version: %w", err)
	}
	return v.GitVersion, nil
}

func describeKubeconfig(o Options) string {
	s := o.Kubeconfig
	if s == "" {
		s = "(default: $KUBECONFIG or ~/.kube/config)"
	}
	if o.Context != "" {
		s += ", context " + o.Context
	}
	return s
}

// Clientset returns the typed client.
func (c *Client) Clientset() kubernetes.Interface { return c.cs }

// Config returns a copy of the client's configuration.
func (c *Client) Config() *rest.Config { return rest.CopyConfig(c.cfg) }

// Server returns the API server's URL.
func (c *Client) Server() string { return c.server }

// Version returns the server's Kubernetes version (for example v1.37.2).
func (c *Client) Version() string { return c.version }
