# Kubernetes: the driver's test program, offline checks of deploy/, and
# the commands that deploy to a cluster.
#
# The driver itself (backend/runtime_k8s.c, k8s_client.c, k8s_config.c) is
# part of pico-backend (mk/backend.mk). Nothing here needs a cluster or a
# container engine except k8s-images / k8s-deploy / k8s-delete, which use
# the docker and kubectl on PATH (no Docker engine runs on pico's CI
# machines: build images where one does).

K8S_PKGS    := jansson libssh libcurl
K8S_OVERLAY ?= deploy/k8s/base
K8S_IMAGE_PREFIX ?= pico/
K8S_TAG     ?= latest
K8S_DRIVER_SRCS := tests/fake_k8s/driver_cli.c backend/runtime_k8s.c \
                   backend/k8s_client.c backend/k8s_config.c backend/hostkey.c \
                   backend/util.c

BUILD_TARGETS += $(BUILD)/k8s/driver_cli
UNIT_TESTS    += k8s-manifests-check

$(BUILD)/k8s/driver_cli: $(K8S_DRIVER_SRCS) $(wildcard backend/*.h) mk/k8s.mk
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SANFLAGS) $(shell pkg-config --cflags $(K8S_PKGS)) \
	    -Ibackend -o $@ $(K8S_DRIVER_SRCS) $(LDFLAGS) \
	    $(shell pkg-config --libs $(K8S_PKGS)) -lpthread

.PHONY: k8s-manifests-check k8s-images k8s-deploy k8s-delete

# Renders every kustomization and checks the objects and Dockerfiles.
# --selftest: each check is also shown a broken input it must reject.
k8s-manifests-check:
	$(PYTHON) tests/deploy/check_manifests.py --selftest
	$(PYTHON) tests/deploy/lint_dockerfiles.py --selftest
	$(PYTHON) tests/deploy/lint_dockerfiles.py deploy/sandbox/Dockerfile \
	    deploy/server/Dockerfile

k8s-images:
	docker build -t $(K8S_IMAGE_PREFIX)sandbox:$(K8S_TAG) -f deploy/sandbox/Dockerfile .
	docker build -t $(K8S_IMAGE_PREFIX)server:$(K8S_TAG) -f deploy/server/Dockerfile .

k8s-deploy:
	kubectl apply -k $(K8S_OVERLAY)

k8s-delete:
	kubectl delete -k $(K8S_OVERLAY) --ignore-not-found
