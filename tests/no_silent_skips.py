"""Pytest plugin: no silent skips.

A skipped test hides a broken install just as well as a missing feature. Only the reasons
in ALLOWED_SKIPS may skip (they are about the machine, not the install); any other skip (an
importorskip of a required package, say) is reported as a failure, so a broken
`[train,test]` install can never pass as "all green".
"""

from __future__ import annotations

import pytest

ALLOWED_SKIPS = ("real datasets not found", "/usr/bin/chromium not installed",
                 "needs /usr/bin/chromium", "/usr/bin/firefox-esr not installed",
                 "/usr/bin/WebKitWebDriver not installed", "/usr/bin/Xvfb not installed",
                 "needs Python 3.12 for the GPU look-alike", "npm registry unreachable")


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _fail_unexpected_skip(report) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = _skip_reason(report)
        if not any(allowed in reason for allowed in ALLOWED_SKIPS):
            report.outcome = "failed"
            report.longrepr = (f"skipped for a reason the suite does not allow ({reason}); "
                               f"a required package or file is missing: see README 'Test'")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_unexpected_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_unexpected_skip(outcome.get_result())
