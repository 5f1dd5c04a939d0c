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

demo: env data
	$(BIN)/kdpipe run

test: env data browser
	$(BIN)/ruff check src tests benchmarks components pipelines
	$(BIN)/python -m pytest -q

lint: env
	$(BIN)/ruff check src tests benchmarks components pipelines

# The container image of the Kubeflow components, tagged with the one reference the pipeline uses.
image: env
	docker build --build-arg IMAGE=$$($(BIN)/kdpipe pipeline image) -t $$($(BIN)/kdpipe pipeline image) .
