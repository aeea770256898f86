import os
import pytest

from pico_stack import Stack


@pytest.fixture(scope="session")
def stack():
    """One shared stack, auth off, for tests that do not disturb it."""
    s = Stack(name="shared").start()
    yield s
    s.stop()
    assert s.runc_containers() == [], "sandboxes left behind"
    assert s.sanitizer_reports() == [], "sanitizer reported errors: %s" % s.sanitizer_reports()


@pytest.fixture
def new_stack():
    """Factory for private stacks (restarts, kills, auth on, ...)."""
    made = []

    def make(**kw):
        s = Stack(**kw)
        made.append(s)
        return s.start()

    yield make
    for s in made:
        s.stop()
    for s in made:
        assert s.runc_containers() == [], "sandboxes left behind"
        assert s.sanitizer_reports() == [], "sanitizer reported errors"
