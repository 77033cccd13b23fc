"""SecurityProfile says which profile the link really uses and accepts no other, until
the security extension's profiles are built (issue #13): 0 over ws:// without a key,
1 with Basic auth over ws://."""
import base64

from ocpp.v16 import call

from test_csms_errors import board_with

KEY = "0123456789abcdef0123"


def get(csms, key):
    return csms.run_call("CP001", call.GetConfiguration(key=[key])).configuration_key[0]["value"]


def change(csms, key, value):
    return csms.run_call("CP001", call.ChangeConfiguration(key=key, value=value)).status


def test_profile_0_over_ws_refuses_the_others(csms, firmware_factory):
    fw = firmware_factory(csms)
    fw.start()
    fw.wait_line(r"accepted this charge point")
    assert get(csms, "SecurityProfile") == "0"
    for p in ("3", "2", "1"):
        assert change(csms, "SecurityProfile", p) == "Rejected"
        fw.wait_line(r"SecurityProfile %s refused: this connection uses profile 0" % p)
    assert change(csms, "SecurityProfile", "0") == "Accepted"
    assert get(csms, "SecurityProfile") == "0"
    assert csms.connections == 1 and csms.violations == []


def test_basic_auth_over_ws_is_profile_1(csms, firmware_factory, tmp_path):
    fw = firmware_factory(csms, board=board_with(tmp_path, AuthorizationKey=KEY))
    fw.start()
    fw.wait_line(r"accepted this charge point")
    assert csms.auth == ["Basic " + base64.b64encode(("CP001:" + KEY).encode()).decode()]
    assert get(csms, "SecurityProfile") == "1"
    for p in ("0", "2", "3"):
        assert change(csms, "SecurityProfile", p) == "Rejected"
    assert change(csms, "SecurityProfile", "1") == "Accepted"
    assert csms.violations == []
