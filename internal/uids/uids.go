package uids

// Proxy is the uid and gid every mesh proxy runs as (Istio's 1337). The
// iptables capture rules and the connect4 steering skip its connections,
// so that a proxy's own traffic is not sent back to it.
const Proxy = 1337
