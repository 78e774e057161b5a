"""imagemill beside a plain gateway, in one run: ``POST /v1/images/generations`` straight
to a fake OpenAI, through LiteLLM's proxy, and through imagemill.

- **fake**: an OpenAI images endpoint in its own process (uvicorn, a bare ASGI app):
  every answer is a different valid 1024×1024 PNG, so no gateway can dedupe or cache it
  (a pool of distinct pictures, rotated, each with a unique counter chunk; the base64 is
  precomputed, so the fake costs little itself). ``--bodies 8kb 2mb``: the JSON size.
- **direct**: the client straight to the fake (the floor; its CPU is the fake's).
- **litellm**: LiteLLM's proxy (``litellm[proxy]==LITELLM_VERSION``, installed by this
  script into its own virtualenv under ``~/.cache/imagemill-bench`` on the first run),
  one worker, ``gpt-image-1`` routed to the fake. If it cannot be installed or started,
  the run says so and goes on without it.
- **sdk-relay**: the least an SDK-based gateway can do on imagemill's server stack: a
  bare ASGI app on uvicorn (no framework) whose one route sends the request on through
  the official ``openai`` SDK (``AsyncOpenAI``, ``with_raw_response``, as imagemill's
  adapter calls it) and answers the upstream's bytes as they came: no checks, no job, no
  storage. Its CPU per request is the floor of that stack; imagemill's above it is what
  imagemill itself costs.
- **imagemill**: ``imagemill serve`` on a fresh data dir, ``OPENAI_BASE_URL`` the fake,
  called on its OpenAI-compatible route with ``openai/gpt-image-1``, ``b64_json``.

Each cell (body × ``Accept-Encoding`` gzip / identity × concurrency) sends a fixed number
of requests; targets alternate order per round; medians of the rounds are reported.
Server CPU is utime+stime of the target's process tree (children included), from
``/proc``, so the client's own CPU is not counted; peak RSS is the tree's ``VmHWM``
summed over its processes, over the whole run. Every response must be 200 with a JSON
body; every ``--check-every``-th one is decoded down to its PNG.

    .venv/bin/python bench/gateway.py [--requests 64] [--rounds 2] [--concurrency 1 16 64]
    .venv/bin/python bench/gateway.py fake --port 8001 --body 2mb     # the fake alone
    .venv/bin/python bench/gateway.py relay --port 8002 --upstream http://127.0.0.1:8001
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gzip
import io
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from common import free_port, imagemill_server

LITELLM_VERSION = "1.106.2"  # the anchor (one worker)
CACHE = Path.home() / ".cache" / "imagemill-bench"
BODY_BYTES = {"8kb": 8 * 1024, "2mb": 2 * 1024 * 1024}
SIDE = 1024  # gpt-image-1's default size: imagemill neither resizes nor crops it
POOL = 8  # distinct pictures per body size
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
KEY = "sk-bench-" + "0123456789abcdef" * 2  # LiteLLM's master key; the others ignore it
TARGETS = ("direct", "sdk-relay", "litellm", "imagemill")
MODELS = dict.fromkeys(TARGETS, "gpt-image-1") | {"imagemill": "openai/gpt-image-1"}


# ---------------------------------------------------------------- the fake upstream


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data)
    return len(data).to_bytes(4, "big") + kind + data + crc.to_bytes(4, "big")


def _png_core(index: int, png_bytes: int) -> bytes:
    """A 1024×1024 PNG of about ``png_bytes`` without its IEND, its length a multiple of 3
    (so its base64 joins a per-answer tail's): noise on top (the size), a flat colour
    below (the index's own)."""
    from PIL import Image

    level = 9 if png_bytes < 100_000 else 1  # flat pictures shrink far at 9; noise won't

    def encode(noise: int) -> bytes:
        raw = bytearray(bytes((index * 37 % 256, index * 91 % 256, 128)) * (SIDE * SIDE))
        raw[:noise] = os.urandom(noise)
        buffer = io.BytesIO()
        Image.frombytes("RGB", (SIDE, SIDE), bytes(raw)).save(buffer, "PNG", compress_level=level)
        return buffer.getvalue()

    flat = len(encode(0))
    png = encode(max(0, png_bytes - flat))
    core = png[: -len(_chunk(b"IEND", b""))]
    pad = (-(len(core) + 12 + 4)) % 3  # a tEXt chunk of "pad\0" + pad bytes aligns it
    return core + _chunk(b"tEXt", b"pad\0" + b"x" * pad)


class FakeImages:
    """``POST /v1/images/generations`` answering a distinct PNG each time (bare ASGI)."""

    def __init__(self, body: str) -> None:
        png_bytes = BODY_BYTES[body] * 3 // 4 - 400  # base64 and the JSON around it
        self.cores = [base64.b64encode(_png_core(i, png_bytes)) for i in range(POOL)]
        self.count = itertools.count()

    def answer(self) -> bytes:
        n = next(self.count)
        tail = _chunk(b"tEXt", b"bench\0" + str(n).zfill(14).encode()) + _chunk(b"IEND", b"")
        usage = {
            "total_tokens": 4210,
            "input_tokens": 50,
            "output_tokens": 4160,
            "input_tokens_details": {"text_tokens": 50, "image_tokens": 0},
        }
        return b"".join(
            (
                b'{"created":%d,"data":[{"b64_json":"' % int(time.time()),
                self.cores[n % POOL],
                base64.b64encode(tail),
                b'"}],"usage":',
                json.dumps(usage).encode(),
                b"}",
            )
        )

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:  # read the request to its end
            message = await receive()
            more = message.get("more_body", False)
        ok = scope["method"] == "POST" and scope["path"] == "/v1/images/generations"
        body = self.answer() if ok else b'{"error":{"message":"not here"}}'
        headers = [(b"content-type", b"application/json")]
        headers.append((b"content-length", str(len(body)).encode()))
        await send(
            {"type": "http.response.start", "status": 200 if ok else 404, "headers": headers}
        )
        await send({"type": "http.response.body", "body": body})


def run_fake(port: int, body: str) -> None:
    import uvicorn

    uvicorn.run(
        FakeImages(body), host="127.0.0.1", port=port, log_level="warning", access_log=False
    )


class SdkRelay:
    """``POST /v1/images/generations`` sent on through the openai SDK, answered as the
    upstream's bytes (bare ASGI)."""

    def __init__(self, upstream: str) -> None:
        from openai import AsyncOpenAI

        self.client = AsyncOpenAI(api_key="sk-bench", base_url=f"{upstream}/v1", max_retries=0)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        status, body = 404, b'{"error":{"message":"not here"}}'
        if scope["method"] == "POST" and scope["path"] == "/v1/images/generations":
            request = json.loads(b"".join(chunks))
            response = await self.client.images.with_raw_response.generate(
                model=request["model"], prompt=request["prompt"], size=request["size"]
            )
            status, body = 200, response.http_response.content
        headers = [(b"content-type", b"application/json")]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def run_relay(port: int, upstream: str) -> None:
    import uvicorn

    uvicorn.run(
        SdkRelay(upstream), host="127.0.0.1", port=port, log_level="warning", access_log=False
    )


# ---------------------------------------------------------------- processes and /proc


def _tree(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            with suppress(OSError):
                todo += [int(child) for child in task.read_text().split()]
    return found


def cpu_seconds(pid: int) -> float:
    """utime+stime of ``pid`` and its live descendants, plus its reaped children's."""
    total = 0
    for index, current in enumerate(_tree(pid)):
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
        if index == 0:
            total += int(fields[13]) + int(fields[14])  # cutime, cstime
    return total / CLK_TCK


def peak_rss_mib(pid: int) -> float:
    total = 0
    for current in _tree(pid):
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1])
    return total / 1024


async def _until_answers(url: str, process: asyncio.subprocess.Process, within: float) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise RuntimeError(f"exited with {process.returncode}")
            try:
                await http.get(url, timeout=2)
                return
            except httpx.TransportError:
                await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {within:.0f} s")


@asynccontextmanager
async def process(
    command: list[str], log: Path, ready: str, within: float = 60, env: dict[str, str] | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *command, stdout=out, stderr=out, env=env or dict(os.environ)
        )
    try:
        await _until_answers(ready, proc, within)
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout=30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def litellm_venv(version: str) -> Path:
    """LiteLLM's proxy in a virtualenv of its own, installed on the first run."""
    venv = CACHE / f"litellm-{version}"
    if not (venv / ".installed").exists():
        print(f"installing litellm[proxy]=={version} into {venv} (once) …", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, f"litellm[proxy]=={version}"], check=True)
        (venv / ".installed").write_text(version)
    return venv


