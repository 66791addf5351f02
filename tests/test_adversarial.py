import json
import subprocess
import sys
from pathlib import Path

import pytest

from bot.domain.validation import FULL_NAME_PATTERN
from tests.adversarial import FAMILIES, LENGTHS, LIMIT, TARGETS

ROOT = Path(__file__).resolve().parent.parent
# Linear validators need a few seconds for the lot; an exponential one stops the run at its
# first call over the limit, within seconds. The timeout only guards against the unforeseen.
TIMEOUT = 100


@pytest.mark.slow  # a subprocess timing every validator: seconds
@pytest.mark.timeout(TIMEOUT + 20)
def test_no_validator_takes_over_a_second_on_adversarial_input() -> None:
    # In a child process: a backtracking pattern cannot be interrupted from a thread.
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "tests.adversarial", "--limit", str(LIMIT)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the validators did not finish the adversarial inputs in {TIMEOUT} s")
    assert completed.stderr == ""
    report = json.loads(completed.stdout)
    assert report["slow"] == [], f"slower than {LIMIT} s: {report['slow']}"
    assert set(report["worst_longest"]) == set(TARGETS)
    assert completed.returncode == 0


def test_adversarial_families_reach_telegrams_longest_message() -> None:
    assert max(LENGTHS) == 4096
    for family in FAMILIES.values():
        assert [len(family(length)) for length in LENGTHS] == [
            max(length, len(family.prefix) + len(family.suffix)) for length in LENGTHS
        ]


@pytest.mark.parametrize(
    ("name", "accepted"),
    [
        ("Иван", True),
        ("Иван-", True),
        ("Иван.", True),
        ("Петров И. И.", True),
        ("Салтыков-Щедрин", True),
        ("O'Connor", True),
        ("Д’Артаньян ‘Шарль`", True),
        ("Иван" + "-" * 4000, True),
        ("Иван - - -", True),
        ("-Иван", False),
        (" Иван", False),
        ("Иван" + "-" * 4000 + "!", False),
        ("Иван_Петров", False),
        ("Иван!", False),
        ("", False),
    ],
)
def test_full_name_pattern_accepts_words_joined_by_separators(name: str, accepted: bool) -> None:
    assert (FULL_NAME_PATTERN.fullmatch(name) is not None) is accepted
