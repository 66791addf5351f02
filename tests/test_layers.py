"""Imports run one way: wiring (bot/) → handlers/ → storage/ → domain (bot/domain/).

Read from the source (every import statement, those inside functions and TYPE_CHECKING blocks
too), so a violation fails `make lint` and CI before anything runs. ARCHITECTURE.md explains
the layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# layer -> prefixes of modules it must not import.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "domain": ("aiogram", "aiosqlite", "storage", "handlers", "bot"),
    "storage": ("aiogram", "handlers", "bot"),
    "handlers": ("bot",),
}
# What a layer may import although a prefix above forbids it.
ALLOWED: dict[str, tuple[str, ...]] = {
    "domain": ("bot.domain",),
    "storage": ("bot.domain",),
    "handlers": ("bot.domain",),
}
# The FSM storage is aiogram's adapter: it alone may import aiogram's FSM types.
ALLOWED_IN: dict[str, tuple[str, ...]] = {
    "storage/fsm.py": ("aiogram.fsm", "aiogram.exceptions"),
}


def layer_of(path: Path) -> str | None:
    parts = path.relative_to(ROOT).parts
    if parts[:2] == ("bot", "domain"):
        return "domain"
    if parts[0] in ("storage", "handlers"):
        return parts[0]
    return None


def imported(tree: ast.AST) -> list[tuple[int, str]]:
    names: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append((node.lineno, node.module))
    return names


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def violations() -> list[str]:
    found = []
    for path in sorted(ROOT.glob("*/**/*.py")):
        layer = layer_of(path)
        if layer is None:
            continue
        relative = path.relative_to(ROOT).as_posix()
        allowed = ALLOWED.get(layer, ()) + ALLOWED_IN.get(relative, ())
        for line, name in imported(ast.parse(path.read_text(encoding="utf-8"))):
            if within(name, FORBIDDEN[layer]) and not within(name, allowed):
                found.append(f"{relative}:{line}: the {layer} layer imports {name}")
    return found


def test_imports_run_one_way() -> None:
    assert violations() == []


@pytest.mark.parametrize(
    ("relative", "source", "expected"),
    [
        ("bot/domain/x.py", "from storage.outbox import Outbox", "imports storage.outbox"),
        ("bot/domain/x.py", "import aiogram", "imports aiogram"),
        ("storage/x.py", "from bot.sender import Sender", "imports bot.sender"),
        ("storage/x.py", "from aiogram.fsm.state import State", "imports aiogram.fsm.state"),
        ("handlers/x.py", "def f():\n    from bot.app import run", "imports bot.app"),
    ],
)
def test_the_check_sees_an_import_against_the_layers(
    relative: str, source: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source, encoding="utf-8")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    [found] = violations()
    assert found.endswith(expected)


def test_no_test_module_is_imported_by_another() -> None:
    """No test module (nor conftest) is imported by another test or a benchmark: what they
    share lives in tests/helpers.py (functions) and tests/conftest.py (fixtures)."""
    found = []
    for path in sorted([*ROOT.glob("tests/**/*.py"), *ROOT.glob("bench/**/*.py")]):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = [name for _, name in imported(tree)]
        names += [
            f"tests.{alias.name}"
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == "tests"
            for alias in node.names
        ]
        found += [
            f"{path.relative_to(ROOT).as_posix()} imports {name}"
            for name in names
            if name.startswith(("tests.test_", "tests.conftest"))
        ]
    assert found == []


def test_no_test_calls_an_async_helper_without_awaiting_it() -> None:
    # A check such as `assert_no_trace(db)` left un-awaited never runs: a test that cannot
    # fail, reported only as a warning (found after a helper became async on a merge).
    tests = Path(__file__).parent
    helpers = ast.parse((tests / "helpers.py").read_text(encoding="utf-8"))
    asynchronous = {node.name for node in helpers.body if isinstance(node, ast.AsyncFunctionDef)}
    unawaited = [
        f"{path.name}:{node.lineno}: {node.value.func.id}(...)"
        for path in sorted(tests.glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Name)
        and node.value.func.id in asynchronous
    ]
    assert unawaited == []
