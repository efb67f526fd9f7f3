# The two commands a newcomer needs: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PYTHONPATH := $(CURDIR)/tests

.PHONY: demo demo-down help venv controlplane controlplane-up controlplane-down objectstore node node-images crds manifests lint unit integration test test-realnode clean reliability

help:
	@echo "make demo               control plane + node agent + operator running the iris loop"
	@echo "make demo-down          stop everything the demo started"
	@echo "make test               venv + control plane + lint + every test tier"
	@echo "make controlplane       build (or reuse) the cached etcd/kube-apiserver/... binaries"
	@echo "make controlplane-up    start a control plane in the background (.controlplane/kubeconfig)"
	@echo "make controlplane-down  stop it"
	@echo "make objectstore        build (or reuse) the cached S3 test server (SeaweedFS weed)"
	@echo "make node               build (or reuse) the cached kubelet/kube-proxy/containerd/runc/CNI binaries"
	@echo "make node-images        build (or reuse) the pause, base, runtime and operator images (OCI archives)"
	@echo "make test-realnode      the real-node tier alone: kubelet + containerd running the project's images (root)"
	@echo "make crds               regenerate crds/ from operator/mlkube/api"
	@echo "make manifests          regenerate manifests/ (CRD copy, Grafana JSON, argocd-cm patch)"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,s3,plot,bench]'
	@touch $(STAMP)

venv: $(STAMP)

controlplane:
	@bash tests/controlplane/build.sh

objectstore:
	@bash tests/objectstore/build.sh >/dev/null

controlplane-up: venv controlplane
	$(BIN)/python -m harness.controlplane up --dir .controlplane

controlplane-down:
	@test -x $(BIN)/python && $(BIN)/python -m harness.controlplane down --dir .controlplane || true

demo: venv controlplane
	$(BIN)/python -m demo up

demo-down:
	@test -x $(BIN)/python && $(BIN)/python -m demo down || true

node:
	@bash tests/node/build.sh

node-images:
	@bash tests/node/images.sh

crds: venv
	$(BIN)/python -m mlkube.api.crds --write crds
	$(BIN)/python -m mlkube.api.crds --write manifests/crd

manifests: crds
	$(BIN)/python manifests/grafana/dashboard.py
	$(BIN)/python manifests/gitops/argocd/render_cm.py

lint: venv
	$(BIN)/ruff check operator tests benchmarks
	$(BIN)/ruff format --check operator tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m mlkube.api.crds --check crds
	$(BIN)/python -m mlkube.api.crds --check manifests/crd

unit: venv
	$(BIN)/pytest tests/unit -q

integration: venv controlplane objectstore
	$(BIN)/pytest tests/integration -q

# The real-node tier runs after the others when this machine can host a node (root on
# Linux); otherwise one line says why it was skipped. MLKUBE_REALNODE=0 leaves it out.
# tests/tiers.sh overlaps the one-time builds with lint and the tests (see its header).
# It does not build metrics-server (its first build is long; the HPA test then says it
# skipped); `make test-realnode` does.
test: venv
	@bash tests/tiers.sh

# Its own pytest session (issue 19), so its scheduler and node see only its pods.
REALNODE_TIER = $(BIN)/pytest tests/realnode -q --durations=15
test-realnode: venv controlplane objectstore node-images
	@MLKUBE_METRICS_SERVER=1 bash tests/node/build.sh >/dev/null
	$(REALNODE_TIER)

# Full reliability run (issue 9): corpus, load, soak, drift memory, then operator faults.
reliability: venv controlplane
	$(BIN)/python benchmarks/reliability/run.py --full
	MLKUBE_RELIABILITY_LIFECYCLES=50 $(BIN)/pytest tests/integration/test_reliability_faults.py \
		tests/integration/test_reliability_resources.py tests/integration/test_reliability_leader.py \
		tests/integration/test_reliability_conflicts.py -q -s

clean: controlplane-down
	rm -rf $(VENV) .controlplane
