"""App tests share `model_server` and `trained_suite` from tests/conftest.py."""
