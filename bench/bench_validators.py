"""Every validator that runs a regular expression, on inputs built to make backtracking explode
(runs of each separator, letters and separators in turn, a symbol at the end; tests/adversarial.py)
at 1 to 4096 characters. The baseline is the goal: linear, at most 1 s at 4096 characters. The
full-name pattern the bot had before is measured beside them for comparison, up to 40
characters, each family cut at its first call over 1 s.

    python -m bench.bench_validators [--quick]
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence

from tests.adversarial import FAMILIES, LENGTHS, LIMIT, TARGETS, measure

# Each call's best of three: the machine may be busy with something else.
REPEAT = 3
OLD_FULL_NAME = "full-name pattern before issue 10 (for comparison)"
OLD_LENGTHS = tuple(range(1, 41))
OLD_FULL_NAME_PATTERN = re.compile(r"[^\W\d_]+(?:[ .'’‘`-]+[^\W\d_]*)*\.?")


def milliseconds(seconds: float) -> str:
    return f"{seconds * 1000:,.2f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="the old pattern on one family only (seconds)"
    )
    args = parser.parse_args(argv)

    print(
        f"{len(TARGETS)} validators × {len(FAMILIES)} families × {len(LENGTHS)} lengths, "
        f"best of {REPEAT} …"
    )
    report = measure(stop_at_first=False, repeat=REPEAT)
    old_families = (
        {"letter, hyphens, !": FAMILIES["letter, hyphens, !"]} if args.quick else FAMILIES
    )
    print(f"the old full-name pattern on {len(old_families)} families …")
    # Up to 40 characters, one at a time: past that, one call of a family that grows a little
    # slower than doubling could take hours.
    old = measure(
        {OLD_FULL_NAME: OLD_FULL_NAME_PATTERN.fullmatch},
        families=old_families,
        lengths=OLD_LENGTHS,
        stop_at_first=False,
    )

    longest = max(LENGTHS)
    print()
    print("## Validators on adversarial input")
    print()
    print(
        f"Goal: linear, ≤ {LIMIT:g} s at {longest} chars (worst over every family; each call "
        f"the best of {REPEAT} runs)."
    )
    print()
    print(
        f"| Validator | Worst, ms | Its input | Worst at {longest} chars, ms | "
        f"Calls over {LIMIT:g} s |"
    )
    print("|---|---:|---|---:|---:|")
    for name in (*TARGETS, OLD_FULL_NAME):
        source = old if name == OLD_FULL_NAME else report
        worst = source.worst[name]
        at_longest = None if name == OLD_FULL_NAME else source.worst_longest.get(name)
        slow = [entry for entry in source.slow if entry.family.startswith(f"{name}: ")]
        print(
            f"| {name} | {milliseconds(worst.seconds)} | {worst.family}, {worst.length} chars "
            f"| {milliseconds(at_longest.seconds) if at_longest else 'not measured'} "
            f"| {len(slow)} |"
        )
    print()
    if old.slow:
        first = min(old.slow, key=lambda entry: entry.length)
        print(
            f"The old pattern passed {LIMIT:g} s on {len(old.slow)} families, the shortest at "
            f"{first.length} chars ({first.family.split(': ', 1)[1]}, "
            f"{first.seconds:.2f} s); each further character doubles it."
        )
    return 1 if report.slow else 0


if __name__ == "__main__":
    sys.exit(main())
