# Two commands set everything up on a fresh machine with Python 3.11:
#   make run    install, build the models if missing or stale, serve on 127.0.0.1:8000
#   make test   install, build the models if missing or stale, then ruff, mypy and pytest

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --quiet
INSTALLED := $(VENV)/.installed

.PHONY: install models run test lint bench deploy-check clean

# Re-install whenever the dependency list or this recipe changes.
$(INSTALLED): pyproject.toml Makefile
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "faceverify needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel
	# The CPU build of torch goes in first, so that nothing below pulls a CUDA build.
	$(PIP) install torch==2.13.0
	$(PIP) install -e '.[train,dev]'
	# facenet-pytorch pins an old torch; only its bundled MTCNN weight files are used.
	$(PIP) install --no-deps facenet-pytorch==2.6.0
	touch $@

install: $(INSTALLED)

models: $(INSTALLED)
	$(BIN)/faceverify models build

run: models
	$(BIN)/faceverify serve --host 127.0.0.1 --port 8000

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: models lint
	$(BIN)/pytest

# Dockerfile lint, compose validation, and the CPU image's steps replayed from a clean clone.
deploy-check:
	.ci/deploy-check

# Peers are installed only for the benchmarks (face_recognition wants an older setuptools).
bench: models
	$(PIP) install --no-deps -r benchmarks/requirements-peers.txt
	$(BIN)/python -m benchmarks.embedder
	$(BIN)/python -m benchmarks.pipeline
	$(BIN)/python -m benchmarks.lfw
	$(BIN)/python -m benchmarks.openset
	$(BIN)/python -m benchmarks.gallery
	$(BIN)/python -m benchmarks.uploads
	$(BIN)/python -m benchmarks.attacks
	$(BIN)/python -m benchmarks.load
	$(BIN)/python -m benchmarks.scale
	$(BIN)/python -m benchmarks.training

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache models/*.onnx models/manifest.json
