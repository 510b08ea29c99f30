"""Fixtures shared by the test modules here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_support import NatsServer, require_nats_server


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server of the test's own on loopback (a skip where none is installed)."""
    server = NatsServer(require_nats_server(), tmp_path)
    server.start()
    yield server
    server.stop()
