# The two commands that matter: `make run` and `make test`. Both install what they need first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DATA ?= dev-data
HTTP_PORT ?= 8080
OCPP_PORT ?= 19520

.PHONY: run test test-unit test-micropython test-system test-system-arm64 bench venv system-deps node-deps clean image

$(VENV)/.installed: requirements.txt requirements-dev.txt app/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e ./app
	touch $@

venv: $(VENV)/.installed

# Debian packages the tests need (socat, chromium, openssl, qemu, ...); installs only what is missing.
system-deps:
	bash tools/install-system-deps.sh

node_modules/.installed: package.json
	npm install --no-audit --no-fund --silent
	touch $@

node-deps: node_modules/.installed

run: venv
	$(PY) -m chargemanager run --data $(DATA) --http-port $(HTTP_PORT) --ocpp-port $(OCPP_PORT)

test: venv system-deps node-deps
	$(PY) -m pytest -m "not system" tests
	$(PY) tools/run_micropython_tests.py

# The appliance disk image (build/out/amd64/disk.img; root needed for mmdebstrap). docs/image.md says more.
image: venv system-deps
	bash build/build-image.sh

test-system: venv system-deps
	$(PY) -m pytest -m "system and not arm64" tests/system

# arm64 image in qemu-system-aarch64 (software emulation: slow; not part of test-system or CI)
test-system-arm64: venv system-deps
	bash tools/install-system-deps.sh tools/system-packages-arm64.txt
	$(PY) -m pytest -m arm64 tests/system

bench: venv
	for b in bench/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) node_modules build/out test-output
