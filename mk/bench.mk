# make bench: runs each part's benchmark (bench-create from mk/backend.mk,
# bench-tunnel from mk/module.mk, bench-ssh below; each writes a markdown
# section into build/bench/) and assembles docs/BENCHMARKS.md from them.

.PHONY: bench bench-ssh

bench: build-all rootfs
	@mkdir -p $(BUILD)/bench
	@rm -f $(BUILD)/bench/*.md
	$(MAKE) --no-print-directory bench-create bench-tunnel bench-ssh
	@scripts/bench-report.sh $(BUILD)/bench > docs/BENCHMARKS.md
	@echo "wrote docs/BENCHMARKS.md"

# OpenSSH through a tunnel vs straight to the sandbox: it needs every part
# (backend, module, a runc sandbox), so it lives here rather than in one
# part's fragment.
bench-ssh: build-all rootfs
	@mkdir -p $(BUILD)/bench
	$(PYTHON) bench/ssh.py --out $(BUILD)/bench/ssh.md \
	    $(if $(ISOLATION),--isolation $(ISOLATION))
