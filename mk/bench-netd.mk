# netd's benchmark (bench/netd, see BENCHMARKS.md): convergence at 10 to 5 000 Node objects on a
# real API server, tunnel throughput (netd vs plain vs a hand-configured tunnel at its best
# MTU; wireguard-go on the host, kernel WireGuard in the VM tier) and the connectivity gap of a
# netd restart and a key rotation. CLOAK_BENCH_NETD_* variables size it.
BENCH_SUITES += bench-netd

.PHONY: bench-netd
bench-netd: deps build netd-deps vm-kernel
	node dist/bench/netd/run.js
