# storemon -- everything a fresh clone needs is reachable from `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DATA_DIR    ?= data
DEMO_STORES ?= 2000
DEMO_DAYS   ?= 8

.PHONY: venv run serve test test-all ingest demo-data bench clean

# The venv is rebuilt whenever requirements.txt changes.
$(BIN)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

venv: $(BIN)/.installed

## demo-data: write demo CSVs into data/ (DEMO_STORES, DEMO_DAYS; 14000 x 8 is full scale)
demo-data: venv
	$(BIN)/flask --app storemon demo-data --out $(DATA_DIR) --stores $(DEMO_STORES) --days $(DEMO_DAYS)

## ingest: load data/ (generating demo data first when it holds no CSV)
ingest: venv
	@ls $(DATA_DIR)/*.csv >/dev/null 2>&1 || $(MAKE) --no-print-directory demo-data
	$(BIN)/flask --app storemon ingest $(DATA_DIR)

## run: install, load data/, serve on 127.0.0.1:8000
run: ingest serve

serve: venv
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

## test: install if needed, run the test suite
test: venv
	$(BIN)/python -m pytest

## test-all: the suite against SQLite and a throwaway PostgreSQL server, browser test included (what CI runs)
test-all: venv
	scripts/with-postgres.sh scripts/with-chromium.sh $(BIN)/python -m pytest

## bench: full-scale benchmark against the targets -> bench/RESULTS.md (BENCH_RUNS=3; data cached in bench/cache/)
bench: venv
	scripts/with-postgres.sh $(BIN)/python -m bench

clean:
	rm -rf $(VENV) instance .pytest_cache reports/*.csv bench/cache
