// Command pause is the lab's pod sandbox process (image strait.io/lab/pause), the same job as
// Kubernetes' own pause: it holds the pod's namespaces open, and as PID 1 of the pod's PID
// namespace it reaps the zombies orphaned processes leave behind. It exits on SIGTERM or
// SIGINT. It uses only the standard library so its image stays tiny; the lab builds it
// statically from this source (internal/lab/images embeds it).
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// version is printed by -v, as the Kubernetes pause does.
const version = "strait-lab-pause 1"

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "-v" || os.Args[1] == "--version") {
		fmt.Println(version)
		return
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "Warning: pause should be the first process")
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	// A child may have exited before Notify was in place; reap once up front.
	reap()
	for sig := range sigs {
		switch sig {
		case syscall.SIGCHLD:
			reap()
		default:
			fmt.Fprintf(os.Stderr, "Shutting down, got signal: %s\n", sig)
			os.Exit(0)
		}
	}
}

// reap collects every child that has exited. Signals coalesce, so one SIGCHLD may stand for
// several children: loop until none is left.
func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
	}
}
