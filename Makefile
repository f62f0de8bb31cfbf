# lamina: `make demo` and `make test` work on a fresh Debian 12 machine (run as root).
PYTHON ?= /usr/bin/python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := python3-venv python3-dev gcc libc6-dev busybox-static skopeo umoci runc crun docker-registry tar zstd tar-split apache2-utils openssl tini netavark aardvark-dns containernetworking-plugins iptables curl docker-compose uidmap fuse-overlayfs slirp4netns passt
DEMO_ROOT ?= /var/lib/lamina

.PHONY: deps venv demo test bench clean

# apt packages, installed only when one is missing
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing apt packages:$$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

$(BIN)/lamina: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]' --config-settings editable_mode=compat
	@touch $@

# bytecode compiled once: environments that set PYTHONDONTWRITEBYTECODE would otherwise
# compile every module on every `lamina` invocation (~0.2 s); then the compiled front
# (lamina/cli/front.c) over pip's entry script: a command for the engine cache's fork server
# is sent without an interpreter's start, anything else runs the Python front
venv: $(BIN)/lamina
	@$(BIN)/python -m compileall -q lamina >/dev/null
	@$(BIN)/python -m lamina.cli.frontbuild $(BIN)/lamina

demo: deps venv
	./scripts/demo.sh $(DEMO_ROOT)

test: deps venv
	$(BIN)/python -m pytest -q -ra

bench: deps venv
	$(BIN)/python bench/load_save.py

clean:
	rm -rf $(VENV) build *.egg-info
