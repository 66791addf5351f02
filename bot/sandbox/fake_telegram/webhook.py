"""Webhooks as Telegram runs them: setWebhook, deleteWebhook, getWebhookInfo, and delivery.

While a webhook is set, getUpdates answers 409 and each queued update is POSTed as JSON to the
webhook's URL with the secret in X-Telegram-Bot-Api-Secret-Token. A chat's next update goes
only once the request for its previous one ended; an answer other than 2xx, a broken
connection or no answer within `webhook_timeout` makes it go again after a back-off (and
holds up that chat's later updates). Other chats' requests run side by side, up to
max_connections.

`route_webhook(bases)` plays the operator's TLS proxy and load balancer: requests go to these
plain-HTTP bases in turn (the webhook URL's path kept), so the bot can register an https URL.
Without a route nothing is delivered: the fake never reaches past what a test gave it.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from contextlib import suppress
from dataclasses import dataclass
from itertools import count
from urllib.parse import urlsplit

import aiohttp

from bot.sandbox.fake_telegram.model import JSON, BotAPIError, bad_request
from bot.sandbox.fake_telegram.polling import UpdateQueue

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
_PORTS = (443, 80, 88, 8443)
CONFLICT = (
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to "
    "delete the webhook first"
)


@dataclass(frozen=True)
class Webhook:
    url: str
    secret: str | None
    max_connections: int
    allowed_updates: list[str] | None


@dataclass(frozen=True)
class WebhookRequest:
    """One POST the fake made: `status` None when no answer came (`error` says why)."""

    update_id: int
    lane: int
    target: str
    status: int | None
    error: str | None
    # time.monotonic() when the request started and when it ended.
    started: float
    ended: float

    @property
    def acknowledged(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def lane_of_json(update: JSON) -> int:
    """The chat an update belongs to (else its sender): Telegram's unit of ordering."""
    for key, value in update.items():
        if key == "update_id" or not isinstance(value, dict):
            continue
        for holder in (value, value.get("message")):
            if isinstance(holder, dict) and isinstance(holder.get("chat"), dict):
                return int(holder["chat"]["id"])
        sender = value.get("from") or value.get("user")
        if isinstance(sender, dict) and "id" in sender:
            return int(sender["id"])
    return 0


