# siam_depth developer entry points. Everything runs from the repo's own venv (.venv).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
# torch first, pinned to the CPU build on local disk: an unpinned torch pulls a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0
EXTRAS ?= ros,onnx,openvino,train,dev

.PHONY: install test lint demo bench clean

install: $(STAMP)

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip wheel setuptools
	$(PIP) install -q $(TORCH_PIN)
	$(PIP) install -q -e ".[$(EXTRAS)]"
	touch $(STAMP)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: install lint
	$(VENV)/bin/python -m pytest -q test

demo: install
	$(PY) -m siam_depth_ros.demo

bench: install
	$(PY) -m benchmarks.run_all

clean:
	rm -rf $(VENV) build install log demo_out
