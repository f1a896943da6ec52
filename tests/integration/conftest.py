import pytest

from gwtest import Workdir


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def wd(request):
    w = Workdir(request.node.name)
    yield w
    failed = getattr(request.node, "rep_call", None) is None or request.node.rep_call.failed
    w.close(failed)
