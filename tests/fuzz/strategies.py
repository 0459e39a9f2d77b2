"""What every fuzz test shares: how many examples, and inputs built by mutating valid ones.

``FRAMESTREAM_FUZZ_EXAMPLES`` sets the examples per test (CI: the default, a few seconds per
boundary; the reliability report: 10000). Each example has a deadline, so an input that
makes a parser hang fails the test like a crash does.

    @FUZZ
    @given(data=mutated(st.just(b"...")))
    def test_x(data): ...
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# Inputs each fuzz test ran, by test name: tests/fuzz/conftest.py prints them after the session.
TALLY: Counter[str] = Counter()


def tally() -> None:
    """Count one input under the running test's id (pytest sets ``PYTEST_CURRENT_TEST``)."""
    TALLY[os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0].split("::")[-1]] += 1


EXAMPLES = int(os.environ.get("FRAMESTREAM_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=timedelta(seconds=5),  # a hang is a failure, with room for a loaded CI machine
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


@st.composite
def mutated(draw: st.DrawFn, seeds: st.SearchStrategy[bytes], max_edits: int = 8) -> bytes:
    """A valid input with a few random edits: bytes flipped, inserted, deleted, a cut, a splice."""
    data = bytearray(draw(seeds))
    for _ in range(draw(st.integers(0, max_edits))):
        edit = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "splice", "repeat"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if edit == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif edit == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif edit == "delete" and data:
            del data[at : at + draw(st.integers(1, 64))]
        elif edit == "truncate":
            del data[at:]
        elif edit == "splice":
            data[at : at + 8] = draw(st.sampled_from([b"\xff\xd8", b"\xff\xd9", b"\x00" * 8, b"\xff" * 8, b"9" * 8]))
        elif edit == "repeat" and data:
            data[at:at] = data[at : at + 64] * draw(st.integers(1, 4))
    return bytes(data)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=6),
    max_leaves=30,
)
