# The two commands: `make run` (set up and run the service) and `make test` (set up and test).
# Both install what is missing and start PostgreSQL when it does not answer; `make run` also starts
# the project's RabbitMQ node (the providers' broker) unless CARMILEAGE_BROKER_URL names one.
.PHONY: run test setup setup-test lint typecheck pytest demo bench clean-var

VENV := .venv/bin

run: setup
	$(VENV)/carmileage serve

test: setup-test lint typecheck pytest

setup:
	scripts/setup.sh

setup-test:
	scripts/setup.sh --test

lint:
	$(VENV)/ruff check .

typecheck:
	$(VENV)/mypy

pytest:
	$(VENV)/pytest -q -p no:cacheprovider

demo:
	$(VENV)/python scripts/demo.py

bench:
	@for b in bench/*.py; do echo "== $$b"; $(VENV)/python $$b || exit 1; done
