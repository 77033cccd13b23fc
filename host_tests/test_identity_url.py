"""The connection URL (OCPP-J 1.6 §3.1.1, RFC 3986): the charge point identity is
percent-encoded as one path segment and goes before any query of the CSMS URL; a bad
identity or URL is refused when it is set, with a message saying why."""
import json

import pytest

from conftest import run_mp


@pytest.mark.parametrize("cp_id, path", [
    ("CP 01", "/CP%2001"),
    ("CP#01", "/CP%2301"),
    ("CP%41", "/CP%2541"),
    ("CP?1", "/CP%3F1"),
    ("CP-01_a.b~*+=@", "/CP-01_a.b~*+=@"),
])
def test_identity_is_percent_encoded_and_registers_as_itself(csms, firmware_factory, tmp_path, cp_id, path):
    fw = firmware_factory(csms, cp_id=cp_id, data=tmp_path / "station")
    fw.start()
    fw.wait_line(r"accepted this charge point")
    assert csms.paths == [path]
    assert cp_id in csms.handlers  # the CSMS decodes it back to the same identity
    assert csms.violations == []


def test_identity_goes_before_the_query_of_the_csms_url(csms, firmware_factory):
    fw = firmware_factory("ws://127.0.0.1:%d/ocpp/?site=7&x=%%20" % csms.port, cp_id="CPQ")
    fw.start()
    fw.wait_line(r"accepted this charge point")
    assert csms.paths == ["/ocpp/CPQ?site=7&x=%20"]
    assert "CPQ" in csms.handlers


def test_query_without_path_is_kept(csms, firmware_factory):
    fw = firmware_factory("ws://127.0.0.1:%d?site=7" % csms.port, cp_id="CPR")
    fw.start()
    fw.wait_line(r"accepted this charge point")
    assert csms.paths == ["/CPR?site=7"]


URL_CASES = [
    ("ws://csms.example.com/ocpp", None),
    ("wss://[2001:db8::1]:8443/ocpp?site=7", None),
    ("ws://10.0.0.1:9000", None),
    ("http://csms.example.com/ocpp", "it must start with ws:// or wss://"),
    ("ws://", "it has no host name"),
    ("ws:///ocpp", "it has no host name"),
    ("ws://csms.example.com:0/ocpp", "its port must be a number from 1 to 65535"),
    ("ws://csms.example.com:99999", "its port must be a number from 1 to 65535"),
    ("ws://csms.example.com:port/ocpp", "its port must be a number from 1 to 65535"),
    ("ws://user:pw@csms.example.com/ocpp", "user:password@ is not taken in it"),
    ("ws://csms.example.com/oc pp", "it must be plain ASCII without spaces"),
    ("ws://csms.example.com/ocpp#frag", "a #fragment has no place in it"),
    ("ws://[2001:db8::1/ocpp", "its [IPv6 address] is malformed"),
]
ID_CASES = [
    ("CP001", None),
    ("RDAM 123", None),
    ("", "it is empty"),
    ("CP:01", "':' and '/' are not allowed in it"),
    ("CP/01", "':' and '/' are not allowed in it"),
    ("CP\u00e901", "it must be plain ASCII"),
    ("CP\t01", "it must be plain ASCII"),
]


def test_url_and_identity_checks_on_the_port():
    code = "import json, config\nprint(json.dumps([config.problem(k, v) for k, v in %r]))" % (
        [("CsmsUrl", u) for u, _ in URL_CASES] + [("ChargePointId", i) for i, _ in ID_CASES])
    got = json.loads(run_mp("-c", code).strip().splitlines()[-1])
    for (value, want), why in zip(URL_CASES + ID_CASES, got):
        if want is None:
            assert why is None, value
        else:
            assert why and why.startswith(want), (value, why)


def test_bad_identity_or_url_stops_the_boot_with_the_reason(firmware_factory, csms):
    fw = firmware_factory(csms, cp_id="CP:01")
    fw.start()
    fw.wait_line(r"ChargePointId 'CP:01' is not valid: ':' and '/' are not allowed in it")
    fw = firmware_factory("http://127.0.0.1:%d" % csms.port, cp_id="CP002")
    fw.start()
    fw.wait_line(r"CsmsUrl 'http://127.0.0.1:\d+' is not valid: it must start with ws:// or wss://")
    assert csms.connections == 0


def test_installer_sees_why_at_the_repl(csms, firmware_factory):
    fw = firmware_factory(csms)
    fw.start()
    fw.wait_line(r"accepted this charge point")
    fw.stop()
    out = run_mp("-c", "import cfg\ncfg.open(%r)\ncfg.set('CsmsUrl', 'ws://a b')\ncfg.set('ChargePointId', 'A/B')"
                 % str(fw.data_dir))
    assert "CsmsUrl: Rejected, 'ws://a b' is not valid: it must be plain ASCII without spaces" in out, out
    assert "ChargePointId: Rejected, 'A/B' is not valid: ':' and '/' are not allowed in it" in out, out
