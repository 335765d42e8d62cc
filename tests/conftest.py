"""Shared fixtures. Every test runs offline: any socket connection to a non-loopback address
fails the test, and Ultralytics is told not to download or install anything."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
DEEPPCB = DATA / "deeppcb"
BCCD = DATA / "bccd"

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "2")
# Ultralytics reads its settings folder at import time: point it somewhere writable and empty.
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="smallbox-yolo-config-"))


def _is_loopback(address) -> bool:
    if isinstance(address, tuple):
        host = str(address[0])
        return host in ("localhost", "::1") or host.startswith("127.")
    return True  # unix sockets


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Fail any attempt to reach the network."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        if not _is_loopback(address):
            raise AssertionError(f"test tried to open a network connection to {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded)
    monkeypatch.setattr(socket, "create_connection", lambda address, *a, **k: guarded(None, address))
    yield


@pytest.fixture(scope="session")
def deeppcb_val():
    return DEEPPCB / "annotations" / "val.json"


@pytest.fixture(scope="session")
def deeppcb_train():
    return DEEPPCB / "annotations" / "train.json"


@pytest.fixture(scope="session")
def deeppcb_images():
    return DEEPPCB / "images"


@pytest.fixture(scope="session")
def deeppcb_predictions():
    return sorted((DEEPPCB / "predictions").glob("*.json.gz"))
