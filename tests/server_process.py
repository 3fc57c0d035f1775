"""Server processes for the tests: a free port, start, wait for /health, stop."""

import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, command, env, log_path: Path, port: int):
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.process = subprocess.Popen(command, env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT)

    def wait(self, timeout=300):
        """Returns self once /health answers; fails the test with the log's tail otherwise."""
        deadline = time.time() + timeout
        while time.time() < deadline and self.process.poll() is None:
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(1)
        self.stop()
        pytest.fail(f"server did not start:\n{self.log_path.read_text()[-4000:]}")

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
