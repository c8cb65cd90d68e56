# storemon -- everything a fresh clone needs is reachable from `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
FLASK  := $(BIN)/flask --app storemon
DATA_DIR    ?= data
DEMO_DIR    ?= $(DATA_DIR)/demo
DEMO_STORES ?= 2000
DEMO_DAYS   ?= 8
# Non-empty when DEMO_STORES or DEMO_DAYS was given (command line or environment).
DEMO_GIVEN  := $(filter-out file,$(origin DEMO_STORES) $(origin DEMO_DAYS))

.PHONY: venv run serve test test-all lint ingest demo-data reset bench clean

# The venv is rebuilt whenever requirements.txt or pyproject.toml changes. The project itself is
# installed editable: the `storemon` command is then in .venv/bin.
$(BIN)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

venv: $(BIN)/.installed

## demo-data: demo CSVs in data/demo/ (DEMO_STORES x DEMO_DAYS; 14000 x 8 is full scale), regenerated
## when those change -- which also empties the database that held the previous demo
demo-data: venv
	$(FLASK) demo-data --out $(DEMO_DIR) --stores $(DEMO_STORES) --days $(DEMO_DAYS) --if-changed

## ingest: load the CSVs in data/; only when it holds none, the demo data in data/demo/ (marked
## data/demo/.loaded then: your feeds are not added on top of it until `make reset`)
ingest: venv
	@if ls $(DATA_DIR)/*.csv >/dev/null 2>&1; then \
	  if [ -f $(DEMO_DIR)/.loaded ]; then \
	    echo "$(DATA_DIR)/ holds your feeds now, but the database was loaded with the demo data in $(DEMO_DIR)/."; \
	    echo "Run 'make reset' first (it removes the database, the report CSVs and $(DEMO_DIR)/, never your"; \
	    echo "files in $(DATA_DIR)/), then 'make run' again."; \
	    exit 1; \
	  fi; \
	  if [ -n "$(DEMO_GIVEN)" ]; then \
	    echo "note: DEMO_STORES/DEMO_DAYS are not used: $(DATA_DIR)/ holds your own feeds"; \
	  fi; \
	  echo "ingest $(DATA_DIR)"; \
	  $(FLASK) ingest $(DATA_DIR); \
	else \
	  $(MAKE) --no-print-directory demo-data && echo "ingest $(DEMO_DIR)" && $(FLASK) ingest $(DEMO_DIR) && \
	    touch $(DEMO_DIR)/.loaded; \
	fi

## run: install, load data/ (or the demo), serve on 127.0.0.1:8000
run: ingest serve

## serve: serve the database as it is, without ingesting
serve: venv
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

## reset: start over -- remove the database, reports/report_*.csv and data/demo/ (never your CSVs in data/)
reset: venv
	$(FLASK) reset --yes --demo-dir $(DEMO_DIR)

## test: install if needed, run the test suite
test: venv
	$(BIN)/python -m pytest

## lint: ruff -- the lint rules and the format of pyproject.toml, checked (nothing is rewritten)
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## test-all: the suite against SQLite and a throwaway PostgreSQL server, browser, newman and LibreOffice tests included (what CI runs)
test-all: venv
	scripts/with-postgres.sh scripts/with-chromium.sh scripts/with-newman.sh scripts/with-libreoffice.sh $(BIN)/python -m pytest

## bench: full-scale benchmark against the targets -> bench/RESULTS.md (BENCH_RUNS=3; data cached in bench/cache/)
bench: venv
	scripts/with-postgres.sh $(BIN)/python -m bench

## clean: remove everything generated -- the venv, the default database (instance/), report CSVs,
## the demo data, the benchmark cache and newman (never your CSVs in data/)
clean:
	rm -rf $(VENV) instance .pytest_cache reports/report_* $(DEMO_DIR) bench/cache tests/postman/node_modules storemon.egg-info
