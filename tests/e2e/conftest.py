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


@pytest.fixture
def run_stack():
    """Factory for stacks started by `make run`'s supervisor
    (scripts/run.sh, tests/e2e/supervised.py); each is stopped with
    SIGTERM at the end, and must then leave no process, sandbox or
    sanitizer report."""
    from supervised import RunStack, wait_gone
    made = []

    def make(**kw):
        st = RunStack(**kw)
        made.append(st)
        return st.start()

    yield make
    for st in made:
        st.stop()
        assert wait_gone(st.processes()) == [], "processes left: %s" % st.processes()
        assert st.runc_containers() == [], "sandboxes left behind"
        assert st.sanitizer_reports() == [], "sanitizer reported errors"
