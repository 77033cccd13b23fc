"""Malformed CALLs from the CSMS get the OCPP-J 1.6 §4.2.3 error code, and the session goes on."""
import json

import pytest
from ocpp.v16 import call

from conftest import run_mp, ROOT

CASES = [
    # (frame, expected error code or None when the frame must be ignored)
    ('[2,"e1","NoSuchAction",{}]', "NotImplemented"),
    ('[2,"e2","BootNotification",{"chargePointVendor":"x","chargePointModel":"y"}]', "NotSupported"),
    ('[2,"e3","ChangeConfiguration",{"key":"HeartbeatInterval"}]', "OccurenceConstraintViolation"),
    ('[2,"e4","ChangeConfiguration",{"key":5,"value":"1"}]', "TypeConstraintViolation"),
    ('[2,"e5","ChangeConfiguration",{"key":"%s","value":"1"}]' % ("K" * 51), "PropertyConstraintViolation"),
    ('[2,"e6","ChangeConfiguration",{"key":"a","value":"1","extra":1}]', "FormationViolation"),
    ('[2,"e7","DataTransfer"]', "FormationViolation"),
    ('[2,"e8","DataTransfer","not an object"]', "FormationViolation"),
    ('[2,"%s","Heartbeat",{}]' % ("x" * 37), "ProtocolError"),
    ('[2,"e9","DataTransfer",{"vendorId":"mpocpp","data":7}]', "TypeConstraintViolation"),
    ("this is not json", None),
    ('{"an": "object"}', None),
    ('[7,"e10","Heartbeat",{}]', None),
    ('[3,"never-asked",{}]', None),
    ('[4,"never-asked","GenericError","",{}]', None),
]


def answers_to(csms, msg_id):
    return [m for _, d, _, m in csms.frames if d == "<<" and isinstance(m, list) and m[0] in (3, 4)
            and m[1] == msg_id]


def test_malformed_calls_get_the_right_error_and_session_goes_on(csms, firmware_factory):
    fw = firmware_factory(csms)
    fw.start()
    fw.wait_line(r"accepted this charge point")
    csms.wait_for(lambda: "CP001" in csms.handlers, 5, "connection")
    for frame, code in CASES:
        csms.send_raw("CP001", frame)
        # A valid CALL after each bad frame proves the session is still alive.
        answer = csms.run_call("CP001", call.GetConfiguration(key=["HeartbeatInterval"]))
        assert answer.configuration_key[0]["value"] == "300"
        if code is None:
            continue
        msg_id = json.loads(frame)[1]
        got = csms.wait_for(lambda: answers_to(csms, msg_id), 5, "answer to " + frame)
        assert got[0][0] == 4 and got[0][2] == code, frame
        assert isinstance(got[0][3], str) and got[0][4] == {}
    assert "frame is not valid JSON" in "\n".join(fw.lines)
    assert "answer to unknown message id never-asked dropped" in "\n".join(fw.lines)
    assert csms.violations == []


def test_handler_failure_is_internal_error_and_loop_survives():
    # The RPC layer with a handler that raises, on the unix port: a small
    # in-memory WebSocket stands in for the link (no network peer is involved).
    # A handler that raises rpc.CallError is answered with that CALLERROR.
    out = run_mp(ROOT / "host_tests" / "mp" / "rpc_internal_error.py")
    lines = out.strip().splitlines()
    assert lines[-3:] == ['[4, "c1", "InternalError", "Broken failed", {}]', '[4, "c3", "NotSupported", "not here", {}]',
                          '[3, "c2", {"status": "Accepted"}]'], out
