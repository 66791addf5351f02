"""FakeTelegram: the model of the Bot API that tests and benchmarks talk to."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeAlias

from bot.sandbox.fake_telegram.faults import Faults
from bot.sandbox.fake_telegram.model import (
    JSON,
    BotAPIError,
    Call,
    SentMessage,
    UploadedFile,
    bad_request,
    chat_id_of,
    chat_json,
    now,
    parse_params,
)
from bot.sandbox.fake_telegram.rules import (
    BOT_COMMAND,
    CHAT_ACTIONS,
    MAX_CAPTION_LENGTH,
    check_markup,
    not_modified,
    render,
    visible_text,
)
from bot.sandbox.fake_telegram.updates import INCOMING_FILE
from bot.sandbox.fake_telegram.webhook import WebhookDelivery

_Handler: TypeAlias = Callable[[JSON], Awaitable[Any]]


class FakeTelegram(Faults, WebhookDelivery):
    """The Bot API as bots see it: each call is recorded, may meet an injected fault, then is
    answered by Telegram's rules."""

    def __init__(
        self,
        *,
        bot_id: int = 7000000001,
        bot_username: str = "event_registration_test_bot",
        token: str = "7000000001:AAtest-token-for-tests-only-xxxxxxxxxx",
    ) -> None:
        self.bot_id = bot_id
        self.bot_username = bot_username
        self.token = token
        self.calls: list[Call] = []
        self.messages: list[SentMessage] = []
        # (scope as sorted JSON, language_code) -> commands, as set by setMyCommands.
        self.commands: dict[tuple[str, str], list[JSON]] = {}

        self._by_key: dict[tuple[int, int], SentMessage] = {}
        # Every send and every edit appends the message, so a client can ask "what changed".
        self._touched: list[SentMessage] = []
        # Telegram numbers messages per chat, the user's and the bot's alike.
        self._last_message_id: dict[int, int] = {}
        self._deleted_incoming: set[tuple[int, int]] = set()
        self._files: dict[str, UploadedFile] = {}

        self._last_query_id = 0
        self._open_queries: set[str] = set()
        self._answered_queries: set[str] = set()

        handlers: dict[str, _Handler] = {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "deleteWebhook": self._delete_webhook,
            "setWebhook": self._set_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "answerCallbackQuery": self._answer_callback_query,
            "setMyCommands": self._set_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "sendDocument": self._send_document,
            "sendPhoto": self._send_photo,
            "sendChatAction": self._send_chat_action,
        }
        # Bot API method names are case-insensitive.
        self._methods = {name.lower(): (name, handler) for name, handler in handlers.items()}
        Faults.__init__(self, handlers)
        WebhookDelivery.__init__(self)

    # --- the API --------------------------------------------------------------------------

    async def handle(self, method: str, params: Mapping[str, Any]) -> Any:
        name, handler = self._methods.get(method.lower(), (method, None))
        call = Call(method=name, params=parse_params(params), time=time.monotonic())
        self.calls.append(call)
        try:
            if handler is None:
                raise BotAPIError(404, "Not Found: method not found")
            limited = await self.before_call(call)
            result = await handler(call.params)
            self.after_call(limited)
            return result
        except BotAPIError as error:
            call.error_code = error.code
            raise

    # --- inspection -----------------------------------------------------------------------

    @property
    def bot_user(self) -> JSON:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "Event Registration",
            "username": self.bot_username,
        }

    def calls_of(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method.lower() == method.lower()]

    def messages_to(self, chat_id: int) -> list[SentMessage]:
        return [message for message in self.messages if message.chat_id == chat_id]

    def last_message(self, chat_id: int) -> SentMessage:
        for message in reversed(self.messages):
            if message.chat_id == chat_id and not message.deleted:
                return message
        msg = f"the bot has no visible message in chat {chat_id}"
        raise AssertionError(msg)

    def commands_for(self, scope: JSON | None = None, language_code: str = "") -> list[JSON]:
        return self.commands.get((self._scope_key(scope), language_code), [])

    def mark(self) -> int:
        return len(self._touched)

    def touched_since(self, mark: int, chat_id: int) -> list[SentMessage]:
        """Messages sent or edited in `chat_id` after `mark()`, each once, in first-touch order."""
        seen: dict[int, SentMessage] = {}
        for message in self._touched[mark:]:
            if message.chat_id == chat_id:
                seen.setdefault(id(message), message)
        return list(seen.values())

    def message_json(self, message: SentMessage) -> JSON:
        data: JSON = {
            "message_id": message.message_id,
            "from": self.bot_user,
            "chat": chat_json(message.chat_id),
            "date": message.date,
        }
        if message.edit_date is not None:
            data["edit_date"] = message.edit_date
        if message.text is not None:
            data["text"] = message.text
        if message.file_id is not None:
            data["document"] = {
                "file_id": message.file_id,
                "file_unique_id": f"unique-{message.file_id}",
                "file_name": message.filename,
                "file_size": len(message.document or b""),
            }
        if message.caption is not None:
            data["caption"] = message.caption
        # Telegram echoes only inline keyboards: Message.reply_markup is InlineKeyboardMarkup.
        if message.reply_markup is not None and "inline_keyboard" in message.reply_markup:
            data["reply_markup"] = message.reply_markup
        return data

    def next_message_id(self, chat_id: int) -> int:
        message_id = self._last_message_id.get(chat_id, 0) + 1
        self._last_message_id[chat_id] = message_id
        return message_id

    def new_callback_query_id(self) -> str:
        self._last_query_id += 1
        query_id = f"{self.bot_id}{self._last_query_id:08d}"
        self._open_queries.add(query_id)
        return query_id

    # --- methods --------------------------------------------------------------------------

    async def _get_me(self, params: JSON) -> JSON:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _send_message(self, params: JSON) -> JSON:
        chat_id = self._target_chat(params)
        source = params.get("text")
        parse_mode = params.get("parse_mode")
        text = visible_text(source, parse_mode)
        message = SentMessage(
            message_id=self.next_message_id(chat_id),
            chat_id=chat_id,
            text=text,
            parse_mode=parse_mode,
            reply_markup=check_markup(params.get("reply_markup")),
            source=source,
            date=now(),
        )
        self._store(message)
        return self.message_json(message)

    async def _edit_message_text(self, params: JSON) -> JSON:
        message = self._editable(params)
        if message.text is None:
            raise bad_request("there is no text in the message to edit")
        source = params.get("text")
        parse_mode = params.get("parse_mode")
        text = visible_text(source, parse_mode)
        markup = check_markup(params.get("reply_markup"))
        # Editing text without reply_markup removes the inline keyboard; a reply keyboard
        # lives on the client and is untouched.
        if markup is None and not message.inline_keyboard:
            markup = message.reply_markup
        if text == message.text and source == message.source and markup == message.reply_markup:
            raise not_modified()
        self._record_edit(message)
        message.text, message.source, message.parse_mode = text, source, parse_mode
        message.reply_markup = markup
        return self.message_json(message)

    async def _edit_message_reply_markup(self, params: JSON) -> JSON:
        message = self._editable(params)
        markup = check_markup(params.get("reply_markup"))
        if markup == message.reply_markup:
            raise not_modified()
        self._record_edit(message)
        message.reply_markup = markup
        return self.message_json(message)

    async def _delete_message(self, params: JSON) -> bool:
        chat_id = self._target_chat(params)
        message_id = params.get("message_id")
        key = (chat_id, message_id) if isinstance(message_id, int) else None
        message = self._by_key.get(key) if key else None
        if message is not None and not message.deleted:
            message.deleted = True
            return True
        # A message id we never saw sent by the bot but already allocated in this chat belongs
        # to the user; bots may delete those in private chats.
        if (
            key is not None
            and message is None
            and key[1] <= self._last_message_id.get(chat_id, 0)
            and key not in self._deleted_incoming
        ):
            self._deleted_incoming.add(key)
            return True
        raise bad_request("message to delete not found")

    async def _answer_callback_query(self, params: JSON) -> bool:
        query_id = params.get("callback_query_id")
        if not query_id:
            raise bad_request("query_id is empty")
        if query_id in self._answered_queries:
            raise bad_request(
                "query is too old and response timeout expired or query ID is invalid"
            )
        if query_id in self._open_queries:
            self._open_queries.remove(query_id)
            self._answered_queries.add(query_id)
        return True

    async def _set_my_commands(self, params: JSON) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise bad_request('field "commands" must be an Array')
        for command in commands:
            if not BOT_COMMAND.fullmatch(str(command.get("command", ""))):
                raise bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise bad_request("command description must be 1-256 characters")
        key = (self._scope_key(params.get("scope")), params.get("language_code", ""))
        self.commands[key] = commands
        return True

    async def _delete_my_commands(self, params: JSON) -> bool:
        key = (self._scope_key(params.get("scope")), params.get("language_code", ""))
        self.commands.pop(key, None)
        return True

    async def _send_document(self, params: JSON) -> JSON:
        chat_id = self._target_chat(params)
        upload = self._resolve_document(params)
        file_id = f"fake-document-{len(self._files) + 1}"
        self._files[file_id] = upload
        return self._send_media(
            chat_id, params, document=upload.content, filename=upload.filename, file_id=file_id
        )

    async def _send_photo(self, params: JSON) -> JSON:
        """A photo by the file id of one a user sent (uploads are not needed here)."""
        chat_id = self._target_chat(params)
        photo = params.get("photo")
        if not isinstance(photo, str) or not INCOMING_FILE.fullmatch(photo):
            raise bad_request("wrong file identifier/HTTP URL specified")
        return self._send_media(chat_id, params, photo=photo)

    def _send_media(self, chat_id: int, params: JSON, **media: Any) -> JSON:
        source = params.get("caption")
        parse_mode = params.get("parse_mode")
        caption = render(source, parse_mode) if source else None
        if caption is not None and len(caption) > MAX_CAPTION_LENGTH:
            raise bad_request("message caption is too long")
        message = SentMessage(
            message_id=self.next_message_id(chat_id),
            chat_id=chat_id,
            text=None,
            parse_mode=parse_mode,
            reply_markup=check_markup(params.get("reply_markup")),
            caption=caption,
            source=source,
            date=now(),
            **media,
        )
        self._store(message)
        return self.message_json(message)

    async def _send_chat_action(self, params: JSON) -> bool:
        self._target_chat(params)
        if params.get("action") not in CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        return True

    # --- helpers --------------------------------------------------------------------------

    @staticmethod
    def _scope_key(scope: Any) -> str:
        return json.dumps(scope or {"type": "default"}, sort_keys=True)

    def _target_chat(self, params: JSON) -> int:
        if "chat_id" not in params:
            raise bad_request("chat_id is empty")
        chat_id = chat_id_of(params)
        if chat_id is None:
            raise bad_request("chat not found")
        return chat_id

    def _editable(self, params: JSON) -> SentMessage:
        if "inline_message_id" in params:
            raise bad_request("inline messages are not modelled by the fake")
        chat_id = self._target_chat(params)
        message_id = params.get("message_id")
        if not isinstance(message_id, int):
            raise bad_request("message to edit not found")
        message = self._by_key.get((chat_id, message_id))
        if message is not None and not message.deleted:
            return message
        if (
            message is None
            and 0 < message_id <= self._last_message_id.get(chat_id, 0)
            and (chat_id, message_id) not in self._deleted_incoming
        ):
            raise bad_request("message can't be edited")
        raise bad_request("message to edit not found")

    def _resolve_document(self, params: JSON) -> UploadedFile:
        document = params.get("document")
        if isinstance(document, UploadedFile):
            upload = document
        elif isinstance(document, str) and document.startswith("attach://"):
            attached = params.get(document.removeprefix("attach://"))
            if not isinstance(attached, UploadedFile):
                raise bad_request("wrong file identifier/HTTP URL specified")
            upload = attached
        elif isinstance(document, str) and document in self._files:
            upload = self._files[document]
        elif isinstance(document, str) and INCOMING_FILE.fullmatch(document):
            upload = UploadedFile(filename="incoming", content=document.encode())
        elif document is None:
            raise bad_request("there is no document in the request")
        else:
            raise bad_request("wrong file identifier/HTTP URL specified")
        if not upload.content:
            raise bad_request("file must be non-empty")
        return upload

    def _store(self, message: SentMessage) -> None:
        self.messages.append(message)
        self._by_key[message.chat_id, message.message_id] = message
        self._touched.append(message)

    def _record_edit(self, message: SentMessage) -> None:
        message.edits.append(message.text if message.text is not None else message.caption)
        message.edit_date = now()
        self._touched.append(message)
