# make bench: runs each part's benchmark (bench-create from mk/backend.mk,
# bench-tunnel from mk/module.mk, bench-ssh and bench-gvisor below; each
# writes a markdown section into build/bench/) and assembles
# docs/BENCHMARKS.md from them.

.PHONY: bench bench-ssh bench-gvisor

bench: build-all rootfs
	@mkdir -p $(BUILD)/bench
	@rm -f $(BUILD)/bench/*.md
	$(MAKE) --no-print-directory bench-create bench-tunnel bench-ssh \
	    bench-gvisor
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
# are runc's alone.
bench-gvisor: build-all rootfs
	@mkdir -p $(BUILD)/bench
	$(PYTHON) bench/create.py --isolation gvisor --live 0 --pool 0 \
	    > $(BUILD)/bench/create-gvisor.md
	$(PYTHON) bench/ssh.py --isolation gvisor --out $(BUILD)/bench/ssh-gvisor.md
