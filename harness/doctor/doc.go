// Package doctor probes this host for the kernel features and tools each
// datapath, fault, proxy engine and provider needs, and reports what is ready.
package doctor
