# `make demo`: see cloak work, with evidence. The storage half runs where the kernel has
# dm-crypt (the VM tier on this machine, natively elsewhere).
.PHONY: demo demo-storage
demo: demo-storage

demo-storage: deps build vm-kernel
	test/vm/run.sh -- node dist/demo/storage.js
