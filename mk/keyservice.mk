# The key service (keyservice/, see keyservice/README.md). Its unit tests run in test-unit and
# its host tests (test/host/keyservice/) in test-host, both found by location. The host tests
# use setpriv (util-linux) to start the service as root without CAP_DAC_OVERRIDE, for the
# unreadable-secret refusal.
APT_PACKAGES += util-linux

.PHONY: bench-keyservice
# GetDataKey throughput and latency over mTLS, cloak against a bare grpc-js baseline, in one
# run, a cost profile, and authorisation at 10 000 PVs and 20 000 pods in a real API server.
# Prints the tables; writes bench/results/keyservice-<date>.json. CLOAK_BENCH_KEYSERVICE_*
# variables tune it (BENCHMARKS.md). The API server is built by test/apiserver/build.sh (cached).
bench-keyservice: deps-npm build
	node dist/bench/keyservice/run.js
