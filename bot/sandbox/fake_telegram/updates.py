"""Incoming updates as Telegram sends them (Bot API JSON): messages of every kind a person
sends, button presses, and the bot's own membership changes."""

from __future__ import annotations

import re
from typing import Any

from bot.sandbox.fake_telegram.model import JSON, chat_json, now


def user_json(
    user_id: int,
    *,
    first_name: str = "Иван",
    last_name: str | None = None,
    username: str | None = None,
    language_code: str = "ru",
) -> JSON:
    user: JSON = {"id": user_id, "is_bot": False, "first_name": first_name}
    if last_name is not None:
        user["last_name"] = last_name
    if username is not None:
        user["username"] = username
    user["language_code"] = language_code
    return user


def message_update(
    user: JSON, *, message_id: int, chat_id: int | None = None, **content: Any
) -> JSON:
    chat = chat_json(user["id"] if chat_id is None else chat_id, user=user)
    message: JSON = {
        "message_id": message_id,
        "from": user,
        "chat": chat,
        "date": now(),
        **content,
    }
    return {"message": message}


def text_update(user: JSON, text: str, *, message_id: int, chat_id: int | None = None) -> JSON:
    content: JSON = {"text": text}
    if text.startswith("/"):
        command = text.split(maxsplit=1)[0]
        # Entity offsets and lengths are counted in UTF-16 code units.
        length = len(command.encode("utf-16-le")) // 2
        content["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
    return message_update(user, message_id=message_id, chat_id=chat_id, **content)


def contact_update(
    user: JSON,
    phone_number: str,
    *,
    message_id: int,
    contact_user_id: int | None,
    first_name: str | None = None,
    last_name: str | None = None,
    chat_id: int | None = None,
) -> JSON:
    contact: JSON = {
        "phone_number": phone_number,
        "first_name": first_name if first_name is not None else user["first_name"],
    }
    if last_name is not None:
        contact["last_name"] = last_name
    if contact_user_id is not None:
        contact["user_id"] = contact_user_id
    return message_update(user, message_id=message_id, chat_id=chat_id, contact=contact)


# File ids of what users send in these updates: the bot may send them on.
INCOMING_FILE = re.compile(r"(?:photo-[sm]|document)-file-[0-9]+")


def _file(kind: str, message_id: int, **fields: Any) -> JSON:
    return {
        "file_id": f"{kind}-file-{message_id}",
        "file_unique_id": f"{kind}-unique-{message_id}",
        **fields,
    }


def sticker_update(user: JSON, *, message_id: int, chat_id: int | None = None) -> JSON:
    sticker = _file(
        "sticker",
        message_id,
        type="regular",
        width=512,
        height=512,
        is_animated=False,
        is_video=False,
        emoji="👍",
    )
    return message_update(user, message_id=message_id, chat_id=chat_id, sticker=sticker)


def photo_update(
    user: JSON,
    *,
    message_id: int,
    chat_id: int | None = None,
    caption: str | None = None,
    caption_entities: list[JSON] | None = None,
) -> JSON:
    photo = [
        _file("photo-s", message_id, width=90, height=90, file_size=1024),
        _file("photo-m", message_id, width=800, height=800, file_size=65536),
    ]
    return message_update(
        user,
        message_id=message_id,
        chat_id=chat_id,
        photo=photo,
        **_caption(caption, caption_entities),
    )


def _caption(caption: str | None, entities: list[JSON] | None) -> JSON:
    fields: JSON = {}
    if caption is not None:
        fields["caption"] = caption
    if entities:
        fields["caption_entities"] = entities
    return fields


def document_update(
    user: JSON,
    *,
    message_id: int,
    file_name: str = "resume.pdf",
    mime_type: str = "application/pdf",
    chat_id: int | None = None,
    caption: str | None = None,
    caption_entities: list[JSON] | None = None,
) -> JSON:
    document = _file(
        "document", message_id, file_name=file_name, mime_type=mime_type, file_size=2048
    )
    return message_update(
        user,
        message_id=message_id,
        chat_id=chat_id,
        document=document,
        **_caption(caption, caption_entities),
    )


def voice_update(user: JSON, *, message_id: int, chat_id: int | None = None) -> JSON:
    voice = _file("voice", message_id, duration=3, mime_type="audio/ogg", file_size=4096)
    return message_update(user, message_id=message_id, chat_id=chat_id, voice=voice)


def location_update(
    user: JSON,
    *,
    message_id: int,
    latitude: float = 55.7558,
    longitude: float = 37.6173,
    chat_id: int | None = None,
) -> JSON:
    location = {"latitude": latitude, "longitude": longitude}
    return message_update(user, message_id=message_id, chat_id=chat_id, location=location)


def callback_query_update(user: JSON, message: JSON, data: str, *, query_id: str) -> JSON:
    return {
        "callback_query": {
            "id": query_id,
            "from": user,
            "message": message,
            # Opaque and stable per chat in Telegram; any stable string will do.
            "chat_instance": str(abs(message["chat"]["id"]) * 7919),
            "data": data,
        }
    }


def _chat_member(status: str, user: JSON) -> JSON:
    member: JSON = {"status": status, "user": user}
    if status == "kicked":
        member["until_date"] = 0
    elif status == "administrator":
        member |= dict.fromkeys(
            (
                "can_be_edited",
                "is_anonymous",
                "can_manage_chat",
                "can_delete_messages",
                "can_manage_video_chats",
                "can_restrict_members",
                "can_promote_members",
                "can_change_info",
                "can_invite_users",
                "can_post_stories",
                "can_edit_stories",
                "can_delete_stories",
                "can_send_welcome_messages",
            ),
            False,
        )
    elif status not in {"member", "left"}:
        msg = f"chat member status {status!r} is not modelled"
        raise ValueError(msg)
    return member


def my_chat_member_update(
    user: JSON,
    bot_user: JSON,
    *,
    old_status: str,
    new_status: str,
    chat_id: int | None = None,
) -> JSON:
    """The bot's own membership changed: "kicked" in a private chat means the user blocked it."""
    return {
        "my_chat_member": {
            "chat": chat_json(user["id"] if chat_id is None else chat_id, user=user),
            "from": user,
            "date": now(),
            "old_chat_member": _chat_member(old_status, bot_user),
            "new_chat_member": _chat_member(new_status, bot_user),
        }
    }