@asynccontextmanager
async def litellm_proxy(version: str, fake: str, workdir: Path) -> AsyncIterator[tuple[str, int]]:
    venv = await asyncio.to_thread(litellm_venv, version)
    config = workdir / "litellm.yaml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "model_list": [
                    {
                        "model_name": "gpt-image-1",
                        "litellm_params": {
                            "model": "openai/gpt-image-1",
                            "api_base": f"{fake}/v1",
                            "api_key": "sk-bench",
                        },
                    }
                ],
                "general_settings": {"master_key": KEY},
            }
        )
    )
    port = free_port()
    # The machine may be offline: the bundled cost map, not a download at start-up.
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
    command = [str(venv / "bin" / "litellm"), "--config", str(config), "--host", "127.0.0.1"]
    command += ["--port", str(port), "--num_workers", "1"]
    url = f"http://127.0.0.1:{port}"
    ready = f"{url}/health/liveliness"
    async with process(command, workdir / "litellm.log", ready, within=180, env=env) as proc:
        yield url, proc.pid


# ---------------------------------------------------------------- the load


@dataclass
class Cell:
    rates: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    answered: set[str] = field(default_factory=set)  # the Content-Encodings that came back


def _check_image(raw: bytes, encoding: str, n: int) -> None:
    """The answer, decoded down to its pixels."""
    from PIL import Image

    body = gzip.decompress(raw) if encoding == "gzip" else raw
    data = json.loads(body)["data"]
    assert len(data) == 1, f"{len(data)} images"
    with Image.open(io.BytesIO(base64.b64decode(data[0]["b64_json"]))) as image:
        image.load()
        assert image.size == (SIDE, SIDE), image.size


