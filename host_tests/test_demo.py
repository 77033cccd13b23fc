"""`make run` (tools/demo.py): the firmware completes its charging session against the
bundled dev CSMS, in OCPP 1.6 and, as the REON station's session, in OCPP 2.0.1 (boot,
statuses, a card transaction with Begin/End meter values, Get/SetVariables on the EVSE's
AvailabilityStatus), every frame valid against the official schemas."""
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_make_run_completes_the_session(version):
    p = subprocess.run([sys.executable, "tools/demo.py", "--ocpp", version], cwd=ROOT, capture_output=True,
                       text=True, timeout=180)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert "Traceback" not in p.stdout and "MemoryError" not in p.stdout
    if version == "2.0.1":
        assert "session complete, every frame valid against the OCPP 2.0.1 schemas" in p.stdout, p.stdout[-2000:]
        assert "SetVariables Unavailable" in p.stdout and "Begin 0 Wh" in p.stdout
