// Package none is the no-mesh baseline datapath: traffic goes from pod to pod
// through the kernel and the testbed's veths and bridges only.
package none
