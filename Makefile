# The two commands of the README:
#   make run    the whole system (web, worker, beat) on embedded PostgreSQL and Redis
#   make test   lint, type-check and the whole test suite (twice: today, then with the clock moved)
# Both create .venv and install requirements.lock (every package pinned; the
# direct dependencies are declared in pyproject.toml) the first time, or when it changes.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
LOCALSTRIPE := .data/localstripe-venv
SCHEMATHESIS := .data/schemathesis-venv
BIN    := $(VENV)/bin
PORT   ?= 8000
# mypy's Django plugin imports the settings, which insist on these; it connects to nothing.
TYPECHECK_ENV := DATABASE_URL=postgresql://typecheck@localhost/none REDIS_URL=redis://localhost:1/0 SECRET_KEY=typecheck

.PHONY: run test lint typecheck alert-rules pytest pytest-shifted install clean-data stop-embedded

run: $(VENV)/.installed
	PORT=$(PORT) $(BIN)/python -m billing_project.devrun

test: $(VENV)/.installed lint typecheck alert-rules pytest pytest-shifted

# The alert rules (ops/prometheus) checked and unit-tested by promtool, from Debian's
# `prometheus` package. Without it they are skipped, loudly, unless REQUIRE_PROMTOOL=1
# (.ci/run installs it and sets that, so CI never skips them).
alert-rules:
	@command -v promtool >/dev/null || { \
	  echo "promtool missing (Debian: apt-get install prometheus): alert rules NOT checked"; \
	  test -z "$$REQUIRE_PROMTOOL"; exit $$?; }; \
	cd ops/prometheus && promtool check rules billing.rules.yml && promtool test rules billing.rules.test.yml

lint: $(VENV)/.installed
	$(BIN)/ruff check .

typecheck: $(VENV)/.installed
	$(TYPECHECK_ENV) $(BIN)/mypy .

# Two pytest-xdist workers (the machine's two cores: one mostly waits on PostgreSQL while the
# other runs), each with its own database and Redis keys (settings_test.py); by file, so a
# module's tests and fixtures stay together. PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 2
XDIST := $(if $(filter 0,$(PYTEST_WORKERS)),-p no:xdist,-n $(PYTEST_WORKERS) --dist loadfile)

# Uses DATABASE_URL / REDIS_URL when set, else the embedded engines under .data/.
# localstripe (GPL) runs as a separate process from its own venv, for the Stripe smoke test.
pytest: $(VENV)/.installed $(LOCALSTRIPE)/.installed $(SCHEMATHESIS)/.installed
	BILLING_TEST_CLOCK= LOCALSTRIPE_PYTHON=$(CURDIR)/$(LOCALSTRIPE)/bin/python SCHEMATHESIS_BIN=$(CURDIR)/$(SCHEMATHESIS)/bin/st \
	  BROWSER_ARTIFACTS=$(CURDIR)/.data/browser-artifacts \
	  $(BIN)/python -m billing_project.embedded exec -- $(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

# The same suite again with the test process's clock moved forward (time-machine, from
# tests/conftest.py): past a year boundary, onto a leap day. A test that leans on today's
# date fails here. PostgreSQL's and Redis's clocks stay real (see tests/clock.py).
TEST_CLOCK ?= 2028-02-29T09:30:00Z
# The tests marked slow (real servers, browsers, subprocesses) run once: their processes keep
# the real clock whatever the test process's says, so a second run would test nothing new.
pytest-shifted: $(VENV)/.installed $(LOCALSTRIPE)/.installed
	BILLING_TEST_CLOCK=$(TEST_CLOCK) LOCALSTRIPE_PYTHON=$(CURDIR)/$(LOCALSTRIPE)/bin/python \
	  $(BIN)/python -m billing_project.embedded exec -- $(BIN)/python -m pytest $(XDIST) -m "not slow" $(PYTEST_ARGS)

# schemathesis fuzzes the contract against a live server (tests/fuzz); its own venv keeps its
# dependencies apart from the service's.
$(SCHEMATHESIS)/.installed: tests/schemathesis.lock
	test -x $(SCHEMATHESIS)/bin/python || $(PYTHON) -m venv $(SCHEMATHESIS)
	$(SCHEMATHESIS)/bin/python -m pip install --quiet --disable-pip-version-check -r tests/schemathesis.lock
	touch $@

$(LOCALSTRIPE)/.installed: tests/localstripe.lock
	test -x $(LOCALSTRIPE)/bin/python || $(PYTHON) -m venv $(LOCALSTRIPE)
	$(LOCALSTRIPE)/bin/python -m pip install --quiet --disable-pip-version-check -r tests/localstripe.lock
	touch $@

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	touch $@

stop-embedded: $(VENV)/.installed
	$(BIN)/python -m billing_project.embedded stop

clean-data: stop-embedded
	rm -rf .data
