"""`python -m bot try`: the real bot against the fake Bot API, chatted with in a terminal.

The fake (`fake_telegram`) lives here, not under tests/, because `try` needs it in an installed
package and tests/ is not packaged; the tests import it through `tests.fake_telegram`.
"""
