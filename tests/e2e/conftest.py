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
    """Factory for private stacks (restarts, kills, auth on, ...).
    conf={"pico.conf": {key: value}, "redis.conf": {...}} changes config
    keys before the stack starts; a value may be a function of the stack."""
    made = []

    def make(conf=None, **kw):
        s = Stack(**kw)
        made.append(s)
        if not conf:
            return s.start()
        s.configure()
        for name, keys in conf.items():
            for key, value in keys.items():
                s.set_conf(key, value(s) if callable(value) else value,
                           name=name)
        return s.start(configure=False)

    yield make
    for s in made:
        s.stop()
    for s in made:
        assert s.runc_containers() == [], "sandboxes left behind"
        assert s.sanitizer_reports() == [], "sanitizer reported errors"
