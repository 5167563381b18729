# `make demo`: see cloak work, with evidence. The storage half runs where the kernel has
# dm-crypt (the VM tier on this machine, natively elsewhere); the network half (mk/deploy.mk)
# runs two nodes with netd in network namespaces here.
.PHONY: demo demo-storage
demo: demo-storage demo-network

demo-storage: deps build vm-kernel
	test/vm/run.sh -- node dist/demo/storage.js
