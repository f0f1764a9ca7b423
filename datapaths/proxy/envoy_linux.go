package proxy

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel kill cmd's process when the thread that
// started it ends: a SIGKILLed wrapper leaves no Envoy behind holding the
// pod's ports and its figures.
func dieWithParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
