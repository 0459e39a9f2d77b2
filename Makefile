# The two commands of the README. Both work on a fresh machine (Python 3.11, no Docker).
.PHONY: setup demo test lint bench

setup:
	./scripts/setup.sh

# (a) the main job end to end on the embedded stack and the bundled sample
demo: setup
	.venv/bin/framestream run

# (b) the test suite (unit + integration against real Apache Kafka, or Tansu without Java; tritonserver; chDB)
test: setup
	.venv/bin/python -m pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: failing" >&2; fi; exit $$status

# formatter and linter (settings in pyproject.toml); CI runs it before the tests
lint: setup
	.venv/bin/ruff format --check .
	.venv/bin/ruff check .

bench: setup
	.venv/bin/framestream bench detector
	.venv/bin/framestream bench pipeline
	.venv/bin/framestream bench passthrough
	.venv/bin/framestream bench sink
