"""The suite's network guard really fails a connection; the offline defaults are what they say."""

import os
import socket
import subprocess
import sys

import pytest


def test_guard_refuses_a_non_loopback_connection():
    with pytest.raises(AssertionError, match="network connection"):
        socket.create_connection(("203.0.113.1", 443), timeout=0.1)  # TEST-NET-3: never routed
    s = socket.socket()
    try:
        with pytest.raises(AssertionError, match="network connection"):
            s.connect(("203.0.113.1", 80))
    finally:
        s.close()


def test_cli_runs_with_offline_defaults(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("YOLO_OFFLINE", "YOLO_AUTOINSTALL", "HF_HUB_OFFLINE", "NO_ALBUMENTATIONS_UPDATE")}
    env["YOLO_CONFIG_DIR"] = str(tmp_path)
    code = ("import os; from smallbox.offline import apply_offline_defaults; apply_offline_defaults(); "
            "print(os.environ['YOLO_OFFLINE'], os.environ['YOLO_AUTOINSTALL'], os.environ['HF_HUB_OFFLINE'], os.environ['NO_ALBUMENTATIONS_UPDATE'])")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split()
    assert out == ["1", "false", "1", "1"]
    assert (tmp_path / "Ultralytics" / "Arial.ttf").is_file()  # no font download from plotting
