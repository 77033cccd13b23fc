"""Every firmware and library module compiles with mpy-cross for the boards' architectures."""
import sys

import pytest

sys.path.insert(0, __import__("conftest").ROOT.joinpath("tools").as_posix())
import build_mpy  # noqa: E402


@pytest.mark.parametrize("arch", ["xtensawin", "armv6m"])
def test_every_module_compiles(arch, tmp_path):
    total, sizes, failed = build_mpy.build(arch, tmp_path)
    assert failed == []
    assert "firmware/station.py" in sizes and "lib/ws.py" in sizes
    print("%s: %d bytes of .mpy" % (arch, total))
