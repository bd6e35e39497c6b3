# latentlab: `make figures` (every notebook at the default profile, in place) and `make test`.
# Everything runs inside .venv, which `make env` builds from the lock (again only when pyproject.toml or
# requirements-lock.txt changes).

PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PROFILE ?= default
NB      ?= *
STAMP   := $(VENV)/.installed-stamp

# Batch runs print no progress bars (they would bloat the notebooks' stored outputs).
export LATENTLAB_PROGRESS ?= 0
# WORKERS=N: worker processes for every notebook's seed grid (default: one per core; 1 = in-process).
ifneq ($(WORKERS),)
export LATENTLAB_WORKERS := $(WORKERS)
endif

.PHONY: help env test unit smoke smoke-reference validate run figures student pack book readme lab lint bench bench-train clean

help:
	@echo "make run NB='01*' PROFILE=smoke|classroom|default|paper  execute a copy into build/<profile>/ (tree untouched)"
	@echo "make figures [PROFILE=default|paper] [NB='01*'] [WORKERS=N]  run notebooks in place, write figures/"
	@echo "make test                                         unit tests + every notebook at smoke size (nbval, strict)"
	@echo "make smoke-reference [NB='01*']                   regenerate tests/reference/ (the smoke outputs make test expects)"
	@echo "make validate NB='04*' [PROFILE=default]          re-execute a committed notebook, compare every output (build/validate/)"
	@echo "make student                                      build/student/ (no solutions, no outputs), build/solutions/"
	@echo "make book                                         static site of the notebooks in build/book/html/ (offline)"
	@echo "make pack PROFILE=classroom                       that profile's trained models as build/packs/models-<profile>.tar"
	@echo "make lab [LAB_ARGS='--allow-root --no-browser --port 8888']  JupyterLab on notebooks/"
	@echo "make bench-train                                  training throughput, library vs plain loops (1 thread)"
	@echo "make readme                                       README's results section from figures/*/claims.csv"
	@echo "make choices                                     the validation sweeps the parameters were read off (configs/*.csv)"
	@echo "make env | smoke | lint | bench | clean"

env: $(STAMP)

# The locked versions of requirements-lock.txt (Linux; CPU torch from the PyTorch CPU index when it answers) as
# constraints on pyproject.toml's requirements: `python lib/latentlab/lock.py pip-args` says which pip arguments.
$(STAMP): pyproject.toml requirements-lock.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -m pip install --quiet $$($(BIN)/python lib/latentlab/lock.py pip-args) -e '.[dev,book]'
	touch $@

test: unit smoke

unit: env
	$(BIN)/python -m pytest -q tests

# papermill writes parameterised copies to build/smoke/ (figures in build/smoke/figures/), each gets the outputs of its
# reference tests/reference/<notebook>.ipynb, and nbval executes them in strict mode: every cell's outputs must equal
# the reference's after the sanitizers of tests/sanitize.cfg (images are not compared). A notebook without a reference
# runs unchecked (the run says so); one whose code changed since its reference stops before anything runs.
smoke: env
	$(BIN)/python -m latentlab.validate smoke --nb '$(NB)'

# The smoke references from a fresh smoke run (sanitized, no images): review `git diff tests/reference/`, commit.
smoke-reference: env
	$(BIN)/python -m latentlab.validate reference --nb '$(NB)'

# A committed notebook (figures/<stem>/<PROFILE>/ for a profile other than default) re-executed into
# build/validate/<PROFILE>/ and compared output by output, with the smoke check's sanitizers; it names the cells that
# differ and the largest numeric difference. Warm models (`make pack`, LATENTLAB_MODELS_URL) make it minutes.
validate: env
	$(BIN)/python -m latentlab.validate validate --nb '$(NB)' --profile $(PROFILE)

# An executed copy at any profile in build/<profile>/: notebook, figures/<stem>/ (results, ledger, MANIFEST.json).
run: env
	$(BIN)/python -m latentlab.runner run --profile $(PROFILE) --nb '$(NB)'

figures: env
	$(BIN)/python -m latentlab.runner figures --profile $(PROFILE) --nb '$(NB)'
	$(BIN)/python -m latentlab.ledger readme

# A profile's model pack: its notebooks run (into build/<profile>/) on a model cache of their own,
# build/models/<profile>/ (warm after the first time), which becomes build/packs/models-<profile>.tar and its .md5.
# Students set LATENTLAB_MODELS_URL (and LATENTLAB_MODELS_BACKUP_URL) to where the two files are served.
pack: env
	LATENTLAB_CACHE=$(CURDIR)/build/models/$(PROFILE) $(BIN)/python -m latentlab.runner run --profile $(PROFILE) \
		--nb '$(NB)'
	$(BIN)/python -m latentlab.modelpack pack --profile $(PROFILE) --cache $(CURDIR)/build/models/$(PROFILE)

# The course book: Sphinx + myst-nb over the committed notebooks (never executed), local MathJax, no network.
book: env
	$(BIN)/python -m latentlab.book --out build/book

# Student edition (solution cells removed, outputs cleared) and solutions edition (solutions unfolded), no execution.
student: env
	$(BIN)/python -m latentlab.course editions --nb '$(NB)' --out build

# The README's results section, generated from the committed ledgers (tests/test_ledger.py checks it).
# The records the parameters cells' choices were read off (validation splits only; slow: about 20 CPU-minutes
# from a cold cache): configs/03_tsne_weight.csv (the t-SNE weight, 1x and 2x), configs/03_encoder_budget.csv and
# configs/05_instrument_budget.csv (05's latent space: grid, channels, updates; about 17 min on 2 cores, cold),
# configs/06_dataset_record.csv (06's datasets: every gate of one seed per candidate; about 6 min on 2 cores, cold).
choices: env
	$(BIN)/python -c "from latentlab.experiments import query_selection as qs; print('TSNE_WEIGHT', qs.write_tsne_record())"
	$(BIN)/python -c "from latentlab.experiments import query_selection as qs; print(qs.write_budget_sweep().to_string())"
	$(BIN)/python -c "from latentlab.experiments import cam_fusion as cf; print(cf.write_instrument_record().T.to_string())"
	$(BIN)/python -c "from latentlab.experiments import head_to_head as h; print(h.passing_datasets(h.write_dataset_record()))"

readme: env
	$(BIN)/python -m latentlab.ledger readme

# Options for JupyterLab, e.g. LAB_ARGS='--allow-root --no-browser --port 8888' (as root, in a container).
LAB_ARGS ?=
lab: env
	$(BIN)/jupyter lab notebooks $(LAB_ARGS)

lint: env
	$(BIN)/ruff check lib tests notebooks

bench: env
	$(BIN)/python -m latentlab.runner bench --nb '$(NB)'
	@if [ -f tests/bench_selector.py ]; then $(BIN)/python tests/bench_selector.py; fi

# Training throughput of the library's loops (channels-last) against plain contiguous loops, one thread;
# the last line is train_speedup=<ratio>.
bench-train: env
	$(BIN)/python tests/bench_train.py

clean:
	rm -rf build .pytest_cache .ruff_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
