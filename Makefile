# The two commands the README promises, each doing its own set-up on a fresh machine:
#   make run   - the main job end to end
#   make test  - the test suite (what .ci/run calls)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch comes first and pinned, by pip: the local CPU wheel, which uv does not look for. Everything else is
# installed by uv (10 s against pip's 86 s, docs/install.md), constrained to that torch, so no dependency can pull a
# multi-GB CUDA build.
PIP := $(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt
UV := $(BIN)/uv pip install --quiet --python $(BIN)/python -c constraints.txt

.PHONY: install profile run test benchmark clean services qe slurm

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt scripts/install-mattersim.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0 uv==0.13.9
	$(UV) -e '.[tests]'
	scripts/install-mattersim.sh $(BIN)/python
	touch $@

# An AiiDA profile only if there is none (verdi presto: SQLite, ZeroMQ broker when no RabbitMQ),
# then the localhost Computer and the wyckoffdiff Code (idempotent).
profile: install
	$(BIN)/verdi profile show >/dev/null 2>&1 || $(BIN)/verdi presto
	$(BIN)/wyckoffdiff setup

# RUN_ARGS go to the example: `make run RUN_ARGS='--summary docs/results/make_run.json'` records what the run
# made for the README (scripts/readme_figures.py).
run: profile
	$(BIN)/verdi run examples/phase_diagram_li_o.py $(RUN_ARGS)

# Quantum ESPRESSO (Debian pw.x and pseudopotentials) for the DFT follow-up tests: apt-get only when missing.
qe:
	scripts/install-qe.sh

test: install services qe slurm
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest

benchmark: install
	$(BIN)/python benchmarks/realize.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

# PostgreSQL and RabbitMQ for the production-profile tests and benchmarks/load.py: installed (apt)
# and started when missing, quick when already up. Needs root.

services:
	bash scripts/services.sh

# A one-node Slurm on this machine (slurm-wlm + munge from apt, installed only when missing) for
# tests/test_slurm.py; quick when it already runs. `scripts/slurm.sh stop` stops its daemons.
slurm:
	scripts/slurm.sh
