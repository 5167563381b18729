// pause is the sandbox container of every pod in test/cluster: the process that holds the pod's
// namespaces while its containers come and go. It does what Kubernetes' own pause does (which
// cannot be pulled here: no registry): as PID 1 of the pod it reaps orphaned children, and it
// exits at once on SIGINT or SIGTERM, when the kubelet tears the sandbox down.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		// Every child that has exited, not one per signal: signals coalesce.
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
