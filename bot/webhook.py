"""Webhook mode: Telegram posts each update to WEBHOOK_URL; the operator's TLS proxy passes it
to this process at WEBHOOK_LISTEN.

An update takes the same path as in polling mode (`Intake.accept`: flood control, the inbox,
its chat's worker), and is acknowledged (HTTP 200) only once it is in the inbox: a replica
killed mid-request loses nothing, since Telegram sends again whatever got no 2xx. aiogram's
`SimpleRequestHandler(handle_in_background=True)` answers before handling and drops the
work in flight at shutdown, and `feed_webhook_update` answers after 55 s while the handler
runs on: so `WebhookHandler` keeps only aiogram's request-handler frame (route, secret check)
and does its own answering.

Telegram sends one chat's next update only after the previous request ended, so accepting
in arrival order keeps each chat's order; other chats' requests run side by side (up to
MAX_CONNECTIONS).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import Sequence
from contextlib import suppress
from typing import Any
from urllib.parse import urlsplit

from aiogram import Bot, Dispatcher
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import Update
from aiogram.webhook.aiohttp_server import BaseRequestHandler
from aiohttp import web
from aiohttp.web_urldispatcher import _default_expect_handler
from pydantic import ValidationError

from bot.domain.config import Settings
from bot.updates import Intake
from storage.health import Health
from storage.webhook import WebhookRecord

logger = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# Telegram's updates are a few kilobytes; a megabyte is no update.
MAX_BODY = 1024 * 1024
# Simultaneous requests Telegram may make (1 to 100; its default is 40). Acknowledging costs
# an inbox write, shared by the requests that come while one is in flight (Intake.accept), so
# more at once lets a burst of chats in sooner.
MAX_CONNECTIONS = 100
# How long /healthz waits for the database.
HEALTH_TIMEOUT = 2.0
# How long a stop waits for requests in hand to finish (an inbox write: milliseconds).
SHUTDOWN_TIMEOUT = 5.0


class WebhookSetupError(Exception):
    """Start-up in webhook mode failed; the message is one line (no secret in it)."""


def fingerprint(url: str, secret: str, allowed_updates: Sequence[str], max_connections: int) -> str:
    """What setWebhook was given, as a digest: stored, it tells the next start whether
    Telegram must be told again (getWebhookInfo shows no secret to compare with)."""
    settings = {
        "url": url,
        "secret": secret,
        "allowed_updates": sorted(allowed_updates),
        "max_connections": max_connections,
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


class WebhookHandler(BaseRequestHandler):
    """POST on WEBHOOK_URL's path: 401 without the secret (before the body is read), 413
    over MAX_BODY, 400 when not an update, 500 when the inbox cannot take it, 503 once the
    process is stopping, else 200 once the update is in the inbox."""

    def __init__(self, dispatcher: Dispatcher, bot: Bot, intake: Intake, secret: str) -> None:
        super().__init__(dispatcher=dispatcher, handle_in_background=False)
        self.bot = bot
        self.intake = intake
        self._secret = secret.encode()
        self.stopping = False

    def register(self, app: web.Application, /, path: str, **kwargs: Any) -> None:
        # Not BaseRequestHandler.register: its shutdown hook closes the bot's session, which
        # the sender still uses while the intake finishes (bot.app.run closes it last).
        app.router.add_post(path, self.handle, expect_handler=self._expect, **kwargs)

    async def close(self) -> None:
        pass

    async def resolve_bot(self, request: web.Request) -> Bot:
        return self.bot

    def verify_secret(self, telegram_secret_token: str, bot: Bot) -> bool:
        # Compared in constant time; bytes, since a header may hold any character.
        given = telegram_secret_token.encode("utf-8", errors="replace")
        return hmac.compare_digest(given, self._secret)

    async def _expect(self, request: web.Request) -> web.StreamResponse | None:
        """`Expect: 100-continue`: refused before the client sends the body."""
        if not self.verify_secret(request.headers.get(SECRET_HEADER, ""), self.bot):
            return _unauthorized()
        if (request.content_length or 0) > MAX_BODY:
            return web.Response(status=413)
        await _default_expect_handler(request)
        return None

    async def handle(self, request: web.Request) -> web.Response:
        if not self.verify_secret(request.headers.get(SECRET_HEADER, ""), self.bot):
            return _unauthorized()
        if self.stopping:
            # Telegram sends it again (to another replica behind the proxy, or to this one
            # after its restart).
            return web.Response(status=503, text="stopping")
        if (request.content_length or 0) > MAX_BODY:
            return web.Response(status=413)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return web.Response(status=413)
        try:
            update = Update.model_validate_json(body, context={"bot": self.bot})
        except ValidationError as error:
            # Neither the body nor pydantic's message (it quotes the input): what a person
            # wrote stays out of the log.
            logger.warning(
                "Webhook request refused (400): not an update (%d bytes, %d errors)",
                len(body),
                error.error_count(),
            )
            return web.Response(status=400)
        try:
            await self.intake.accept([update], [body.decode()])
        except Exception as error:
            # Not acknowledged: Telegram sends it again.
            logger.error(
                "Update %d not written to the inbox (%s: %s): answered 500",
                update.update_id,
                type(error).__name__,
                error,
            )
            return web.Response(status=500)
        return web.Response(status=200)

    __call__ = handle


def _unauthorized() -> web.Response:
    return web.Response(status=401, text="Unauthorized")


class WebhookServer:
    """The HTTP side: the webhook path and GET /healthz on WEBHOOK_LISTEN."""

    def __init__(
        self,
        handler: WebhookHandler,
        health: Health,
        *,
        path: str,
        host: str,
        port: int,
        health_timeout: float = HEALTH_TIMEOUT,
    ) -> None:
        self.handler = handler
        self._health = health
        self._health_timeout = health_timeout
        self._probe: asyncio.Task[None] | None = None
        self._host, self._port = host, port
        app = web.Application(client_max_size=MAX_BODY)
        handler.register(app, path=path)
        app.router.add_get("/healthz", self._healthz)
        # No access log: a line per update is noise, and the path may be worth keeping quiet.
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT
        )

    @property
    def port(self) -> int:
        """The port listened on (the one given, or the one picked for port 0 in tests)."""
        return int(self._runner.addresses[0][1])

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        try:
            await site.start()
        except OSError as error:
            await self._runner.cleanup()
            raise WebhookSetupError(
                f"WEBHOOK_LISTEN: cannot listen on {self._host}:{self._port}: "
                f"{error.strerror or error}"
            ) from None

    def refuse(self) -> None:
        """From now on every request gets 503 (/healthz too, so a balancer stops sending)."""
        self.handler.stopping = True

    async def stop(self) -> None:
        """Stop listening and let the requests in hand finish (each is an inbox write)."""
        self.refuse()
        await self._runner.cleanup()
        if self._probe is not None:
            with suppress(Exception):
                await self._probe

    async def _healthz(self, request: web.Request) -> web.Response:
        if self.handler.stopping:
            return web.Response(status=503, text="stopping\n")
        # A probe is never cancelled (a statement cancelled on aiosqlite's thread could leave
        # its transaction open): one that outlasts the timeout runs on, and the next checks
        # wait for it rather than start another.
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._health.probe(), name="health-probe")
            # Its failure is reported by whichever check sees it; none is left unretrieved.
            self._probe.add_done_callback(lambda task: task.cancelled() or task.exception())
        try:
            await asyncio.wait_for(asyncio.shield(self._probe), self._health_timeout)
        except Exception as error:
            logger.warning("Health check: the database did not answer (%s)", type(error).__name__)
            return web.Response(status=503, text="database not answering\n")
        return web.Response(text="ok\n")


async def register_webhook(
    bot: Bot, record: WebhookRecord, settings: Settings, allowed_updates: Sequence[str]
) -> bool:
    """setWebhook when what it would say differs from what was said last (the stored
    fingerprint), or when Telegram shows another URL (set by hand, or by another
    deployment). Never drops pending updates. Returns whether it was called."""
    assert settings.webhook_url is not None and settings.webhook_secret is not None
    secret = settings.webhook_secret.get_secret_value()
    wanted = fingerprint(settings.webhook_url, secret, allowed_updates, MAX_CONNECTIONS)
    info = await bot.get_webhook_info()
    if info.url == settings.webhook_url and await record.fingerprint() == wanted:
        logger.info("Webhook already set to %s", _shown(settings.webhook_url))
        return False
    try:
        await bot.set_webhook(
            url=settings.webhook_url,
            secret_token=secret,
            allowed_updates=list(allowed_updates),
            max_connections=MAX_CONNECTIONS,
            drop_pending_updates=False,
        )
    except TelegramBadRequest as error:
        # Telegram's reason (it could not resolve or reach the host, a bad certificate...);
        # a network failure is not a refusal and is reported as one at start-up (bot.cli).
        raise WebhookSetupError(
            f"WEBHOOK_URL: Telegram refused the webhook: {error.message}"
        ) from None
    await record.remember(wanted)
    logger.info("Webhook set to %s", _shown(settings.webhook_url))
    return True


async def leave_webhook(bot: Bot, record: WebhookRecord) -> None:
    """Polling mode: a webhook left from webhook mode makes getUpdates answer 409. Removed
    without dropping the updates Telegram holds; the fingerprint is forgotten, so webhook
    mode sets it again."""
    info = await bot.get_webhook_info()
    if info.url:
        await bot.delete_webhook(drop_pending_updates=False)
        logger.warning(
            "Removed the webhook to %s (left from webhook mode): polling now", _shown(info.url)
        )
    await record.forget()


def _shown(url: str) -> str:
    """The URL without its path: a path may be made hard to guess, like a password."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/…"


