"""Crash test: SIGKILL the server mid-run; every accepted job still finishes exactly once."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

JOBS = 200
LATENCY_MS = 1000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``imagemill`` in a child process, on a data dir that outlives it."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "IMAGEMILL_DATA_DIR": str(self.data_dir),
            "IMAGEMILL_WORKER_CONCURRENCY": "16",
            "IMAGEMILL_LEASE_SECONDS": "2",
            "IMAGEMILL_SWEEP_INTERVAL_SECONDS": "0.5",
            # The webhook receivers of these tests listen on loopback.
            "IMAGEMILL_ALLOWED_PRIVATE_NETWORKS": "127.0.0.0/8",
        }
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "imagemill.api.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
        ]
        log = (self.data_dir / "server.log").open("ab")
        self.process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError(
            "the server did not become ready: " + (self.data_dir / "server.log").read_text()
        )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    tmp_path.mkdir(exist_ok=True)
    running = Server(tmp_path, _free_port())
    running.start()
    yield running
    running.stop()


def _counts(db_path: Path) -> Counter[str]:
    with sqlite3.connect(db_path) as db:
        return Counter(status for (status,) in db.execute("SELECT status FROM jobs"))


@pytest.mark.slow
def test_sigkill_mid_run_loses_and_duplicates_nothing(server: Server) -> None:
    requested: dict[str, int] = {}
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for i in range(JOBS):
            n = 1 + i % 3
            body = {
                "model": "placeholder",
                "prompt": f"crash test {i}",
                "n": n,
                "size": "64x64",
                "seed": i,
                "params": {"latency_ms": LATENCY_MS},
            }
            response = http.post("/v1/jobs", json=body)
            assert response.status_code == 202, response.text
            requested[response.json()["id"]] = n

    db_path = server.data_dir / "imagemill.db"
    deadline = time.monotonic() + 60
    while _counts(db_path)["succeeded"] < JOBS // 4:  # kill once a quarter is done
        assert time.monotonic() < deadline, "jobs are not progressing"
        time.sleep(0.05)
    server.kill()
    before = _counts(db_path)
    assert before["running"] > 0, f"the kill should catch jobs mid-run: {before}"

    server.start()
    deadline = time.monotonic() + 120
    while (counts := _counts(db_path))["succeeded"] + counts["failed"] < JOBS:
        assert time.monotonic() < deadline, f"jobs did not finish after the restart: {counts}"
        time.sleep(0.2)

    with sqlite3.connect(db_path) as db:
        statuses = dict(db.execute("SELECT id, status FROM jobs").fetchall())
        outputs = Counter(job_id for (job_id,) in db.execute("SELECT job_id FROM outputs"))
        completions = Counter(
            job_id
            for (job_id,) in db.execute(
                "SELECT job_id FROM events WHERE type = 'status'"
                " AND json_extract(data, '$.status') = 'succeeded'"
            )
        )
        asset_shas = [sha for (sha,) in db.execute("SELECT sha256 FROM assets")]
    assert set(statuses) == set(requested)
    assert set(statuses.values()) == {"succeeded"}, Counter(statuses.values())
    assert {job_id: outputs[job_id] for job_id in requested} == requested  # exactly n each
    assert set(completions.values()) == {1}, "a job completed more than once"
    blob_files = [p for p in (server.data_dir / "blobs" / "sha256").rglob("*") if p.is_file()]
    assert len(asset_shas) == len(set(asset_shas))
    assert sorted(p.name for p in blob_files) == sorted(asset_shas), (
        "a blob was stored twice or orphaned"
    )


@pytest.mark.slow
def test_a_batch_survives_a_sigkill_with_its_limit_and_progress(server: Server) -> None:
    """A 12-page story, 5 at a time, the server killed mid-run: after the restart the
    batch goes on, never more than 5 running, its progress never going back, to 12
    pages, each made once."""
    pages = [
        {
            "model": "placeholder",
            "prompt": f"page {i}",
            "size": "32x32",
            "seed": i,
            "params": {"latency_ms": 1500},
        }
        for i in range(12)
    ]
    seen: list[dict[str, Any]] = []

    def look(http: httpx.Client, batch_id: str) -> dict[str, Any]:
        batch: dict[str, Any] = http.get(f"/v1/batches/{batch_id}").json()
        seen.append(batch)
        return batch

    with httpx.Client(base_url=server.url, timeout=30) as http:
        created = http.post("/v1/batches", json={"requests": pages, "concurrency": 5})
        assert created.status_code == 202, created.text
        batch_id = created.json()["id"]
        deadline = time.monotonic() + 60
        while look(http, batch_id)["counts"]["succeeded"] < 3:
            assert time.monotonic() < deadline, "the batch is not progressing"
            time.sleep(0.05)
    server.kill()
    server.start()
    with httpx.Client(base_url=server.url, timeout=30) as http:
        deadline = time.monotonic() + 120
        while look(http, batch_id)["status"] not in ("succeeded", "failed", "canceled"):
            assert time.monotonic() < deadline, f"the batch did not finish: {seen[-1]}"
            time.sleep(0.05)

    assert seen[-1]["status"] == "succeeded" and seen[-1]["counts"]["succeeded"] == 12
    assert max(b["counts"]["running"] for b in seen) <= 5
    progress = [b["progress"] for b in seen]
    assert progress == sorted(progress) and progress[-1] == 1.0
    with sqlite3.connect(server.data_dir / "imagemill.db") as db:
        outputs = Counter(
            job_id
            for (job_id,) in db.execute(
                "SELECT job_id FROM outputs"
                " WHERE job_id IN (SELECT id FROM jobs WHERE batch_id = ?)",
                (batch_id,),
            )
        )
    assert sorted(outputs) == sorted(seen[-1]["job_ids"]) and set(outputs.values()) == {1}


class Hooks:
    """A webhook receiver on loopback, in a thread: every POST's headers and body."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []
        received = self.received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                received.append((dict(self.headers), json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


class BatchStream:
    """The batch's event stream, followed in a thread across server restarts (resumed
    from ``Last-Event-ID``): the most items ever running at once, by its tallies and by
    its items' own status events, and every tally's progress."""

    def __init__(self, url: str, batch_id: str) -> None:
        self.url = f"{url}/v1/batches/{batch_id}/events"
        self.most_running_tallied = 0
        self.most_running_seen = 0
        self.progress: list[float] = []
        self.dones = 0
        self.log: list[Any] = []
        self._status: dict[str, str] = {}
        self._last_id: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        while not self._stop.is_set():
            headers = {"Last-Event-ID": self._last_id} if self._last_id else {}
            try:
                with httpx.stream("GET", self.url, headers=headers, timeout=None) as response:
                    self._read(response.iter_lines())
            except httpx.HTTPError:
                pass  # the server is down (killed on purpose): follow it again
            self._stop.wait(0.1)

    def _read(self, lines: Iterator[str]) -> None:
        event, data = "", ""
        for line in lines:
            if line.startswith("id:"):
                self._last_id = line[3:].strip()
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data = line[5:].strip()
            elif not line and data:
                self._take(event, json.loads(data))
                event, data = "", ""

    def _take(self, event: str, data: dict[str, Any]) -> None:
        if event == "batch":
            self.most_running_tallied = max(self.most_running_tallied, data["counts"]["running"])
            self.progress.append(data["progress"])
        elif event == "status":
            self._status[data["job_id"]] = data["data"]["status"]
            running = sum(status == "running" for status in self._status.values())
            self.log.append((data["id"], data["job_id"][-4:], data["data"]["status"], running))
            self.most_running_seen = max(self.most_running_seen, running)
        elif event == "done":
            self.dones += 1

    def stop(self) -> None:
        self._stop.set()


@pytest.mark.slow
def test_a_story_batch_through_a_crash_an_outage_and_a_retry(server: Server) -> None:
    """Issue 12's batch, end to end: 12 pages, 5 at a time, 2 s each; the server killed
    mid-run; page 4 meets an outage and fails; once the outage is over the batch's retry
    makes it. Never more than 5 running (counted from the event stream), progress only
    rising, to 1; the batch's webhook arrives once for each of its two completions."""
    hooks = Hooks()
    outage_ends = time.time() + 12
    down = {"latency_ms": 2000, "fail": "permanent", "fail_until": outage_ends}
    pages = [
        {
            "model": "placeholder",
            "prompt": f"page {i}",
            "size": "32x32",
            "seed": i,
            "params": down if i == 4 else {"latency_ms": 2000},
        }
        for i in range(12)
    ]
    body = {"requests": pages, "concurrency": 5, "webhook_url": hooks.url}
    with httpx.Client(base_url=server.url, timeout=30) as http:
        created = http.post("/v1/batches", json=body)
        assert created.status_code == 202, created.text
        batch_id = created.json()["id"]
        stream = BatchStream(server.url, batch_id)
        deadline = time.monotonic() + 60
        while http.get(f"/v1/batches/{batch_id}").json()["counts"]["succeeded"] < 3:
            assert time.monotonic() < deadline, "the batch is not progressing"
            time.sleep(0.05)
    server.kill()
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            first = _until_ended(http, batch_id)
            assert (first["status"], first["counts"]["failed"]) == ("failed", 1), first
            time.sleep(max(0.0, outage_ends - time.time()))  # the outage is over, by the clock
            assert http.post(f"/v1/batches/{batch_id}/retry").status_code == 200
            again = _until_ended(http, batch_id)
            assert (again["status"], again["counts"]["succeeded"]) == ("succeeded", 12), again
            deadline = time.monotonic() + 30
            while len(hooks.received) < 2:
                assert time.monotonic() < deadline, f"webhooks: {hooks.received}"
                time.sleep(0.05)
            time.sleep(1.0)  # a duplicate, were one sent, would arrive by now
    finally:
        stream.stop()
        hooks.close()

    assert stream.most_running_tallied <= 5 and stream.most_running_seen <= 5, "\n".join(
        map(str, stream.log)
    )
    assert stream.most_running_seen == 5, "five at a time, not fewer"
    assert stream.progress == sorted(stream.progress) and stream.progress[-1] == 1.0
    rounds = [payload["data"]["round"] for _, payload in hooks.received]
    assert sorted(rounds) == [1, 2], hooks.received
    assert len({headers["webhook-id"] for headers, _ in hooks.received}) == 2
    done = {payload["data"]["round"]: payload["data"]["event"] for _, payload in hooks.received}
    assert done[1]["status"] == "failed" and done[2]["status"] == "succeeded"


def _until_ended(http: httpx.Client, batch_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        batch: dict[str, Any] = http.get(f"/v1/batches/{batch_id}").json()
        if batch["status"] in ("succeeded", "failed", "canceled"):
            return batch
        assert time.monotonic() < deadline, f"the batch did not end: {batch}"
        time.sleep(0.05)
