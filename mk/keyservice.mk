# The key service (keyservice/, see keyservice/README.md). Its unit tests run in test-unit and
# its host tests (test/host/keyservice/) in test-host, both found by location. The host tests
# use setpriv (util-linux) to start the service as root without CAP_DAC_OVERRIDE, for the
# unreadable-secret refusal.
APT_PACKAGES += util-linux

.PHONY: bench-keyservice
# GetDataKey throughput and latency over mTLS, cloak against a bare grpc-js baseline, in one
# run. Prints a table; writes bench/results/keyservice-<date>.json. BENCH_ROUNDS,
# BENCH_DURATION_MS, BENCH_WARMUP_MS and BENCH_NODE_FLAGS tune it.
bench-keyservice: deps-npm build
	node dist/bench/keyservice/run.js
