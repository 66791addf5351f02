"""`python -m bot try` driven through a pseudo-terminal, as a person would type."""

from __future__ import annotations

import codecs
import os
import pty
import re
import select
import signal
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# Each test starts the sandbox, which starts the real bot process (`make test-fast` skips them).
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(180),
    pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs a pty and /proc"),
]

ROOT = Path(__file__).resolve().parent.parent


class Pty:
    """`python -m bot try` on the slave side of a pty: its controlling terminal, so Ctrl-C and
    Ctrl-D typed here mean what they mean at a keyboard."""

    def __init__(self, cwd: Path, *args: str, lang: str = "C.UTF-8") -> None:
        env = {key: value for key, value in os.environ.items() if key in ("PATH", "HOME")}
        # The sandbox's temporary folder lands in the test's, where the test can look at it.
        env.update(LANG=lang, TMPDIR=str(cwd), PYTHONPATH=str(ROOT), TERM="dumb")
        pid, fd = pty.fork()
        if pid == 0:  # the child
            os.chdir(cwd)
            os.execve(sys.executable, [sys.executable, "-m", "bot", "try", *args], env)
        self.pid, self.fd = pid, fd
        self.output = ""
        self._seen = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.returncode: int | None = None

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def enter(self, line: str) -> None:
        self.type(line + "\r")

    def expect(self, pattern: str, timeout: float = 40) -> re.Match[str]:
        """The first match of `pattern` in what was printed since the last match."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            found = regex.search(self.output, self._seen)
            if found:
                self._seen = found.end()
                return found
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                tail = self.output[self._seen :][-3000:]
                raise AssertionError(f"{pattern!r} not printed; after the last match:\n{tail}")

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return False
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            return False
        if not chunk:
            return False
        self.output += self._decoder.decode(chunk)
        return True

    def wait(self, timeout: float = 40) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._read(0.1)  # keep draining, or a full pty would block the child
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
                return self.returncode
        raise AssertionError(f"the sandbox did not exit; it printed:\n{self.output[-3000:]}")

    def close(self) -> None:
        if self.returncode is None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.fd)


def processes_in(folder: Path) -> list[int]:
    """Processes whose working directory is `folder` (the bot runs there), even deleted."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = str((entry / "cwd").readlink())
        except OSError:
            continue
        if cwd.removesuffix(" (deleted)") == str(folder):
            found.append(int(entry.name))
    return found


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Pty]:
    terminal = Pty(tmp_path)
    yield terminal
    terminal.close()


def started(terminal: Pty) -> Path:
    folder = Path(terminal.expect(r"Временная папка: (\S+)").group(1))
    terminal.expect(r"\[1\] ✅ Даю согласие", timeout=90)
    terminal.expect("вы › ")
    return folder


def button(terminal: Pty, label: str) -> str:
    return terminal.expect(rf"\[(\d+)\] [^\n]*{label}").group(1)


def test_person_registers_exports_and_quits_leaving_nothing(sandbox: Pty, tmp_path: Path) -> None:
    folder = started(sandbox)
    assert folder.parent == tmp_path and folder.is_dir()
    # The shipped session is in the past: the sandbox added one to register for.
    assert "Демо-сессия песочницы" in sandbox.output

    sandbox.enter("1")
    sandbox.expect("→ ✅ Даю согласие")
    sandbox.expect(r"── бот \(изменено\) ──[\s\S]*фамилию, имя и отчество")
    sandbox.enter("Иванова Мария Петровна")
    sandbox.expect("должность")
    sandbox.enter("Главный специалист")
    sandbox.expect("Место работы")
    sandbox.enter("Министерство культуры")
    sandbox.expect("номер телефона")
    sandbox.enter(button(sandbox, "номер"))
    sandbox.expect(r"→ вы поделились номером \+79123456789")
    sandbox.expect("электронной почты")
    sandbox.enter("maria@example.ru")
    sandbox.enter(button(sandbox, "Подтвердить"))
    sandbox.expect("Вы зарегистрированы")

    # Bad input: one clear line each, and the chat goes on.
    sandbox.enter(":nope")
    sandbox.expect(r"Нет команды :nope\. Есть :me, :admin, :org, :quit\.")
    sandbox.enter("42")
    sandbox.expect(r"Нет кнопки \[42\]")

    with sqlite3.connect(f"file:{folder / 'data' / 'bot.sqlite3'}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT event_id, full_name, phone, email, user_id, status FROM registrations"
        ).fetchall()
    assert rows == [
        (
            "sandbox-demo",
            "Иванова Мария Петровна",
            "+79123456789",
            "maria@example.ru",
            100001,
            "confirmed",
        )
    ]

    sandbox.enter(":org")
    sandbox.expect("чат организаторов")
    sandbox.expect(r"Иванова Мария Петровна[\s\S]*Министерство культуры")
    sandbox.enter("/digest")
    sandbox.expect("/digest спрашивают в личном чате")
    sandbox.expect(r"Сводка за[\s\S]*Демо-сессия песочницы")

    sandbox.enter(":admin")
    sandbox.expect("чат администратора")
    sandbox.enter("/export")
    sandbox.enter(button(sandbox, "Демо-сессия песочницы"))
    csv_path = Path(sandbox.expect(r"📎 (registrations_\S+\.csv) сохранён: (\S+)").group(2))
    xlsx_path = Path(sandbox.expect(r"📎 (registrations_\S+\.xlsx) сохранён: (\S+)").group(2))
    assert csv_path.parent == xlsx_path.parent == tmp_path
    csv_text = csv_path.read_text(encoding="utf-8-sig")
    assert "Иванова Мария Петровна" in csv_text
    assert "maria@example.ru" in csv_text
    assert xlsx_path.read_bytes().startswith(b"PK")

    sandbox.enter(":me")
    sandbox.expect("ваш чат с ботом")
    assert processes_in(folder), "the bot process runs in the temporary folder"
    sandbox.enter(":quit")
    sandbox.expect("Песочница остановлена, временная папка удалена.")
    assert sandbox.wait() == 0
    assert not folder.exists()
    assert processes_in(folder) == []
    assert "Traceback" not in sandbox.output