async def load(
    url: str,
    target: str,
    requests: int,
    concurrency: int,
    accept: str,
    check_every: int,
    tag: str,
    answered: set[str] | None = None,
) -> float:
    """Seconds for ``requests`` calls, ``concurrency`` at a time; adds each answer's
    Content-Encoding to ``answered``."""
    answered = set() if answered is None else answered
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Accept-Encoding": accept, "Authorization": f"Bearer {KEY}"}
    pending = iter(range(requests))

    async def caller(http: httpx.AsyncClient) -> None:
        for i in pending:
            body = {
                "model": MODELS[target],
                "prompt": f"a lighthouse at dusk, {tag} {i}",  # never a cache hit
                "size": f"{SIDE}x{SIDE}",
            }
            if target == "imagemill":
                body["response_format"] = "b64_json"
            # The raw bytes: this client need not gunzip every answer to count it.
            async with http.stream("POST", "/v1/images/generations", json=body) as response:
                raw = b"".join([chunk async for chunk in response.aiter_raw()])
                if response.status_code != 200:
                    raise RuntimeError(f"{target}: {response.status_code} {raw[:300]!r}")
                encoding = response.headers.get("content-encoding", "identity")
            answered.add(encoding)
            if accept == "identity":
                assert encoding == "identity", f"{target} answered {encoding} to identity"
            if i % check_every == 0:
                _check_image(raw, encoding, i)

    async with httpx.AsyncClient(base_url=url, limits=limits, headers=headers, timeout=600) as http:
        started = time.perf_counter()
        await asyncio.gather(*(caller(http) for _ in range(concurrency)))
        return time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=64, help="per cell")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--bodies", nargs="+", choices=list(BODY_BYTES), default=list(BODY_BYTES))
    parser.add_argument("--encodings", nargs="+", default=["gzip", "identity"])
    parser.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    parser.add_argument("--litellm-version", default=LITELLM_VERSION)
    parser.add_argument("--check-every", type=int, default=8, help="decode every Nth image")
    args = parser.parse_args()

    cells: dict[tuple[str, str, int, str], Cell] = {}
    peaks: dict[tuple[str, str], float] = {}
    notes: list[str] = []
    for body in args.bodies:
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            fake_port = free_port()
            fake = f"http://127.0.0.1:{fake_port}"
            fake_command = [sys.executable, __file__, "fake", "--port", str(fake_port)]
            async with AsyncExitStack() as stack:
                fake_proc = await stack.enter_async_context(
                    process([*fake_command, "--body", body], workdir / "fake.log", fake)
                )
                targets = {"direct": (fake, fake_proc.pid)}
                if "sdk-relay" in args.targets:
                    port = free_port()
                    relay = f"http://127.0.0.1:{port}"
                    command = [sys.executable, __file__, "relay", "--port", str(port)]
                    relay_proc = await stack.enter_async_context(
                        process([*command, "--upstream", fake], workdir / "relay.log", relay)
                    )
                    targets["sdk-relay"] = (relay, relay_proc.pid)
                if "litellm" in args.targets:
                    try:
                        targets["litellm"] = await stack.enter_async_context(
                            litellm_proxy(args.litellm_version, fake, workdir)
                        )
                    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
                        log = workdir / "litellm.log"
                        tail = log.read_text()[-1500:] if log.exists() else ""
                        notes.append(f"litellm {args.litellm_version} left out: {exc}\n{tail}")
                        print(notes[-1], flush=True)
                if "imagemill" in args.targets:
                    os.environ.update(OPENAI_API_KEY="sk-bench", OPENAI_BASE_URL=f"{fake}/v1")
                    url, server = await stack.enter_async_context(
                        imagemill_server(workdir / "imagemill")
                    )
                    targets["imagemill"] = (url, server.pid)
                order = [t for t in args.targets if t in targets]
                for target in order:  # warm up: first requests build routes, clients
                    url, _ = targets[target]
                    await load(url, target, 8, 4, "gzip", 1, f"warm {body}")
                for round_ in range(args.rounds):
                    for accept, concurrency in itertools.product(args.encodings, args.concurrency):
                        line = f"{body} {accept} c={concurrency} round {round_ + 1}:"
                        for target in order if round_ % 2 == 0 else order[::-1]:
                            url, pid = targets[target]
                            tag = f"{body} {accept} {concurrency} {round_} {time.time_ns()}"
                            cpu_before = cpu_seconds(pid)
                            cell = cells.setdefault((body, accept, concurrency, target), Cell())
                            seconds = await load(
                                url, target, args.requests, concurrency, accept,
                                args.check_every, tag, cell.answered,
                            )  # fmt: skip
                            cell.rates.append(args.requests / seconds)
                            cell.cpu_ms.append(
                                (cpu_seconds(pid) - cpu_before) * 1e3 / args.requests
                            )
                            line += f" {target} {cell.rates[-1]:.1f}/s {cell.cpu_ms[-1]:.1f} ms"
                        print(line, flush=True)
                for target in order:
                    peaks[(body, target)] = peak_rss_mib(targets[target][1])
    report(args, cells, peaks, notes)


