# The Python SDK (sdk/python, package sandbox_sdk): pure Python, nothing to
# build. `sdk-check` byte-compiles it (bytecode goes to build/, not into the
# source tree) and imports it; `sdk-unit` runs its unit tests (no service
# needed). The end-to-end tests are tests/e2e/test_sdk.py (make test-e2e).
# `sdk-install` installs it into a virtualenv under var/ without network
# access, using Debian's pip, setuptools and paramiko.

SDK_DIR   := $(ROOT)/sdk/python
SDK_VENV  ?= $(VAR)/sdk-venv

.PHONY: sdk-check sdk-unit sdk-install

sdk-check:
	@PYTHONPYCACHEPREFIX=$(BUILD)/pycache $(PYTHON) -m compileall -q $(SDK_DIR)/sandbox_sdk $(SDK_DIR)/tests
	@PYTHONPYCACHEPREFIX=$(BUILD)/pycache PYTHONPATH=$(SDK_DIR) $(PYTHON) -c \
	    'import sandbox_sdk; print("sandbox_sdk", sandbox_sdk.__version__, "ok")'

sdk-unit: sdk-check
	PYTHONPYCACHEPREFIX=$(BUILD)/pycache $(PYTEST) -p no:cacheprovider -q $(SDK_DIR)/tests

sdk-install: deps
	$(PYTHON) -m venv --system-site-packages $(SDK_VENV)
	$(SDK_VENV)/bin/pip install --no-build-isolation --no-index $(SDK_DIR)
	@rm -rf $(SDK_DIR)/build $(SDK_DIR)/sandbox_sdk.egg-info
	@echo "sandbox_sdk installed in $(SDK_VENV) (use $(SDK_VENV)/bin/python)"

BUILD_TARGETS += sdk-check
UNIT_TESTS    += sdk-unit
