# Two commands do everything on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint data browser env image

$(STAMP): requirements.lock pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=25"
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
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
	$(BIN)/ruff check src tests benchmarks components pipelines scripts
	$(BIN)/python -m pytest -q

lint: env
	$(BIN)/ruff check src tests benchmarks components pipelines scripts

# The container image of the Kubeflow components, tagged with the one reference the pipeline uses.
image: env
	docker build --build-arg IMAGE=$$($(BIN)/kdpipe pipeline image) -t $$($(BIN)/kdpipe pipeline image) .
