# make bench: runs each part's benchmark (bench-create from mk/backend.mk,
# bench-tunnel from mk/module.mk, bench-ssh, bench-gvisor and bench-ports
# below; each writes a markdown section into build/bench/) and assembles
# docs/BENCHMARKS.md from them.

.PHONY: bench bench-ssh bench-gvisor bench-ports

bench: build-all rootfs
	@mkdir -p $(BUILD)/bench
	@rm -f $(BUILD)/bench/*.md
	$(MAKE) --no-print-directory bench-create bench-tunnel bench-ssh \
	    bench-gvisor bench-ports
	@scripts/bench-report.sh $(BUILD)/bench > docs/BENCHMARKS.md
	@echo "wrote docs/BENCHMARKS.md"

# OpenSSH through a tunnel vs straight to the sandbox: it needs every part
# (backend, module, a runc sandbox), so it lives here rather than in one
# part's fragment.
bench-ssh: build-all rootfs
	@mkdir -p $(BUILD)/bench
	$(PYTHON) bench/ssh.py --out $(BUILD)/bench/ssh.md \
	    $(if $(ISOLATION),--isolation $(ISOLATION))

# The gvisor tier (docs/runtime-local.md): create -> ready and SSH through
# the tunnel, as bench-create and bench-ssh measure runc (the default
# tier) in the same make bench; the 500 live sandboxes and the warm pool
# are runc's alone. Fewer creates, 2 at a time: a gVisor sandbox costs
# about 10x a runc one to start and to delete (and SSH through it moves
# a fraction of runc's bytes: 128 MiB per transfer fits the time budget),
# and 8 at a time on 2 cores
# once gave a 201 whose first CONNECT got 502 (docs/runtime-local.md).
bench-gvisor: build-all rootfs
	@mkdir -p $(BUILD)/bench
	$(PYTHON) bench/create.py --isolation gvisor --live 0 --pool 0 -n 20 \
	    --total 8 -c 2 > $(BUILD)/bench/create-gvisor.md
	$(PYTHON) bench/ssh.py --isolation gvisor --mib 128 \
	    --out $(BUILD)/bench/ssh-gvisor.md

# Port tunnels through nginx vs the sandbox's port relay reached straight
# (bench/ports.py): what nginx adds on the ports path.
bench-ports: build-all rootfs
	@mkdir -p $(BUILD)/bench
	$(PYTHON) bench/ports.py --out $(BUILD)/bench/ports.md
