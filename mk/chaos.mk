# make chaos: the reliability suite (tests/e2e/test_chaos.py) with more
# load than its run inside make test, bounded (well under 10 minutes on
# this machine's 2 cores), then docs/RELIABILITY.md from its ledger.

CHAOS_SCALE ?= 3

.PHONY: chaos

chaos: build-all rootfs
	@rm -f $(BUILD)/chaos/results.jsonl
	CHAOS_SCALE=$(CHAOS_SCALE) timeout 600 $(PYTEST) -p no:cacheprovider -q \
	    tests/e2e/test_chaos.py
	$(PYTHON) scripts/chaos-report.py $(BUILD)/chaos/results.jsonl \
	    "make chaos CHAOS_SCALE=$(CHAOS_SCALE)" > docs/RELIABILITY.md
	@echo "wrote docs/RELIABILITY.md"
