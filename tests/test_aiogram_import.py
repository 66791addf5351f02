"""aiogram imported with its types built on first use (bot/aiogram_import.py).

Each check runs in a fresh interpreter: in this one aiogram is already imported. What a deferred
build could get wrong shows as a type that cannot be built from the names it was left, or as
one that differs from aiogram's own import: its fields as pydantic resolved them (checked for
every aiogram type, not only those the tests' updates reach), and what sample updates, a
method, its answer and a subclass validate to.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Prints how many types the import left unbuilt; what a message update, a button's update, a
# method, its answer and a subclass of a method validate to; and, for every aiogram type,
# whether it builds and its fields as pydantic resolved them (type, default, alias, constraints).
_DESCRIBE = """
import json, re, sys
from bot.aiogram_import import aiogram_models, import_aiogram
if sys.argv[1] == "deferred":
    import_aiogram()
else:
    import aiogram, aiogram.methods, aiogram.types
models = sorted(aiogram_models(), key=lambda m: (m.__module__, m.__qualname__))
unbuilt = sum(not m.__pydantic_complete__ for m in models)
from aiogram.methods import SendMessage
from aiogram.types import Update
user = {"id": 5, "is_bot": False, "first_name": "Анна"}
chat = {"id": 5, "type": "private", "first_name": "Анна"}
message = {"message_id": 7, "date": 1765000000, "chat": chat, "from": user,
    "text": "<b>Иванова</b>"}
updates = [
    {"update_id": 1, "message": message},
    {"update_id": 2, "message": {**message, "contact": {"phone_number": "+79001234567",
        "first_name": "Анна", "user_id": 5}, "text": None}},
    {"update_id": 3, "callback_query": {"id": "q", "chat_instance": "c", "data": "confirm",
        "from": user, "message": message}},
]
validated = [Update.model_validate(u).model_dump_json(exclude_none=True) for u in updates]
from aiogram.methods.base import Response
from aiogram.types import Message
answered = Response[Message].model_validate({"ok": True, "result": message}).model_dump_json(
    exclude_none=True)
sent = repr(SendMessage(chat_id=5, text="x", reply_markup={"inline_keyboard": [[
    {"text": "Да", "callback_data": "yes"}]]}).model_dump(exclude_none=True))
class Mine(SendMessage):  # a subclass made after the import (as tests make them)
    __api_method__ = "sendMine"
mine = repr(Mine(chat_id=5, text="x", reply_parameters={"message_id": 7}).model_dump(
    exclude_none=True))
schemas = {}
for model in models:
    if model.__pydantic_generic_metadata__["parameters"]:
        continue  # a generic base: built only as Response[Message] and the like
    model.model_rebuild(_parent_namespace_depth=0)  # raises if a name cannot be resolved
    fields = {name: re.sub("0x[0-9a-f]+", "", repr(field))  # no addresses
        for name, field in model.model_fields.items()}
    schemas[f"{model.__module__}.{model.__qualname__}"] = [model.__pydantic_complete__, fields]
print(json.dumps({"unbuilt": unbuilt, "types": len(models), "validated": validated,
    "sent": sent, "answered": answered, "mine": mine, "schemas": schemas}, sort_keys=True))
"""


def describe(how: str) -> dict[str, object]:
    completed = subprocess.run(
        [sys.executable, "-c", _DESCRIBE, how],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    described: dict[str, object] = json.loads(completed.stdout)
    return described


@pytest.mark.slow
def test_every_type_is_built_on_first_use_as_aiogram_builds_it() -> None:
    deferred = describe("deferred")
    eager = describe("eager")

    # The saving is real: the import leaves aiogram's types to be built when used.
    types = deferred["types"]
    assert isinstance(types, int) and types > 400
    unbuilt = deferred["unbuilt"]
    assert isinstance(unbuilt, int) and unbuilt > 400
    assert isinstance(eager["unbuilt"], int) and eager["unbuilt"] < 5
    # And nothing differs: every type builds, with the same fields, and updates, a method, its
    # answer and a subclass validate to the same objects.
    assert deferred["schemas"] == eager["schemas"]
    assert deferred["validated"] == eager["validated"]
    assert deferred["sent"] == eager["sent"]
    assert deferred["answered"] == eager["answered"]
    assert deferred["mine"] == eager["mine"]


def test_the_tests_and_the_bot_import_aiogram_the_same_way() -> None:
    # tests/__init__.py imports aiogram through bot/aiogram_import.py, as `python -m bot` does,
    # so the in-process tests run the types the bot runs: a type used by no test is still
    # unbuilt here (deferred), and Update was built at the import, with Message.
    from aiogram.types import Update

    from bot.aiogram_import import aiogram_models, import_aiogram

    import_aiogram()  # a no-op: aiogram is imported
    Update.model_validate({"update_id": 1})
    assert Update.__pydantic_complete__
    assert any(not model.__pydantic_complete__ for model in aiogram_models())
