# make bench: runs each part's benchmark (bench-create from mk/backend.mk,
# bench-tunnel from mk/module.mk; each writes a markdown section into
# build/bench/) and assembles docs/BENCHMARKS.md from them.

.PHONY: bench

bench: build-all rootfs
	@mkdir -p $(BUILD)/bench
	@rm -f $(BUILD)/bench/*.md
	$(MAKE) --no-print-directory bench-create bench-tunnel
	@scripts/bench-report.sh $(BUILD)/bench > docs/BENCHMARKS.md
	@echo "wrote docs/BENCHMARKS.md"
