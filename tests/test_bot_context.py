"""aiogram's objects told their bot in one step (bot/bot_context.py) end exactly as pydantic's
chain of post-inits leaves them.

The comparison runs in a fresh interpreter: this one has long had `install` applied (every
`create_bot` applies it), and pydantic's chain can only be seen before it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from aiogram import Bot
from aiogram.types import TelegramObject, Update
from pydantic import PrivateAttr

from bot import bot_context

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "123456:" + "A" * 35

# A button press on a message with a keyboard of seven buttons (the summary's), a reply to
# another message, entities: most kinds of nested object an update brings.
PRESS = {
    "update_id": 7,
    "callback_query": {
        "id": "42",
        "from": {"id": 5, "is_bot": False, "first_name": "Иван", "language_code": "ru"},
        "chat_instance": "1",
        "data": "edit:name",
        "message": {
            "message_id": 9,
            "date": 1_700_000_000,
            "chat": {"id": 5, "type": "private", "first_name": "Иван"},
            "from": {"id": 1, "is_bot": True, "first_name": "Bot"},
            "text": "Проверьте: <b>Иван</b>",
            "entities": [{"type": "bold", "offset": 11, "length": 4}],
            "reply_to_message": {
                "message_id": 8,
                "date": 1_700_000_000,
                "chat": {"id": 5, "type": "private"},
                "text": "Иван Иванов",
            },
            "reply_markup": {
                "inline_keyboard": [
                    [{"text": f"Изменить {n}", "callback_data": f"edit:{n}"}] for n in range(7)
                ]
            },
        },
    },
}

# Prints, for every aiogram object in PRESS parsed with and without a bot, what a test can
# compare: its path, class, private state (the bot as "bot" or None), fields set and dump.
# Then the same after `install`, and what `install` returned each time.
_SCRIPT = """
import json, sys
from aiogram import Bot
from aiogram.types import TelegramObject, Update
from bot import bot_context

press, token = json.loads(sys.argv[1]), sys.argv[2]
bot = Bot(token)

def walk(obj, path, out):
    if isinstance(obj, TelegramObject):
        private = {k: ("bot" if v is bot else v) for k, v in obj.__pydantic_private__.items()}
        out.append([path, type(obj).__name__, private, sorted(obj.model_fields_set),
                    obj.model_dump(mode="json")])
        for name in type(obj).model_fields:
            walk(getattr(obj, name), f"{path}.{name}", out)
    elif isinstance(obj, list):
        for n, item in enumerate(obj):
            walk(item, f"{path}[{n}]", out)
    return out

def seen():
    with_bot = Update.model_validate(press, context={"bot": bot})
    copied = with_bot.callback_query.message.model_copy()
    return {
        "with_bot": walk(with_bot, "update", []),
        "without": walk(Update.model_validate(press), "update", []),
        "copy_knows_bot": copied.bot is bot,
        "as_": Update.model_validate(press).as_(bot).bot is bot,
    }

before = seen()
changed = bot_context.install()
after = seen()
print(json.dumps({"before": before, "after": after, "changed": changed,
                  "again": bot_context.install()}))
"""


def test_objects_end_as_pydantics_chain_leaves_them() -> None:
    completed = subprocess.run(
        [sys.executable, "-c", _SCRIPT, json.dumps(PRESS), TOKEN],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    seen = json.loads(completed.stdout)
    assert seen["changed"] > 100  # every aiogram type and method
    assert seen["again"] == 0
    assert seen["after"] == seen["before"]
    # The comparison saw the nested objects, each knowing the bot.
    with_bot = seen["after"]["with_bot"]
    classes = {kind for _, kind, _, _, _ in with_bot}
    assert {"Update", "CallbackQuery", "Message", "User", "Chat", "MessageEntity"} <= classes
    assert {"InlineKeyboardMarkup", "InlineKeyboardButton"} <= classes
    assert len(with_bot) == 17
    assert all(private == {"_bot": "bot"} for _, _, private, _, _ in with_bot)
    assert all(private == {"_bot": None} for _, _, private, _, _ in seen["after"]["without"])
    assert seen["after"]["copy_knows_bot"] and seen["after"]["as_"]


def test_a_class_with_private_state_of_its_own_keeps_it() -> None:
    class Tagged(TelegramObject):
        value: int
        _tag: str = PrivateAttr(default="kept")

    bot_context.install()
    assert Tagged.model_post_init is not bot_context._bind_bot

    class LaterTagged(TelegramObject):  # made with `install` applied to its bases
        value: int
        _tag: str = PrivateAttr(default="kept too")

    bot = Bot(TOKEN)
    tagged = Tagged.model_validate({"value": 1}, context={"bot": bot})
    assert tagged.__pydantic_private__ == {"_tag": "kept", "_bot": bot}
    later = LaterTagged.model_validate({"value": 1}, context={"bot": bot})
    assert later.__pydantic_private__ == {"_tag": "kept too", "_bot": bot}
    assert LaterTagged.model_validate({"value": 1}).__pydantic_private__ == {
        "_tag": "kept too",
        "_bot": None,
    }


def test_a_class_made_after_install_still_knows_its_bot() -> None:
    bot_context.install()

    class Later(TelegramObject):
        value: int

    bot = Bot(TOKEN)
    assert Later.model_validate({"value": 1}, context={"bot": bot}).bot is bot
    assert Later.model_validate({"value": 1}).bot is None
    assert Update.model_validate(PRESS, context={"bot": bot}).callback_query.bot is bot