class WebhookDelivery(UpdateQueue):
    def __init__(self) -> None:
        super().__init__()
        self.webhook: Webhook | None = None
        self.webhook_requests: list[WebhookRequest] = []
        # Telegram waits about a minute; tests make it short.
        self.webhook_timeout = 60.0
        # Back-off before sending again: base * 2 ** (failures - 1), at most the max.
        self.webhook_backoff = (0.1, 2.0)
        self._targets: list[str] = []
        self._turn = count()
        # update id -> (its lane, the request's task)
        self._in_flight: dict[int, tuple[int, asyncio.Task[None]]] = {}
        self._webhook_failures: dict[int, int] = {}
        self._retry_at: dict[int, float] = {}
        self._last_error: tuple[int, str] | None = None
        self._deliverer: asyncio.Task[None] | None = None

    # --- for tests ------------------------------------------------------------------------

    def route_webhook(self, *bases: str) -> None:
        """Deliver to these bases (e.g. "http://127.0.0.1:8081") in turn, keeping the webhook
        URL's path: the TLS proxy in front of one replica, or the balancer before several."""
        self._targets = [base.rstrip("/") for base in bases]
        self._pulse()

    def acknowledged_requests(self) -> list[WebhookRequest]:
        return [request for request in self.webhook_requests if request.acknowledged]

    async def close(self) -> None:
        """Stop delivering (requests in flight are abandoned, as when Telegram gives up)."""
        deliverer, self._deliverer = self._deliverer, None
        if deliverer is not None:
            deliverer.cancel()
            with suppress(asyncio.CancelledError):
                await deliverer

    # --- the methods ----------------------------------------------------------------------

    async def _set_webhook(self, params: JSON) -> bool:
        url = str(params.get("url") or "")
        if params.get("drop_pending_updates") is True:
            self._drop_pending()
        if not url:
            self.webhook = None  # an empty URL removes the webhook, as deleteWebhook does
            return True
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        if (parts.port or 443) not in _PORTS:
            raise bad_request(
                "bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443"
            )
        secret = params.get("secret_token")
        if secret is not None and not _SECRET.fullmatch(str(secret)):
            raise bad_request("secret token contains unallowed characters")
        max_connections = int(params.get("max_connections", 40))
        if not 1 <= max_connections <= 100:
            raise bad_request("bad webhook: max_connections must be between 1 and 100")
        allowed = params.get("allowed_updates")
        self.webhook = Webhook(
            url=url,
            secret=None if secret is None else str(secret),
            max_connections=max_connections,
            allowed_updates=list(allowed) if isinstance(allowed, list) else None,
        )
        self._last_error = None
        if self._deliverer is None or self._deliverer.done():
            self._deliverer = asyncio.create_task(self._deliver(), name="fake-webhook")
        self._pulse()
        return True

    async def _delete_webhook(self, params: JSON) -> bool:
        if params.get("drop_pending_updates") is True:
            self._drop_pending()
        self.webhook = None
        self._pulse()
        return True

    async def _get_webhook_info(self, params: JSON) -> JSON:
        # The secret is never shown: only a bot that kept what it set can tell it changed.
        info: JSON = {
            "url": "" if self.webhook is None else self.webhook.url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._queue),
        }
        if self.webhook is not None:
            info["max_connections"] = self.webhook.max_connections
            if self.webhook.allowed_updates is not None:
                info["allowed_updates"] = self.webhook.allowed_updates
            if self._last_error is not None:
                info["last_error_date"], info["last_error_message"] = self._last_error
        return info

    async def _get_updates(self, params: JSON) -> list[JSON]:
        if self.webhook is not None:
            raise BotAPIError(409, CONFLICT)
        return await super()._get_updates(params)

    # --- delivery -------------------------------------------------------------------------

    def _is_confirmed(self, update_id: int) -> bool:
        return super()._is_confirmed(update_id) or update_id in self._delivered

    def _drop_pending(self) -> None:
        self._dropped.update(update["update_id"] for update in self._queue)
        self._queue.clear()
        self._pulse()

    async def _deliver(self) -> None:
        loop = asyncio.get_running_loop()
        session = aiohttp.ClientSession()
        try:
            while True:
                wake = self._start_due(loop.time(), session)
                await self._wait_change(3600.0 if wake is None else max(0.001, wake - loop.time()))
        finally:
            tasks = [task for _, task in self._in_flight.values()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._in_flight.clear()
            await session.close()

    def _start_due(self, now: float, session: aiohttp.ClientSession) -> float | None:
        """Start a request for each update that may go now; returns when to look again."""
        webhook = self.webhook
        # No route, no delivery: the fake never reaches past 127.0.0.1 (the updates wait, as
        # Telegram's do while the host is unreachable).
        if webhook is None or not self._targets:
            return None
        held = {lane for lane, _ in self._in_flight.values()}
        wake: float | None = None
        for update in list(self._queue):
            update_id = update["update_id"]
            lane = lane_of_json(update)
            if lane in held:
                continue
            held.add(lane)  # later updates of this chat wait for this one
            due = self._retry_at.get(update_id, 0.0)
            if due > now:
                wake = due if wake is None else min(wake, due)
                continue
            if len(self._in_flight) >= webhook.max_connections:
                break
            task = asyncio.create_task(
                self._post(session, webhook, update, lane), name=f"fake-webhook-{update_id}"
            )
            self._in_flight[update_id] = (lane, task)
        return wake

    async def _post(
        self, session: aiohttp.ClientSession, webhook: Webhook, update: JSON, lane: int
    ) -> None:
        update_id = update["update_id"]
        parts = urlsplit(webhook.url)
        base = self._targets[next(self._turn) % len(self._targets)]
        target = base + (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {"Content-Type": "application/json"}
        if webhook.secret is not None:
            headers[SECRET_HEADER] = webhook.secret
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            async with session.post(
                target,
                data=json.dumps(update),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.webhook_timeout),
            ) as response:
                status = response.status
                await response.read()
        except TimeoutError:
            error = "Read timeout expired"
        except aiohttp.ClientError as failure:
            error = f"Connection failed: {type(failure).__name__}"
        finally:
            self._in_flight.pop(update_id, None)
        request = WebhookRequest(update_id, lane, target, status, error, started, time.monotonic())
        self.webhook_requests.append(request)
        if request.acknowledged:
            self._queue = [queued for queued in self._queue if queued["update_id"] != update_id]
            self._delivered.add(update_id)
            self._webhook_failures.pop(update_id, None)
            self._retry_at.pop(update_id, None)
        else:
            failures = self._webhook_failures.get(update_id, 0) + 1
            self._webhook_failures[update_id] = failures
            first, most = self.webhook_backoff
            loop = asyncio.get_running_loop()
            self._retry_at[update_id] = loop.time() + min(most, first * 2 ** (failures - 1))
            reason = error or f"Wrong response from the webhook: {status}"
            self._last_error = (int(time.time()), reason)
        self._pulse()