def report(
    args: argparse.Namespace,
    cells: dict[tuple[str, str, int, str], Cell],
    peaks: dict[tuple[str, str], float],
    notes: list[str],
) -> None:
    print(
        f"\n{args.requests} requests per cell, medians of {args.rounds} rounds; CPU: the "
        "target's process tree, ms per request; ratios: imagemill ÷ litellm, imagemill ÷ "
        "sdk-relay"
    )
    print(
        "\n| body | Accept-Encoding | c | direct | sdk-relay | litellm | imagemill "
        "| ÷ litellm (req/s, CPU) | ÷ sdk-relay (req/s, CPU) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    keys = sorted({key[:3] for key in cells}, key=lambda k: (k[0] != "8kb", k[1], k[2]))
    for body, accept, concurrency in keys:
        med: dict[str, tuple[float, float]] = {}
        for target in TARGETS:
            cell = cells.get((body, accept, concurrency, target))
            if cell:
                med[target] = (statistics.median(cell.rates), statistics.median(cell.cpu_ms))
        shown = []
        for target in TARGETS:
            cell = cells.get((body, accept, concurrency, target))
            if cell is None:
                shown.append("—")
                continue
            # An answer left uncompressed though gzip was accepted is marked so.
            plain = " (identity)" if accept == "gzip" and "gzip" not in cell.answered else ""
            shown.append(f"{med[target][0]:.1f}/s, {med[target][1]:.1f} ms{plain}")
        ratios = []
        for base in ("litellm", "sdk-relay"):
            if base in med and "imagemill" in med:
                rate = med["imagemill"][0] / med[base][0]
                cpu = med["imagemill"][1] / med[base][1] if med[base][1] else float("inf")
                ratios.append(f"{rate:.2f}×, {cpu:.2f}×")
            else:
                ratios.append("—")
        print(f"| {body} | {accept} | {concurrency} | " + " | ".join(shown + ratios) + " |")
    print(f"\n| body | peak RSS, MiB (whole run, up to c={max(args.concurrency)}) |")
    print("|---|---|")
    for body in args.bodies:
        row = ", ".join(f"{t} {mib:.0f}" for (b, t), mib in peaks.items() if b == body)
        print(f"| {body} | {row} |")
    for note in notes:
        print(f"\nNOTE: {note.splitlines()[0]}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["fake"]:
        fake_parser = argparse.ArgumentParser()
        fake_parser.add_argument("fake")
        fake_parser.add_argument("--port", type=int, required=True)
        fake_parser.add_argument("--body", choices=list(BODY_BYTES), default="8kb")
        fake_args = fake_parser.parse_args()
        run_fake(fake_args.port, fake_args.body)
    elif sys.argv[1:2] == ["relay"]:
        relay_parser = argparse.ArgumentParser()
        relay_parser.add_argument("relay")
        relay_parser.add_argument("--port", type=int, required=True)
        relay_parser.add_argument("--upstream", required=True)
        relay_args = relay_parser.parse_args()
        run_relay(relay_args.port, relay_args.upstream)
    else:
        asyncio.run(main())