@pytest.mark.parametrize(("key", "said"), [("\x03", "Ctrl-C: останавливаю"), ("\x04", "Ctrl-D")])
def test_ctrl_c_or_ctrl_d_stops_with_one_line_and_no_traceback(
    sandbox: Pty, key: str, said: str
) -> None:
    folder = started(sandbox)

    sandbox.type(key)

    sandbox.expect(said)
    sandbox.expect("Песочница остановлена, временная папка удалена.")
    assert sandbox.wait() == 0
    assert not folder.exists()
    assert processes_in(folder) == []
    assert "Traceback" not in sandbox.output


@pytest.mark.parametrize(
    "url", ["https://api.telegram.org", "http://10.0.0.5:8081", "http://localhost.evil:80"]
)
def test_the_sandbox_never_hands_the_bot_an_address_off_this_machine(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.sandbox.run import SandboxError, bot_environment

    # A developer's real settings in the environment are never passed on.
    monkeypatch.setenv("BOT_TOKEN", "123456789:AAreal-token-of-a-real-bot-xxxxxxxxxxxx")
    monkeypatch.setenv("TELEGRAM_API_URL", "https://api.telegram.org")
    with pytest.raises(SandboxError, match=r"127\.0\.0\.1"):
        bot_environment(tmp_path, tmp_path / "events.toml", "Europe/Moscow", url)
    env = bot_environment(tmp_path, tmp_path / "events.toml", "Europe/Moscow", "http://127.0.0.1:9")
    assert env["TELEGRAM_API_URL"] == "http://127.0.0.1:9"
    assert env["BOT_TOKEN"] != os.environ["BOT_TOKEN"]


@pytest.mark.parametrize(("args", "lang"), [(("--language", "en"), "C.UTF-8"), ((), "en_GB.UTF-8")])
def test_the_sandbox_speaks_english_when_asked_or_when_the_terminal_does(
    tmp_path: Path, args: tuple[str, ...], lang: str
) -> None:
    terminal = Pty(tmp_path, *args, lang=lang)
    try:
        folder = Path(terminal.expect(r"Temporary folder: (\S+)").group(1))
        # The bot speaks English to the participant too (their app's language).
        terminal.expect(r"Hello! Here you can register", timeout=90)
        terminal.expect(r"\[1\] ✅ I agree")
        terminal.expect("you › ")
        terminal.type("\x04")
        terminal.expect("The sandbox is stopped, the temporary folder removed.")
        assert terminal.wait() == 0
        assert not folder.exists()
        assert "Traceback" not in terminal.output
    finally:
        terminal.close()


@pytest.mark.parametrize(
    ("argv", "lang", "language"),
    [
        ([], None, "ru"),
        ([], "C.UTF-8", "ru"),
        ([], "en_US.UTF-8", "en"),
        ([], "de_DE.UTF-8", "ru"),
        (["--language", "en"], "ru_RU.UTF-8", "en"),
        (["--language", "ru"], "en_US.UTF-8", "ru"),
    ],
)
def test_the_sandboxs_language_comes_from_the_option_then_lang(
    argv: list[str], lang: str | None, language: str
) -> None:
    from bot.sandbox.run import sandbox_language

    assert sandbox_language(argv, lang) == language


@pytest.mark.parametrize("argv", [["--language", "xx"], ["--language"], ["--lang=en"]])
def test_a_wrong_sandbox_option_is_one_line(argv: list[str]) -> None:
    from bot.sandbox.run import SandboxError, sandbox_language

    with pytest.raises(SandboxError) as error:
        sandbox_language(argv, None)
    assert str(error.value).startswith("error: ") and "\n" not in str(error.value)
