"""Compatibility only, no tests: tests/test_server.py and tests/test_playground.py still import
``BUNDLED`` and ``train_tiny`` from here. Delete this file once they take the ``bundled_checkpoint``
and ``train_tiny`` fixtures of tests/conftest.py instead. The generation tests are in
tests/inference/ and tests/cli/test_serve.py."""

from tests.conftest import BUNDLED
from tests.conftest import train_tiny_checkpoint as train_tiny

__all__ = ["BUNDLED", "train_tiny"]
