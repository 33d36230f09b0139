# Two entry points: `make run` (train the default experiment) and `make test`; `make grids`
# runs the InverseForm experiment grids (resumable; measured on 2-core CPUs: segmentation 39 min,
# depth 26 min, joint not re-timed, self-supervised about 2 h (float32); segmentation_3000 44 min,
# depth_3000 about 45 min, joint_3000 about 50 min, selfsup_800 1 h 55 min (bf16 on an AVX-512 BF16
# EPYC); README, "Experiments"). The superseded 1,500-step grids still run by name, e.g.
# `make grids GRIDS=joint_800`.
# All create or refresh the virtual environment in .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= experiments/synthetic_joint.toml
GRIDS ?= segmentation depth joint selfsup segmentation_3000 depth_3000 joint_3000 selfsup_800
MLP_NET := runs/inverseform/nyu_mlp4.pt

.PHONY: run test lint venv clean grids

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

venv: $(BIN)/.installed

run: venv
	$(BIN)/dense train $(CONFIG) --resume

# the segmentation grid's MLP arm needs the paper's inverse network (4 parameters, no
# distance head, no identical pairs, read as ‖θ̂‖), fitted on the NYU label maps in ../shared
$(MLP_NET): | venv
	$(BIN)/dense fit-inverseform source=../shared/nyuv2/labels13 ignore_index=0 steps=2000 \
		kind=mlp parameters=4 distance_head=false distance=euclidean identity=0 out=$@

grids: venv $(MLP_NET)
	for grid in $(GRIDS); do $(BIN)/dense experiment experiments/grids/$$grid.toml || exit 1; done

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
