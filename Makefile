# Two commands do everything on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint docs data browser env image image-check

$(STAMP): requirements.lock pyproject.toml probe/pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=25"
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e ./probe -e .
	touch $(STAMP)

env: $(STAMP)

data:
	bash scripts/ensure-fashion-mnist.sh

browser:
	bash scripts/ensure-chromium.sh

# The example operational set (Fashion-MNIST test images re-photographed), measured by the demo's validate.
RESHOT := data/operational/fashion-reshot

$(RESHOT): scripts/operational_example.py | env data
	$(BIN)/python scripts/operational_example.py --out $(RESHOT)

demo: env data $(RESHOT)
	$(BIN)/kdpipe run -p "validate.operational=[{name: reshot, source: $(RESHOT)}]"

test: env data browser
	$(BIN)/ruff check src probe tests benchmarks components pipelines scripts docs/hooks
	$(BIN)/ruff format --check src probe tests benchmarks components pipelines scripts docs/hooks
	KDPIPE_TEST_THREADS=1 $(BIN)/python -m pytest -q -n 2 --dist worksteal --durations=30

lint: env
	$(BIN)/ruff check src probe tests benchmarks components pipelines scripts docs/hooks
	$(BIN)/ruff format --check src probe tests benchmarks components pipelines scripts docs/hooks

# The docs site (mkdocs, Material) into site/; `make docs SERVE=1` serves it on localhost:8000 instead.
docs: env
	$(if $(SERVE),$(BIN)/mkdocs serve,$(BIN)/mkdocs build --strict)

# The container image of the Kubeflow components, tagged with the one reference the pipeline uses:
# docker where a daemon answers, else podman from a local stand-in base (scripts/build-image.sh).
image: env
	bash scripts/ensure-podman.sh
	bash scripts/build-image.sh

# Every component run inside that image through kfp.local's DockerRunner, and the image's own checks
# (tests/image); not part of `make test`: a fresh machine has no cached layers to build from.
image-check: env data
	bash scripts/image-check.sh
