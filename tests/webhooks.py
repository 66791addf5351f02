"""The real `python -m bot` in webhook mode, for the tests that start it (one process or
replicas): its settings, a free port, and the process started once it listens."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from tests.fake_telegram import FakeTelegram
from tests.helpers import BotProcess, bot_env

URL = "https://bot.example.org/telegram/hook"
PATH = "/telegram/hook"
SECRET = "e2e-webhook-secret_" + "abcdefghij" * 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def webhook_env(port: int, secret: str = SECRET) -> dict[str, str]:
    return {
        "MODE": "webhook",
        "WEBHOOK_URL": URL,
        "WEBHOOK_SECRET": secret,
        "WEBHOOK_LISTEN": f"127.0.0.1:{port}",
    }


async def healthz(port: int) -> int | None:
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/healthz") as response,
        ):
            return response.status
    except aiohttp.ClientError:
        return None


@asynccontextmanager
async def webhook_bot(
    workdir: Path, fake: FakeTelegram, base_url: str, port: int, run: int = 0, **env: str
) -> AsyncIterator[BotProcess]:
    """`python -m bot` in webhook mode, yielded once it listens and the webhook is set."""
    log = workdir / f"bot-{run}.log"
    variables = bot_env(workdir, TELEGRAM_API_URL=base_url, **(webhook_env(port) | env))
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", cwd=workdir, env=variables, stdout=sink, stderr=sink
        )
    running = BotProcess(process, log)
    info_calls = len(fake.calls_of("getWebhookInfo"))
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 40
        while process.returncode is None and not (
            len(fake.calls_of("getWebhookInfo")) > info_calls
            and fake.webhook is not None
            and await healthz(port) == 200
        ):
            assert loop.time() < deadline, running.output
            await asyncio.sleep(0.05)
        assert process.returncode is None, running.output
        yield running
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
