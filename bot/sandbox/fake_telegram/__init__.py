"""A fake Telegram Bot API: one model, served over HTTP or plugged into aiogram as a session.

The model keeps Telegram's observable rules that bots trip over (offset confirmation, "message is
not modified", editing text drops the inline keyboard, HTML must parse, callback_data <= 64 bytes,
a callback query is answered once) so tests fail here instead of in production. Modules: `model`
(calls, messages, errors, chat JSON), `rules` (Telegram's limits and checks), `faults` (fail, hang,
storm, garble, hold, slow, block, send limits), `polling` (the updates queue), `webhook`
(setWebhook and delivery by POST, as Telegram does it), `fake` (FakeTelegram, the Bot API methods),
`transport` (`serve` over HTTP and `FakeSession` in-process), `updates` (incoming update builders).
"""

from bot.sandbox.fake_telegram.fake import FakeTelegram
from bot.sandbox.fake_telegram.faults import Hold
from bot.sandbox.fake_telegram.model import (
    GROUP_CHAT_ID,
    JSON,
    BotAPIError,
    Call,
    DroppedConnection,
    GarbledResponse,
    SentMessage,
    UploadedFile,
    chat_json,
)
from bot.sandbox.fake_telegram.rules import (
    MAX_CALLBACK_DATA_BYTES,
    MAX_CAPTION_LENGTH,
    MAX_TEXT_LENGTH,
    render_html,
)
from bot.sandbox.fake_telegram.transport import MAX_UPLOAD_BYTES, FakeSession, serve
from bot.sandbox.fake_telegram.updates import (
    callback_query_update,
    contact_update,
    document_update,
    location_update,
    message_update,
    my_chat_member_update,
    photo_update,
    sticker_update,
    text_update,
    user_json,
    voice_update,
)
from bot.sandbox.fake_telegram.webhook import SECRET_HEADER, Webhook, WebhookRequest

__all__ = [
    "GROUP_CHAT_ID",
    "JSON",
    "MAX_CALLBACK_DATA_BYTES",
    "MAX_CAPTION_LENGTH",
    "MAX_TEXT_LENGTH",
    "MAX_UPLOAD_BYTES",
    "SECRET_HEADER",
    "BotAPIError",
    "Call",
    "DroppedConnection",
    "FakeSession",
    "FakeTelegram",
    "GarbledResponse",
    "Hold",
    "SentMessage",
    "UploadedFile",
    "Webhook",
    "WebhookRequest",
    "callback_query_update",
    "chat_json",
    "contact_update",
    "document_update",
    "location_update",
    "message_update",
    "my_chat_member_update",
    "photo_update",
    "render_html",
    "serve",
    "sticker_update",
    "text_update",
    "user_json",
    "voice_update",
]
