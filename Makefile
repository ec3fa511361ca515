# sekuire-opa: every target sets up what it needs.
PYTHON      ?= python3
VENV        := .venv
BIN         := $(VENV)/bin
TOOLS       := $(CURDIR)/.tools/bin
OPA_VERSION := v1.22.3
OPA         := $(TOOLS)/opa
CRANE       := $(TOOLS)/crane
export PATH := $(TOOLS):$(PATH)
export SEKUIRE_OPA := $(OPA)

.PHONY: setup opa crane test rego-test pytest demo bench lint typecheck properties-deep mutate fuzz clean

setup: $(VENV)/.installed

# pip builds the embedded engine (rust/, setuptools-rust runs cargo --locked) with the pinned build tools.
$(VENV)/.installed: pyproject.toml constraints.txt rust/Cargo.toml rust/Cargo.lock $(wildcard rust/src/*.rs)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt setuptools setuptools-rust wheel
	$(BIN)/pip install -q -c constraints.txt --no-build-isolation -e '.[test,all,lint]'
	touch $@

# The real OPA, pinned, in a git-ignored tool folder; a no-op when it is already there.
opa: $(OPA)

$(OPA):
	GOBIN=$(TOOLS) GOFLAGS=-mod=mod go install github.com/open-policy-agent/opa@$(OPA_VERSION)
	$(OPA) version | head -1

# go-containerregistry's crane: a real OCI registry on loopback for the OCI tests (crane registry serve).
crane: $(CRANE)

$(CRANE):
	GOBIN=$(TOOLS) GOFLAGS=-mod=mod go install github.com/google/go-containerregistry/cmd/crane@v0.22.1

test: setup opa crane rego-test pytest

# Render the Rego library for a test workspace and run its _test.rego files with the real OPA.
rego-test: setup opa
	rm -rf build/rego-test
	$(BIN)/sekuire policy rego --tests --extension policies/examples/extensions --out build/rego-test
	$(OPA) check --strict build/rego-test
	$(OPA) test --v0-compatible=false build/rego-test

pytest: setup opa crane
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: setup
	$(BIN)/python policies/examples/demo.py

bench: setup opa
	$(BIN)/python -m tests.bench $(BENCH_ARGS)

lint: setup opa typecheck
	rm -rf build/rego-lint
	$(BIN)/sekuire policy rego --tests --extension policies/examples/extensions --out build/rego-lint
	$(OPA) fmt --list --fail build/rego-lint
	$(OPA) check --strict build/rego-lint
	$(BIN)/ruff check --select F compiler runtime policies

# mypy --strict and pyright on the package as it installs (compiler/ as sekuire.compiler, ...): a hard-linked
# copy of the tree under build/typecheck/sekuire, since neither checker reads setuptools' package-dir mapping.
typecheck: setup
	rm -rf build/typecheck && mkdir -p build/typecheck/sekuire
	for d in compiler runtime policies; do cp -al $$d build/typecheck/sekuire/$$d; done
	find build/typecheck -name __pycache__ -prune -exec rm -rf {} +
	cd build/typecheck && ../../$(BIN)/mypy --config-file ../../pyproject.toml -p sekuire.compiler -p sekuire.runtime -p sekuire.policies
	printf '{"include": ["sekuire"], "pythonVersion": "3.11", "venvPath": "../..", "venv": "$(VENV)"}' > build/typecheck/pyrightconfig.json
	cd build/typecheck && ../../$(BIN)/pyright

# The property tests with thousands of examples each and a random seed, printed so a finding can be replayed
# (SEED=N make properties-deep). Not in CI, which keeps the fast derandomized profile; run before a release.
properties-deep: setup opa
	@seed=$${SEED:-$$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}; echo "properties-deep: --hypothesis-seed=$$seed"; \
	SEKUIRE_HYPOTHESIS_PROFILE=deep $(BIN)/python -m pytest -q -p no:cacheprovider --hypothesis-seed=$$seed \
		tests/test_properties.py tests/test_normalize_oracle.py

# Mutation testing (not in CI): Rego mutants of policies/rego (each against opa test, then the corpus, differential,
# batch and explanation tests) and Python mutants of the security core (mutmut 2.5, in place, restored from git);
# tables, survivors with their diff, JSON under build/mutate/. A full run takes hours on 2 cores:
# MUTATE_ARGS="--half rego --max 40 --seed 1" samples, "--only network" picks a template, "--half python --budget 600".
mutate: setup opa
	$(BIN)/python -m tests.mutate $(MUTATE_ARGS)

# Coverage-guided with atheris where it installs; otherwise tests.fuzz falls back to hypothesis.
fuzz: setup
	$(BIN)/pip install -q atheris==3.0.0 || echo "atheris is not installable here: fuzzing with hypothesis"
	$(BIN)/python -m tests.fuzz $(FUZZ_ARGS)

clean:
	rm -rf build .bench .pytest_cache .hypothesis
