"""The ``imagemill`` command line, in-process on a temporary data dir and against a server."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from alembic.script import ScriptDirectory
from PIL import Image
from typer.testing import CliRunner, Result

from fakes.server import wait_until_ready
from imagemill.auth import hash_key
from imagemill.cli import app
from imagemill.cli.running import running_server
from imagemill.config import Settings
from imagemill.db.migrate import alembic_config
from imagemill.domain import Submission
from imagemill.runtime import Runtime
from imagemill.spend.limits import KeyLimits

JOB_FILE = re.compile(r"(job_[0-9a-z]{26})-(\d+)\.png$")
ENVIRONMENT = ("URL", "API_KEY", "HOST", "REQUIRE_KEYS", "DATABASE_URL", "STORAGE_URL", "WORKERS")


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data dir in ``IMAGEMILL_DATA_DIR``, and nothing else from the caller's env."""
    for name in ENVIRONMENT:
        monkeypatch.delenv(f"IMAGEMILL_{name}", raising=False)
    path = tmp_path / "data"
    monkeypatch.setenv("IMAGEMILL_DATA_DIR", str(path))
    return path


def imagemill(*args: str | Path) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args])


def ok(*args: str | Path) -> Result:
    result = imagemill(*args)
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.output}"
    return result


def generated(result: Result) -> list[Path]:
    """The paths ``generate`` printed, one a line."""
    return [Path(line) for line in result.stdout.splitlines() if line.strip()]


def job_of(path: Path) -> str:
    match = JOB_FILE.search(path.name)
    assert match, f"{path.name} is not named <job_id>-<index>.png"
    return match[1]


def test_help_lists_every_command() -> None:
    listing = ok("--help").stdout
    for command in ("serve", "generate", "batch", "jobs", "models", "keys", "db"):
        assert command in listing
    assert "ls" in ok("jobs", "--help").stdout and "cancel" in ok("jobs", "--help").stdout
    assert "--seed" in ok("generate", "--help").stdout
    assert ok("--version").stdout.startswith("imagemill ")


def test_python_dash_m_imagemill_is_the_same_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "imagemill", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "generate" in done.stdout and "serve" in done.stdout


