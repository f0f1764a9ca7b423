// Package fleet runs a proxy datapath's proxies and the control plane that
// configures them: started, made ready, restarted after a crash, told of
// endpoint changes and stopped, the same way for sidecars and node proxies.
package fleet
