"""Boot-loop guard: repeated failed boots lead to a safe mode that keeps the OCPP link."""
import json
import subprocess

from conftest import ROOT, MICROPYTHON, mp_env, run_mp


def test_boot_loop_ends_in_safe_mode_without_the_failing_part(csms, firmware_factory, tmp_path):
    board = json.loads((ROOT / "boards" / "unix" / "board.json").read_text())
    board["reader"] = {"type": "pn532", "uart": "reader", "connector": 1}  # a UART the board lacks
    d = tmp_path / "board"
    d.mkdir()
    (d / "board.json").write_text(json.dumps(board))
    data = tmp_path / "data"
    fw = firmware_factory(csms, data=data, board=str(d))
    for _ in range(5):  # each boot dies on the broken reader
        p = subprocess.run(fw.cmd, cwd=ROOT, env=mp_env(), capture_output=True, text=True, timeout=20, input="")
        assert p.returncode != 0 and "the firmware stopped" in p.stdout, p.stdout + p.stderr
    fw.start()
    fw.wait_line(r"safe mode, without reader, modem")
    fw.wait_line(r"accepted this charge point", 20)
    csms.wait_for(lambda: csms.calls("StatusNotification"), 10, "status")
    first = csms.calls("StatusNotification")[0][2]
    assert first["connectorId"] == 0 and first["errorCode"] == "InternalError"
    assert first["info"].startswith("safe mode") and first["status"] == "Available"
    assert csms.violations == []
    # A clean stop clears the count: the next boot tries the whole board again
    # (and fails on the reader again, not in safe mode).
    fw.stop()
    p = subprocess.run(fw.cmd, cwd=ROOT, env=mp_env(), capture_output=True, text=True, timeout=20, input="quit\n")
    assert "safe mode" not in p.stdout and "the firmware stopped" in p.stdout


def test_safe_mode_never_leaves_off_the_link_or_the_queue_recovery():
    out = run_mp(ROOT / "host_tests" / "mp" / "tasks_safe_mode.py")
    assert "disabled ['reader']" in out
    assert "link running" in out and "recovery running" in out and "reader left off" in out


def test_a_boot_after_a_power_cut_does_not_count_towards_safe_mode():
    # Five power cuts in a row (a flickering supply while it is installed) must not leave a
    # station without its card reader; five crashes or watchdog resets still do.
    out = run_mp(ROOT / "host_tests" / "mp" / "tasks_power_on.py")
    assert "unix says powered on: False" in out
    assert "watchdog disabled ['reader'] count 6 crashed ['reader']" in out
    assert "power disabled [] count 1 crashed ['reader']" in out
