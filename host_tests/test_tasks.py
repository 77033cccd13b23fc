"""A failing long-lived task is logged and restarted; the rest keeps running."""
from conftest import ROOT, run_mp


def test_failing_task_is_restarted_and_logged():
    out = run_mp(ROOT / "host_tests" / "mp" / "tasks_guard.py")
    assert out.count("task flaky failed, restarting it") == 2
    assert "RuntimeError sensor unplugged" in out
    assert "flaky done after 3 runs" in out and "ticker alive True" in out
