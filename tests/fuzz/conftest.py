"""Print how many inputs each fuzz test ran (``tally`` in the tests), after the session."""

from __future__ import annotations

import pytest

from tests.fuzz.strategies import TALLY


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TALLY:
        terminalreporter.section("fuzz inputs per test")
        for name, count in sorted(TALLY.items()):
            terminalreporter.write_line(f"{count:>8}  {name}")
