# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv, install torch (CPU wheel unless you say otherwise) and the package.
PYTHON ?= python3
VENV ?= .venv
# The torch requirement installed first. The package itself asks only for torch>=2.4,
# so a torch you already have (CPU or CUDA) is kept. On a machine without a GPU and
# without a local wheel, add TORCH_INDEX=https://download.pytorch.org/whl/cpu to avoid
# PyPI's multi-GB CUDA build.
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
EXTRAS ?= onnxruntime,demo,test

comma := ,
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: demo test setup clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || \
	  $(BIN)/pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/fastdfkd demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) fastdfkd-demo