async def serve_webhook(
    dispatcher: Dispatcher,
    bot: Bot,
    intake: Intake,
    *,
    settings: Settings,
    health: Health,
    record: WebhookRecord,
    stop: asyncio.Event,
) -> None:
    """Webhook mode from start to stop; the counterpart of bot.polling.poll."""
    assert settings.webhook_url is not None and settings.webhook_secret is not None
    allowed_updates = dispatcher.resolve_used_update_types()
    workflow_data = {"dispatcher": dispatcher, "bots": (bot,)}
    await dispatcher.emit_startup(bot=bot, **dispatcher.workflow_data, **workflow_data)
    try:
        # What a previous run left in the inbox is queued before any new update, so each
        # chat's order holds.
        await intake.start()
        host, port = settings.webhook_listen
        server = WebhookServer(
            WebhookHandler(dispatcher, bot, intake, settings.webhook_secret.get_secret_value()),
            health,
            path=urlsplit(settings.webhook_url).path,
            host=host,
            port=port,
        )
        await server.start()
        try:
            logger.info("Listening for webhook requests on %s:%d", host, port)
            # After listening: Telegram may post as soon as it is set.
            await register_webhook(bot, record, settings, allowed_updates)
            await stop.wait()
            logger.info("Stopping: new requests get 503, the ones in hand finish")
        finally:
            await server.stop()
    finally:
        await intake.close()
        await dispatcher.emit_shutdown(bot=bot, **dispatcher.workflow_data, **workflow_data)
