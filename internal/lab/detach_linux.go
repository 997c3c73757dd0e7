package lab

import "syscall"

// detached makes the supervisor its own session, so it outlives the `lab up` command and
// the terminal it ran in.
func detached() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }
