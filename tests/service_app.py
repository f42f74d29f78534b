"""The server app in this process (fastapi's TestClient) with the shipped model, shared by tests/test_service_*.py."""
from __future__ import annotations

import functools


@functools.lru_cache(maxsize=1)
def engine():
    from gfpose_core.engine import Engine
    return Engine.load(device="cpu")


def client(**kwargs):
    from fastapi.testclient import TestClient

    from gfpose_core.service.server import create_app
    # raise_server_exceptions=False: a bug must show as the 500 a real client would get, so the test sees it.
    return TestClient(create_app(engine(), **kwargs), raise_server_exceptions=False,
                      base_url="http://127.0.0.1:8765")
