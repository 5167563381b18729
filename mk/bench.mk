# Benchmarks (bench/, see BENCHMARKS.md). Not part of `make test`: they are long, and their
# figures depend on how busy the machine is. `make bench` runs every suite in BENCH_SUITES;
# a component's makefile adds its own with `BENCH_SUITES += bench-<name>` (as netd's adds
# bench-netd), so `make bench` depends only on targets that exist. Each suite prints its
# tables and writes bench/results/<name>-<date>.json; `make bench-doc` then copies the latest
# tables into BENCHMARKS.md.

# fio for the storage benchmark's I/O shapes, openssl for its cipher-speed context.
APT_PACKAGES += fio openssl

# The key service's benchmark lives in mk/keyservice.mk.
BENCH_SUITES += bench-storage bench-keyservice

.PHONY: bench bench-storage bench-doc
bench:
	@done=" "; for suite in $(BENCH_SUITES); do \
	  case "$$done" in *" $$suite "*) continue ;; esac; done="$$done$$suite "; \
	  echo "==> make $$suite"; \
	  $(MAKE) --no-print-directory $$suite || exit 1; \
	done
	@$(MAKE) --no-print-directory bench-doc
	@echo "==> all benchmarks ran:$$(echo ' $(BENCH_SUITES)' | tr ' ' '\n' | awk 'NF && !seen[$$0]++ { printf " %s", $$0 }')"

# Stage latency (cold, warm; cloak vs plain), the KDF's share of a cold stage (pbkdf2 vs
# argon2id), fio through dm-crypt vs the raw device (and the workqueue bypass), 50 volumes
# back to back. Runs in the VM tier; 9–24 minutes on the shared 2-core machine (load-dependent). CLOAK_BENCH_*
# variables size it (BENCHMARKS.md lists them).
bench-storage: deps build vm-kernel
	node dist/bench/storage/run.js

# Rewrites the marked sections of BENCHMARKS.md from the latest file of each benchmark.
bench-doc: build
	node dist/bench/doc.js
