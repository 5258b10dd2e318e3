# vrrpd - make targets. The two set-up commands of the README are `sudo make demo` and `sudo make test`.
PYTHON ?= python3
PYTEST ?= $(PYTHON) -m pytest
APT_PACKAGES = python3-pip keepalived ipvsadm iproute2 iputils-ping tcpdump nftables procps psmisc openssl \
               qemu-system-x86 busybox-static kmod xz-utils frr prometheus tshark
PIP_PACKAGES = pytest ruff vermin aiosmtpd

.PHONY: all test deps lint check demo bench fuzz soak compat install uninstall clean readme

all: check

# Install what the tests need (Debian/Ubuntu), then run every check and the whole suite.
test: deps lint
	$(PYTEST) -q -ra test_vrrpd.py

deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=""; for p in $(APT_PACKAGES); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	    export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && \
	    apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi; \
	else echo "not root or no apt-get: skipping system packages (root-only tests will skip)"; fi
	@$(PYTHON) -c "import pytest, aiosmtpd, ruff, vermin" 2>/dev/null || \
	  $(PYTHON) -m pip install -q $(PIP_PACKAGES) 2>/dev/null || \
	  $(PYTHON) -m pip install -q --break-system-packages $(PIP_PACKAGES)
	@if [ "$$(id -u)" = 0 ] && [ -x .ci/ipvs-vm.sh ]; then bash .ci/ipvs-vm.sh --setup; fi

# Lint, the standard-library-only rule, and the minimum Python version (3.9).
lint:
	$(PYTHON) -m ruff check --config .ci/ruff.toml vrrpd.py test_vrrpd.py
	$(PYTHON) .ci/stdlib_only.py vrrpd.py
	$(PYTHON) -c "import sys, vermin; sys.argv[0] = 'vermin'; sys.exit(vermin.main())" -q --no-tips --violations -t=3.9- vrrpd.py

check:
	$(PYTHON) vrrpd.py --check -f vrrpd.conf.example

demo:
	$(PYTHON) vrrpd.py --demo

bench:
	$(PYTHON) test_vrrpd.py bench

# Fuzzing: each fuzz test runs VRRPD_FUZZ_SECONDS (deterministic seeds).
VRRPD_FUZZ_SECONDS ?= 60
fuzz:
	VRRPD_FUZZ_SECONDS=$(VRRPD_FUZZ_SECONDS) $(PYTEST) -q -k fuzz test_vrrpd.py

# Fault soak: two vrrpd nodes and keepalived under random faults; prints the invariants' counts and keeps
# the daemons' logs and the report in VRRPD_SOAK_LOGS.
VRRPD_SOAK_SECONDS ?= 600
VRRPD_SOAK_SEED ?= 8
VRRPD_SOAK_LOGS ?= soak-logs
soak:
	VRRPD_SOAK_SECONDS=$(VRRPD_SOAK_SECONDS) VRRPD_SOAK_SEED=$(VRRPD_SOAK_SEED) VRRPD_SOAK_LOGS=$(VRRPD_SOAK_LOGS) \
	  $(PYTEST) -q -s -k soak test_vrrpd.py

# Differential test against keepalived 2.2.7 -t / -d (root: network namespaces): testdata/compat and
# VRRPD_COMPAT_GENERATED generated configurations; prints the agreement and the table of known differences.
VRRPD_COMPAT_GENERATED ?= 2000
compat:
	VRRPD_COMPAT_GENERATED=$(VRRPD_COMPAT_GENERATED) $(PYTEST) -q -s -k test_compat_differential test_vrrpd.py

PREFIX ?= /usr/local
install:
	install -D -m 0755 vrrpd.py $(DESTDIR)$(PREFIX)/sbin/vrrpd
	install -D -m 0644 vrrpd.service $(DESTDIR)/etc/systemd/system/vrrpd.service
	install -d -m 0755 $(DESTDIR)/etc/vrrpd
	[ -e $(DESTDIR)/etc/vrrpd/vrrpd.conf ] || install -m 0644 vrrpd.conf.example $(DESTDIR)/etc/vrrpd/vrrpd.conf
	install -D -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/vrrpd/README.md

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/sbin/vrrpd $(DESTDIR)/etc/systemd/system/vrrpd.service \
	      $(DESTDIR)$(PREFIX)/share/doc/vrrpd/README.md
	-rmdir $(DESTDIR)$(PREFIX)/share/doc/vrrpd 2>/dev/null

# Regenerate the README's keyword table from the parser's keyword registry (a test fails when it drifts).
readme:
	$(PYTHON) -c 'import vrrpd; t = open("README.md").read(); a, b = "<!-- keywords:begin -->\n", "<!-- keywords:end -->"; \
	  i, j = t.index(a) + len(a), t.index(b); open("README.md", "w").write(t[:i] + vrrpd.keyword_table_markdown() + t[j:])'

clean:
	rm -rf .pytest_cache __pycache__ .ruff_cache
