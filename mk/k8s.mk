# Kubernetes: the driver's test program, offline checks of deploy/, and
# the commands that deploy to a cluster.
#
# The driver itself (backend/runtime/kubernetes/) is part of pico-backend
# (mk/backend.mk). Nothing here needs a cluster or a
# container engine except k8s-images / k8s-deploy / k8s-delete, which use
# the docker and kubectl on PATH (no Docker engine runs on pico's CI
# machines: build images where one does).

K8S_PKGS    := jansson libssh libcurl
K8S_OVERLAY ?= deploy/k8s/overlays/production
# No default: "pico/" would be someone's Docker Hub account. E.g.
# K8S_IMAGE_PREFIX=registry.example.com/pico/ (docs/kubernetes.md).
K8S_IMAGE_PREFIX ?=
K8S_TAG     ?= latest
# The driver's folder, plus what it uses outside it: the host key helper
# both drivers share, the core's util.c, netpolicy.c (the egress ranges)
# and the parsers they call.
K8S_DIR     := backend/runtime/kubernetes
K8S_DRIVER  := $(sort $(wildcard $(K8S_DIR)/*.c)) backend/runtime/hostkey.c \
               backend/core/util.c backend/core/netpolicy.c \
               $(wildcard common/*.c)
K8S_DRIVER_SRCS := tests/fake_k8s/driver_cli.c $(K8S_DRIVER)

BUILD_TARGETS += $(BUILD)/k8s/driver_cli
UNIT_TESTS    += k8s-manifests-check

$(BUILD)/k8s/driver_cli: $(K8S_DRIVER_SRCS) $(BACKEND_HDRS) mk/k8s.mk
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SANFLAGS) $(shell pkg-config --cflags $(K8S_PKGS)) \
	    -I. -Ibackend -o $@ $(K8S_DRIVER_SRCS) $(LDFLAGS) \
	    $(shell pkg-config --libs $(K8S_PKGS)) -lpthread

.PHONY: k8s-manifests-check k8s-images k8s-deploy k8s-delete

# Renders every kustomization and checks the objects and Dockerfiles.
# --selftest: each check is also shown a broken input it must reject.
# k8s_schema.py validates every rendered object against the upstream
# Kubernetes OpenAPI schemas (npm packages it installs into
# build/k8s-schema itself; fails when it cannot). The driver's request
# bodies are validated the same way by tests/e2e/test_k8s.py.
k8s-manifests-check:
	$(PYTHON) tests/deploy/check_manifests.py --selftest
	$(PYTHON) tests/deploy/k8s_schema.py --selftest --manifests
	$(PYTHON) tests/deploy/lint_dockerfiles.py --selftest
	$(PYTHON) tests/deploy/lint_dockerfiles.py deploy/sandbox/Dockerfile \
	    deploy/server/Dockerfile

k8s-images:
	@case "$(K8S_IMAGE_PREFIX)" in */) ;; *) echo "k8s-images: set \
	  K8S_IMAGE_PREFIX to your registry, e.g. registry.example.com/pico/" \
	  >&2; exit 1;; esac
	docker build -t $(K8S_IMAGE_PREFIX)sandbox:$(K8S_TAG) -f deploy/sandbox/Dockerfile .
	docker build -t $(K8S_IMAGE_PREFIX)server:$(K8S_TAG) -f deploy/server/Dockerfile .

k8s-deploy:
	@if kubectl kustomize $(K8S_OVERLAY) | grep -q REGISTRY.example/; then \
	  echo "k8s-deploy: $(K8S_OVERLAY) still names the REGISTRY.example" \
	  "placeholder: use an overlay that names your registry" >&2; exit 1; fi
	kubectl apply -k $(K8S_OVERLAY)

k8s-delete:
	kubectl delete -k $(K8S_OVERLAY) --ignore-not-found

# -- fuzzing (clang libFuzzer): the kubeconfig reader and the watch stream
# of the driver (tests/fuzz/k8s_*.c). Seeds are in tests/fuzz/corpus/<name>;
# what the fuzzer adds stays in build/fuzz/corpus-<name>, a crash input in
# build/fuzz/<name>-crash-*.
K8S_FUZZERS := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,\
                 $(wildcard tests/fuzz/k8s_*.c))
K8S_FUZZ_CC := clang -g -O1 -fno-omit-frame-pointer \
               -fsanitize=fuzzer,address,undefined \
               -fno-sanitize-recover=undefined -std=gnu11 $(WARN) \
               $(shell pkg-config --cflags $(K8S_PKGS)) -I. -Ibackend
K8S_FUZZ_LIBS := $(shell pkg-config --libs $(K8S_PKGS)) -lpthread
# The watch harness #includes the files of its static functions (the
# client's stream splitter, the driver's event judge) and links the rest
# of the driver.
K8S_FUZZ_SRC_k8s_kubeconfig := $(K8S_DIR)/k8s_config.c $(K8S_DIR)/k8s_client.c
K8S_FUZZ_INCLUDED_k8s_watch := $(K8S_DIR)/k8s_client.c $(K8S_DIR)/k8s_ready.c
K8S_FUZZ_SRC_k8s_watch := $(filter-out $(K8S_FUZZ_INCLUDED_k8s_watch),\
                            $(K8S_DRIVER))
K8S_FUZZ_DEPS := $(K8S_DRIVER) $(BACKEND_HDRS) mk/k8s.mk

$(BUILD)/fuzz/k8s_%: tests/fuzz/k8s_%.c $(K8S_FUZZ_DEPS)
	@mkdir -p $(@D)
	$(K8S_FUZZ_CC) -o $@ $< $(K8S_FUZZ_SRC_$(notdir $@)) $(K8S_FUZZ_LIBS)

# Inputs up to 64 KiB: a kubeconfig line's limit.

.PHONY: fuzz-short-k8s fuzz-long-k8s
fuzz-short-k8s: $(K8S_FUZZERS)
	$(call run_fuzzers,$(K8S_FUZZERS),10,65536)

fuzz-long-k8s: $(K8S_FUZZERS)
	$(call run_fuzzers,$(K8S_FUZZERS),$${FUZZ_SECONDS:-600},65536)

FUZZ_SHORT += fuzz-short-k8s
FUZZ_LONG  += fuzz-long-k8s
