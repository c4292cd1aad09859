"""App tests share `model_server` and `trained_suite` from tests/conftest.py, and the
databases of tests/apps/postgres.py (`postgres_server`, `postgres_database`, `store_url`)."""

from tests.apps.postgres import postgres_database, postgres_server, store_url  # noqa: F401  (fixtures)