def test_generate_writes_one_png_per_image(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = ok("generate", "a red fox", "-n", "2", "--size", "640x480", "--seed", "5", "-o", out)
    paths = generated(result)
    assert sorted(paths) == sorted(out.iterdir()) and len(paths) == 2
    job_id = job_of(paths[0])
    assert [path.name for path in paths] == [f"{job_id}-0.png", f"{job_id}-1.png"]
    for path in paths:
        with Image.open(path) as image:
            assert (image.format, image.size) == ("PNG", (640, 480))
    assert paths[0].read_bytes() != paths[1].read_bytes()  # seeds 5 and 6
    assert "succeeded" in result.stderr
    assert (data_dir / "imagemill.db").exists()


def test_generate_upscales_and_animates_an_input_file(data_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "still.png"
    Image.linear_gradient("L").resize((48, 32)).convert("RGB").save(source)
    out = tmp_path / "out"

    [upscaled] = generated(
        ok("generate", "--kind", "upscale", "-i", source, "-m", "local/realesrgan-x2", "-o", out)
    )
    with Image.open(upscaled) as image:
        assert image.size == (96, 64)
    [video] = generated(
        ok(
            "generate",
            *("--kind", "video", "-i", source, "-m", "local/motion", "--size", "64x64"),
            *("-p", "duration=1", "-p", "fps=8", "-o", out),
        )
    )
    assert video.suffix == ".mp4" and video.read_bytes()[4:12] == b"ftypisom"


def test_generate_prints_text_kinds_and_saves_no_files(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    tones = 'tones=["playful","elegant"]'
    result = ok(
        "generate", "--kind", "caption", "Linen dress", "-p", tones, "-p", "hashtags=3", "-o", out
    )
    captions = result.stdout.strip().split("\n\n#")
    assert result.stdout.count("[placeholder caption, playful] Linen dress") == 1
    assert result.stdout.count("[placeholder caption, elegant] Linen dress") == 1
    assert len(captions) == 3  # two captions, each followed by its hashtags
    assert "[1 · playful]" in result.stderr and "[2 · elegant]" in result.stderr
    assert not out.exists()


def test_generate_can_enhance_the_prompt_first(data_dir: Path, tmp_path: Path) -> None:
    result = ok(
        "generate", "a red fox", "--enhance", "placeholder", "--style", "watercolour",
        "--size", "32x32", "-o", tmp_path,
    )  # fmt: skip
    assert "enhanced prompt: [placeholder enhancement] a red fox, watercolour," in result.stderr
    assert len(generated(result)) == 1


def test_an_input_file_that_does_not_exist_is_refused(data_dir: Path, tmp_path: Path) -> None:
    result = imagemill("generate", "--kind", "upscale", "-i", tmp_path / "nope.png")
    assert result.exit_code == 2 and "nope.png" in result.output


def test_same_seed_gives_the_same_bytes(data_dir: Path, tmp_path: Path) -> None:
    def one(seed: str) -> Path:
        [path] = generated(
            ok(
                "generate",
                "a lighthouse",
                "--size",
                "64x64",
                "--seed",
                seed,
                "--cache",
                "bypass",
                "-o",
                tmp_path,
            )
        )
        return path

    first, second, other = one("42"), one("42"), one("43")
    assert first.name != second.name, "two jobs, not a cache hit"
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other.read_bytes()


def test_params_are_parsed_as_json(data_dir: Path, tmp_path: Path) -> None:
    result = ok("generate", "slowly", "--size", "32x32", "-p", "latency_ms=200", "-o", tmp_path)
    job_id = job_of(generated(result)[0])
    shown = json.loads(ok("jobs", "show", job_id, "--json").stdout)
    assert shown["request"]["params"] == {"latency_ms": 200}

    as_text = imagemill("generate", "slowly", "-p", 'latency_ms="200"', "-o", tmp_path)
    assert as_text.exit_code == 1 and "params" in as_text.stderr
    malformed = imagemill("generate", "x", "-p", "latency_ms", "-o", tmp_path)
    assert malformed.exit_code == 2 and "key=value" in malformed.output


def test_a_failing_job_exits_non_zero(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = imagemill("generate", "doomed", "-p", "fail=permanent", "-o", out)
    assert result.exit_code == 1
    assert "failed" in result.stderr and "simulated permanent failure" in result.stderr
    assert result.stdout == "" and not any(out.glob("*"))

    unknown = imagemill("generate", "x", "-m", "nobody/nothing", "-o", out)
    assert unknown.exit_code == 1 and "unknown model" in unknown.stderr


def test_jobs_ls_and_show(data_dir: Path, tmp_path: Path) -> None:
    [path] = generated(
        ok("generate", "a blue whale", "--size", "640x480", "--seed", "9", "-o", tmp_path)
    )
    good = job_of(path)
    assert imagemill("generate", "doomed", "-p", "fail=permanent", "-o", tmp_path).exit_code == 1

    listing = ok("jobs", "ls").stdout
    rows = [line.split() for line in listing.splitlines()[1:]]
    assert [row[:2] for row in rows][1] == [good, "succeeded"]
    failed_id, failed_state = rows[0][:2]
    assert failed_state == "failed"
    assert [
        line.split()[0] for line in ok("jobs", "ls", "--status", "failed").stdout.splitlines()[1:]
    ] == [failed_id]
    assert len(ok("jobs", "ls", "--limit", "1").stdout.splitlines()) == 2
    assert "no jobs" in ok("jobs", "ls", "--model", "other").stdout

    shown = ok("jobs", "show", good).stdout
    job = json.loads(ok("jobs", "show", good, "--json").stdout)
    assert job["outputs"][0]["asset_id"] in shown
    for text in ("succeeded", "a blue whale", "640x480", "seed", "9", "$0.0000", "image/png"):
        assert text in shown
    failure = ok("jobs", "show", failed_id).stdout
    assert "provider_error" in failure and "simulated permanent failure" in failure

    missing = imagemill("jobs", "show", "job_missing")
    assert missing.exit_code == 1 and "no job" in missing.stderr


def test_text_from_a_job_cannot_drive_the_terminal(data_dir: Path, tmp_path: Path) -> None:
    """A prompt with an escape sequence (here: clear the screen) was printed as sent by
    ``jobs ls`` and ``jobs show``; markup in it was read as Rich markup."""
    [path] = generated(ok("generate", "\x1b[2J[bold]loud[/bold] fox", "-o", tmp_path))
    assert "\x1b" not in ok("jobs", "ls").stdout
    shown = ok("jobs", "show", job_of(path)).stdout
    assert "\x1b" not in shown
    assert "\\u001b[2J[bold]loud[/bold] fox" in shown


def test_a_batch_from_a_jsonl_file(data_dir: Path, tmp_path: Path) -> None:
    lines = [
        json.dumps({"model": "placeholder", "prompt": f"page {i}", "size": "32x32", "seed": i})
        for i in range(3)
    ]
    story = tmp_path / "story.jsonl"
    story.write_text("# a three-page story\n" + "\n".join(lines) + "\n\n")

    result = ok("batch", story, "--concurrency", "2", "-o", tmp_path / "pages")

    saved = generated(result)
    assert len(saved) == 3 and all(path.exists() for path in saved)
    assert "succeeded" in result.stderr and "3 succeeded" in result.stderr
    failing = tmp_path / "failing.jsonl"
    bad = {"model": "placeholder", "prompt": "x", "size": "32x32", "params": {"fail": "permanent"}}
    failing.write_text(lines[0] + "\n" + json.dumps(bad) + "\n")
    ended = imagemill("batch", failing)
    assert ended.exit_code == 1 and "1 failed" in ended.stderr
    refused = imagemill("batch", story.with_name("nope.jsonl"))
    assert refused.exit_code == 2
    (tmp_path / "broken.jsonl").write_text("{not json\n")
    broken = imagemill("batch", tmp_path / "broken.jsonl")
    assert broken.exit_code == 2 and "line 1" in broken.output


def test_a_batch_with_a_webhook_url_and_a_deadline(data_dir: Path, tmp_path: Path) -> None:
    story = tmp_path / "story.jsonl"
    page = {"model": "placeholder", "prompt": "page", "size": "32x32"}
    story.write_text(json.dumps(page) + "\n" + json.dumps({**page, "deadline_seconds": 5}) + "\n")
    hooked = imagemill("batch", story, "--webhook-url", "http://127.0.0.1:9/hook")
    assert hooked.exit_code == 1 and "webhook_url" in hooked.output, hooked.output
    assert imagemill("batch", story, "--deadline", "0").exit_code == 2

    result = ok("batch", story, "--deadline", "90")

    assert "2 succeeded" in result.stderr

    async def deadlines() -> list[float | None]:
        async with Runtime(Settings(), run_workers=False, sweep=False) as runtime:
            owner = await runtime.local_owner()
            [batch] = await runtime.batches.list(owner.id, None, 10)
            return [batch.deadline_seconds] + [j.request.deadline_seconds for j in batch.jobs]

    assert asyncio.run(deadlines()) == [90, 90, 5]


def test_jobs_cancel(data_dir: Path) -> None:
    async def queue_one() -> str:
        # Submitted but never run: no workers in this runtime.
        async with Runtime(Settings(), run_workers=False, sweep=False) as runtime:
            owner = await runtime.local_owner()
            jobs = await runtime.service.submit(
                owner.id, Submission(model="placeholder", prompt="later")
            )
            return jobs[0].id

    job_id = asyncio.run(queue_one())
    assert "queued" in ok("jobs", "show", job_id).stdout
    assert f"job {job_id} canceled" in ok("jobs", "cancel", job_id).stdout
    assert json.loads(ok("jobs", "show", job_id, "--json").stdout)["status"] == "canceled"
    again = imagemill("jobs", "cancel", job_id)
    assert again.exit_code == 1 and "canceled" in again.stderr


def test_models(data_dir: Path) -> None:
    listing = ok("models").stdout
    [row] = [line.split() for line in listing.splitlines() if line.split()[:1] == ["placeholder"]]
    assert row[0] == "placeholder" and row[-2:] == ["free", "yes"]
    assert "image," in row  # and its text kinds, wrapped onto the lines below
    text = [line.split() for line in listing.splitlines() if "openai/gpt-4o-mini" in line]
    assert text[0][-2:] == ["Mtok", "no"] and "$0.15/0.6" in text[0]


def test_keys_create(data_dir: Path) -> None:
    result = ok("keys", "create", "laptop")
    key = result.stdout.strip()
    assert key.startswith("im_") and len(key) > 40
    assert "not shown again" in result.stderr and "'laptop'" in result.stderr
    team_key = ok("keys", "create", "ci", "--owner", "team").stdout.strip()

    async def owners() -> list[str | None]:
        async with Runtime(Settings(), run_workers=False, sweep=False) as runtime:
            found = [await runtime.accounts.owner_for_key(hash_key(k)) for k in (key, team_key)]
            return [owner.name if owner else None for owner in found]

    assert asyncio.run(owners()) == ["laptop", "team"]
    # A key is an identity in-process too: its owner sees only its own jobs.
    out = data_dir.parent / "out"
    [made] = generated(
        ok("generate", "the laptop's", "--size", "16x16", "--api-key", key, "-o", out)
    )
    assert job_of(made) in ok("jobs", "ls", "--api-key", key).stdout
    assert job_of(made) not in ok("jobs", "ls", "--api-key", team_key).stdout
    assert job_of(made) not in ok("jobs", "ls").stdout  # the keyless local owner


def test_keys_and_owners_get_budgets(data_dir: Path) -> None:
    created = ok("keys", "create", "shop", "--budget", "20/month")
    assert "budget $20/month" in created.stderr
    ok("keys", "create", "ci", "--owner", "team", "--admin")
    ok("budgets", "set", "--owner", "team", "$5.50/day")
    listing = ok("budgets", "ls").stdout
    assert "$20/month" in listing and "$5.5/day" in listing
    assert "$20.00" in listing and "$5.50" in listing  # nothing spent: all remaining
    ok("budgets", "rm", "--owner", "team")
    assert "$5.5/day" not in ok("budgets", "ls").stdout

    for args, problem in (
        (("keys", "create", "x", "--budget", "20/year"), "one of day, week, month, total"),
        (("keys", "create", "x", "--budget", "-5/day"), "AMOUNT/PERIOD"),
        (("budgets", "set", "5/day"), "give one of --key or --owner"),
        (("budgets", "set", "--owner", "nobody", "5/day"), "no owner 'nobody'"),
        (("budgets", "set", "--key", "im_nothing", "5/day"), "no key 'im_nothing'"),
    ):
        result = imagemill(*args)
        assert result.exit_code != 0, args
        said = " ".join(re.sub("[│╭╮╰╯─]", " ", result.stderr).split())  # out of rich's box
        assert problem in said, (args, result.stderr)


def test_keys_get_rate_limits(data_dir: Path) -> None:
    key = ok("keys", "create", "ci", "--requests-per-minute", "60", "--concurrent-jobs", "4")
    plaintext = key.stdout.strip()

    async def limits() -> KeyLimits | None:
        async with Runtime(Settings(), run_workers=False, sweep=False) as runtime:
            owner = await runtime.accounts.owner_for_key(hash_key(plaintext))
            return owner.limits if owner else None

    assert asyncio.run(limits()) == KeyLimits(60, None, 4)
    listed = ok("keys", "ls").stdout
    assert f"{plaintext[:10]}… (ci): 60 requests a minute, 4 jobs in flight" in listed
    changed = ok("keys", "limits", plaintext[:10], "--images-per-minute", "100")
    assert "100 images a minute" in changed.stderr
    assert asyncio.run(limits()) == KeyLimits(None, 100, None)  # the others lifted
    assert "no rate limits" in ok("keys", "limits", plaintext[:10]).stderr
    assert imagemill("keys", "create", "x", "--concurrent-jobs", "0").exit_code == 2


def test_keys_are_listed_and_revoked(data_dir: Path) -> None:
    key = ok("keys", "create", "laptop", "--owner", "alice").stdout.strip()
    ok("keys", "create", "ci", "--owner", "team")

    listing = ok("keys", "ls").stdout
    assert "laptop" in listing and "alice" in listing and "ci" in listing and "team" in listing
    assert key[:10] in listing and key not in listing, "only the first characters are shown"

    revoked = ok("keys", "revoke", key[:10])
    assert "revoked key 'laptop'" in revoked.stderr
    [laptop] = [line for line in ok("keys", "ls").stdout.splitlines() if "laptop" in line]
    assert re.search(r"\d{4}-\d{2}-\d{2}\s+\d{4}-\d{2}-\d{2}", laptop), "created, then revoked"

    async def owner() -> str | None:
        async with Runtime(Settings(), run_workers=False, sweep=False) as runtime:
            found = await runtime.accounts.owner_for_key(hash_key(key))
            return found.name if found else None

    assert asyncio.run(owner()) is None
    ok("keys", "revoke", key[:10])  # again: nothing changes

    missing = imagemill("keys", "revoke", "im_nothing")
    assert missing.exit_code == 1
    assert "no key 'im_nothing'" in missing.stderr


def test_db_upgrade(data_dir: Path) -> None:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    result = ok("db", "upgrade")
    assert f"revision {head}" in result.stdout and str(data_dir / "imagemill.db") in result.stdout
    assert (data_dir / "imagemill.db").exists()
    assert f"revision {head}" in ok("db", "upgrade").stdout  # idempotent


def test_serve_refuses_a_public_address_without_keys(data_dir: Path) -> None:
    result = imagemill("serve", "--host", "0.0.0.0", "--port", "0")
    assert result.exit_code == 2
    assert "requires API keys" in result.stderr and "imagemill keys create NAME" in result.stderr


# -- against a real `imagemill serve` -----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def served(data_dir: Path, tmp_path: Path) -> Iterator[str]:
    """``imagemill serve`` in a child process on a free port; its URL."""
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    command = [
        sys.executable,
        "-m",
        "imagemill",
        "serve",
        "--port",
        str(port),
        "--data-dir",
        data_dir,
    ]
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, server, tmp_path / "serve.log")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()
    assert f"studio at {url}/" in (tmp_path / "serve.log").read_text()


def test_commands_talk_to_a_server(served: str, tmp_path: Path) -> None:
    result = ok("generate", "over http", "--size", "64x32", "--server", served, "-o", tmp_path)
    [path] = generated(result)
    assert Image.open(io.BytesIO(path.read_bytes())).size == (64, 32)
    job_id = job_of(path)
    assert job_id in ok("jobs", "ls", "--server", served).stdout
    assert json.loads(ok("jobs", "show", job_id, "--json", "--server", served).stdout)["outputs"]
    assert "placeholder" in ok("models", "--server", served).stdout


def test_commands_find_the_server_running_on_their_data_dir(
    served: str, data_dir: Path, tmp_path: Path
) -> None:
    """Without --server, a command talks to the server running on the data dir, so a
    job it runs is watched live, bar labelled by its prompt (not by a second process on
    the same database, which would not see it move)."""
    assert running_server(data_dir, with_key=False) == served
    body = {"model": "placeholder", "prompt": "a slow kite", "params": {"latency_ms": 1500}}
    job = httpx.post(f"{served}/v1/jobs", json=body).json()

    watched = ok("jobs", "watch", job["id"])

    assert "a slow kite" in watched.stdout and "succeeded" in watched.stdout
    stale = json.loads((data_dir / "server.json").read_text())
    (data_dir / "server.json").write_text(
        json.dumps({**stale, "url": f"http://127.0.0.1:{free_port()}"})
    )
    assert running_server(data_dir, with_key=False) is None  # one that answers nothing
    keyed = {**stale, "keys": True}
    (data_dir / "server.json").write_text(json.dumps(keyed))
    assert running_server(data_dir, with_key=False) is None  # no key to talk to it with


def test_an_unreachable_server_is_a_clear_error(data_dir: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = imagemill("models", "--server", url)
    assert result.exit_code == 1 and f"could not reach {url}" in result.stderr


def test_jobs_watch_replays_a_finished_job_and_its_outcome(data_dir: Path, tmp_path: Path) -> None:
    [made] = generated(ok("generate", "watched", "--size", "16x16", "-o", tmp_path / "out"))
    job_id = job_of(made)

    watched = ok("jobs", "watch", job_id)
    assert "succeeded" in watched.stdout

    failing = imagemill(
        "generate", "doomed", "--size", "16x16", "-p", "fail=permanent", "-o", tmp_path / "out"
    )
    assert failing.exit_code == 1
    failed_id = re.findall(r"job_[0-9a-z]{26}", failing.stderr)[0]
    again = imagemill("jobs", "watch", failed_id)
    assert again.exit_code == 1
    assert "provider_error" in again.stdout and "failed" in again.stdout


def test_generate_follows_the_job_live_from_its_events(data_dir: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    result = ok("generate", "slow", "--size", "16x16", "-p", "latency_ms=800", "-o", tmp_path)
    assert time.monotonic() - started >= 0.8
    assert len(generated(result)) == 1
