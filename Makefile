# One obvious entry point for each job. Every target runs from the repository root.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
MOLECULE := MOLECULE_GLOB='tests/molecule/*/molecule.yml' $(VENV)/bin/molecule test --all
PYTEST := $(PY) -m pytest -q
# pytest-xdist workers for `make test`/`integration`: tests of one module (or of modules that share libvirt objects,
# tests/conftest.py's SHARED_GROUPS) stay on one worker. 3 measured fastest on 2 cores (docs/BENCHMARKS.md).
TEST_WORKERS ?= 3
DURATIONS ?= 25
PARALLEL := -n $(TEST_WORKERS) --dist loadgroup --durations=$(DURATIONS)

.PHONY: setup test unit integration collection collection-test molecule lint demo guest xml protos protos-check bench clean

setup:                 ## Debian packages, .venv, running virtlogd + libvirtd (idempotent)
	@bash scripts/setup.sh

guest: setup           ## build the test guest ISO (cached by content hash)
	$(PY) -m guest.build

xml: setup             ## write xml/dom.xml from roles/alpine_vm and the library's builder (a unit test fails on drift)
	$(PY) scripts/gen_dom_xml.py

protos: setup          ## regenerate the gRPC stubs in cocos_pb/ from protos/
	bash scripts/gen_protos.sh

protos-check: setup    ## fail if the committed stubs differ from what protos/ generates
	bash scripts/gen_protos.sh --check

unit: setup
	$(PYTEST) $(PARALLEL) tests/unit

integration: setup guest
	$(PYTEST) $(PARALLEL) tests/integration

collection: setup      ## build/collection/cocos-libvirt-<version>.tar.gz, the Ansible collection cocos.libvirt
	$(PY) scripts/build_collection.py

# Builds and installs the collection in temporary directories, then ansible-test sanity and units, ansible-doc,
# and an FQCN-only converge on the real libvirtd. ansible_test_pip.py supplies ansible-test's pip bootstrap.
collection-test: setup
	$(PY) scripts/ansible_test_pip.py
	$(PYTEST) tests/collection

molecule: setup guest
	$(MOLECULE)

# Setup, then protos-check, lint and the guest build side by side (lint is CPU, the guest build mostly I/O; each
# one's output kept together). Molecule then runs beside pytest (its VMs and the suite's are separate libvirt
# objects), its output kept in build/molecule.log and shown only when it fails; pytest's summary closes the output.
# Fails if any of them fails.
test:                  ## everything CI runs
	@$(MAKE) --no-print-directory -j 3 --output-sync=target protos-check lint guest
	$(PY) scripts/ansible_test_pip.py
	@mkdir -p build; echo "molecule: running beside pytest, log in build/molecule.log"; \
	$(MOLECULE) > build/molecule.log 2>&1 & molecule=$$!; trap 'kill $$molecule 2>/dev/null' INT TERM; \
	$(PYTEST) $(PARALLEL) tests/unit tests/integration tests/collection; pytest_rc=$$?; \
	wait $$molecule; molecule_rc=$$?; \
	if [ $$molecule_rc -ne 0 ]; then cat build/molecule.log; echo "molecule FAILED (rc $$molecule_rc)"; \
	else echo "molecule passed (log: build/molecule.log)"; fi; \
	[ $$pytest_rc -eq 0 ] && [ $$molecule_rc -eq 0 ]

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy module_utils manager_api agent guest
	$(VENV)/bin/yamllint -s .
	$(VENV)/bin/ansible-lint --profile production

demo: setup guest      ## site.yml with the locally built guest, then a computation run
	bash scripts/demo.sh

bench: setup guest
	bash bench/run_all.sh

clean:
	rm -rf build .cache
