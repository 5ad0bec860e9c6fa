# The two commands a fresh machine needs: `make demo` and `make test`.
PY := .venv/bin/python
ARGS ?=

.PHONY: demo test lint bench setup lock clean

demo:
	@scripts/setup.sh
	@.venv/bin/coalmine demo $(ARGS)

test:
	@scripts/setup.sh test
	@.venv/bin/ruff check src tests bench
	@.venv/bin/ruff format --check src tests bench
	@.venv/bin/mypy
	@$(PY) -m pytest $(ARGS)

lint:
	@.venv/bin/ruff check src tests bench && .venv/bin/ruff format --check src tests bench && .venv/bin/mypy

bench:
	@scripts/setup.sh bench
	@$(PY) -m bench.run $(ARGS)

lock:
	@python3 -m venv /tmp/coalmine-lock && /tmp/coalmine-lock/bin/pip install -q -e '.[dev]' \
	  && /tmp/coalmine-lock/bin/pip freeze --exclude-editable | grep -v '^-e' > constraints.txt

clean:
	rm -rf .venv .coalmine build *.egg-info
