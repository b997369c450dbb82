"""Fixtures: a herald server per test module (and per-test servers with custom
env), plus client factories that always close what they open."""

import pytest

from herald_interop import HeraldProcess, connect


@pytest.fixture(scope="module")
def herald():
    server = HeraldProcess()
    yield server
    server.stop()


@pytest.fixture
def herald_with_env():
    """Start a dedicated herald with extra environment variables."""
    started = []

    def start(env):
        server = HeraldProcess(env)
        started.append(server)
        return server

    yield start
    errors = []
    for server in started:
        try:
            server.stop()
        except Exception as e:  # stop every server, then report
            errors.append(e)
    if errors:
        raise errors[0]


@pytest.fixture
def clients():
    """clients(kind, server, **kw) -> Client; every client is closed at teardown."""
    opened = []

    def open_client(kind, server, **kw):
        c = connect(kind, server, **kw)
        opened.append(c)
        return c

    yield open_client
    for c in opened:
        c.close()


@pytest.fixture
def raw():
    """raw(server) -> RawStomp socket; closed at teardown."""
    from herald_interop import RawStomp

    opened = []

    def open_raw(server):
        r = RawStomp(server)
        opened.append(r)
        return r

    yield open_raw
    for r in opened:
        r.close()
