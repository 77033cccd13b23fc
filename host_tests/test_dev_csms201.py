"""The dev CSMS itself, without the firmware: a charging station made with the `ocpp`
library's own classes (CPython) talks to it over WebSockets.

- the subprotocol it chooses: by its own order of preference, or the station's, or none
  (the connection closed at once, OCPP-J 2.0.1 part 4 §3.2);
- OCPP 2.0.1 sessions: answers, records, schema and OCPP-J checks of every frame
  (date-times without offset, over 3 decimals of a second, 1.6 error codes, long ids);
- TransactionEvent bookkeeping: per-transaction events, repeats, seqNo gaps;
- CSMS-initiated 2.0.1 calls: run_call (objects or raw payloads), call_raw, errors;
- delay / silent / errors / replies, restart keeping the record, passwords and TLS on 2.0.1;
- the 1.6 path as before."""
import asyncio
import json
import threading
import time
from datetime import datetime, timezone

import pytest
import websockets
from ocpp.exceptions import NotSupportedError, OCPPError
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint as ChargePoint16, call as call16
from ocpp.v201 import ChargePoint as ChargePoint201, call, call_result

import dev_csms
from conftest import server_tls
from dev_csms import DevCSMS, V16, V201

CS = "LIB201"
STATION = {"model": "REON", "vendorName": "REWATT", "serialNumber": "SN-1", "firmwareVersion": "0.1.1"}


def now_iso():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Station201(ChargePoint201):
    """A 2.0.1 charging station on the library: answers the calls the tests send."""

    variables = {("EVSE", 1, "AvailabilityState"): "Available"}

    @on("GetVariables")
    def on_get_variables(self, get_variable_data, **kw):
        out = []
        for d in get_variable_data:
            evse = d["component"].get("evse", {}).get("id")
            key = (d["component"]["name"], evse, d["variable"]["name"])
            r = {"component": d["component"], "variable": d["variable"]}
            if key in self.variables:
                r.update(attribute_status="Accepted", attribute_value=self.variables[key])
            else:
                r.update(attribute_status="UnknownVariable")
            out.append(r)
        return call_result.GetVariables(get_variable_result=out)

    @on("SetVariables")
    def on_set_variables(self, set_variable_data, **kw):
        return call_result.SetVariables(set_variable_result=[
            {"component": d["component"], "variable": d["variable"], "attribute_status": "Rejected"}
            for d in set_variable_data])

    @on("GetBaseReport")
    def on_get_base_report(self, request_id, report_base, **kw):
        return call_result.GetBaseReport(status="Accepted")

    @after("GetBaseReport")
    async def send_report(self, request_id, report_base, **kw):
        # two parts, as a station splits by ItemsPerMessage
        item = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"},
                "variableAttribute": [{"type": "Actual", "value": "300"}]}
        for seq, tbc in ((0, True), (1, False)):
            await self.call(call.NotifyReport(request_id=request_id, generated_at=now_iso(), seq_no=seq,
                                              tbc=tbc, report_data=[dict(item, variable={"name": "V%d" % seq})]))

    @on("RequestStartTransaction")
    def on_request_start(self, id_token, remote_start_id, **kw):
        return call_result.RequestStartTransaction(status="Accepted")

    @on("Reset")
    def on_reset(self, type, **kw):
        raise NotSupportedError(description="no resets here")


class Peer:
    """A library charge point in a thread of its own, driven synchronously by the test."""

    def __init__(self, url, cp_id=CS, protocols=(V201,), cls=Station201, timeout=5, **connect_kw):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        async def connect():
            return await websockets.connect(url + "/" + cp_id, subprotocols=list(protocols), **connect_kw)
        try:
            self.ws = self.run(connect())
        except BaseException:
            self.loop.call_soon_threadsafe(self.loop.stop)
            raise
        self.cp = cls(cp_id, self.ws, response_timeout=timeout)
        self.task = asyncio.run_coroutine_threadsafe(self._serve(), self.loop)

    async def _serve(self):
        try:
            await self.cp.start()
        except websockets.ConnectionClosed as e:
            return e

    def run(self, coro, timeout=20):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, payload, **kw):
        return self.run(self.cp.call(payload, **kw))

    def send(self, text):
        self.run(self.ws.send(text))

    def boot(self):
        return self.call(call.BootNotification(charging_station=STATION, reason="PowerUp"))

    def close(self):
        try:
            self.run(self.ws.close(), 5)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)


@pytest.fixture
def peers():
    made = []

    def make(csms, *a, **kw):
        p = Peer("ws://127.0.0.1:%d" % csms.port, *a, **kw)
        made.append(p)
        return p

    yield make
    for p in made:
        if p.loop.is_running():
            p.close()


def tx_event(kind, seq, txid="TX-1", trigger="Authorized", **kw):
    return call.TransactionEvent(event_type=kind, timestamp=now_iso(), trigger_reason=trigger, seq_no=seq,
                                 transaction_info={"transaction_id": txid}, evse={"id": 1, "connector_id": 1}, **kw)


# ---- protocol choice -----------------------------------------------------------------

def test_subprotocol_is_chosen_by_the_csms_order_then_the_station_order(peers):
    csms = DevCSMS()  # (ocpp1.6, ocpp2.0.1): 1.6 first
    csms.start_in_thread()
    try:
        both = peers(csms, "A", protocols=(V201, V16))
        assert both.ws.subprotocol == V16  # the CSMS's preference
        only201 = peers(csms, "B", protocols=(V201,))
        assert only201.ws.subprotocol == V201
        csms.prefer = "station"  # read at each handshake
        station_first = peers(csms, "C", protocols=(V201, V16))
        assert station_first.ws.subprotocol == V201
        csms.wait_for(lambda: len(csms.handlers) == 3, 5, "three connections")
        assert isinstance(csms.handlers["A"], dev_csms.ChargePointHandler)
        assert isinstance(csms.handlers["B"], dev_csms.ChargePointHandler201)
        assert isinstance(csms.handlers["C"], dev_csms.ChargePointHandler201)
        assert csms.offered == [[V201, V16], [V201], [V201, V16]]
        assert csms.subprotocols == [V16, V201, V201]
        assert csms.protocol == {"A": V16, "B": V201, "C": V201}
        assert csms.connections == 3 and csms.no_protocol == []
    finally:
        csms.stop_thread()


def test_no_common_subprotocol_completes_the_handshake_without_one_then_closes(peers):
    csms = DevCSMS(protocols=("2.0.1",))  # short names are taken too
    csms.start_in_thread()
    try:
        assert csms.protocols == (V201,)
        p = peers(csms, "OLD", protocols=(V16,))
        assert p.ws.subprotocol is None  # part 4 §3.2: no Sec-WebSocket-Protocol in the answer
        closed = p.task.result(5)
        assert isinstance(closed, websockets.ConnectionClosed) and closed.rcvd.code == 1002
        assert [(cp, offered) for _, cp, offered in csms.no_protocol] == [("OLD", [V16])]
        assert csms.connections == 0 and "OLD" not in csms.handlers and csms.subprotocols == [None]
    finally:
        csms.stop_thread()
    with pytest.raises(ValueError):
        DevCSMS(protocols=("ocpp2.0",))


def test_command_line_names_of_the_versions():
    assert [dev_csms.protocol_name(v) for v in ("2.0.1", "ocpp2.0.1", "1.6", "OCPP1.6", " 201 ")] == \
        [V201, V201, V16, V16, V201]


# ---- a 2.0.1 session ------------------------------------------------------------------

def test_boot_pending_then_accepted_status_authorize_heartbeat(peers):
    csms = DevCSMS(boot_replies=[("Pending", 7)], protocols=(V201,), accept_unknown_tags=False,
                   tags={"BLOCKED": "Blocked", "CARD": "Accepted",
                         "GROUP": {"status": "Accepted", "groupIdToken": {"idToken": "G1", "type": "Central"}}})
    csms.start_in_thread()
    try:
        st = peers(csms)
        first = st.boot()
        assert (first.status, first.interval) == ("Pending", 7)
        assert csms.registration[CS] == "Pending"
        st.call(call.StatusNotification(timestamp=now_iso(), connector_status="Available", evse_id=1,
                                        connector_id=1))  # too early: B02
        assert [(cp, a) for _, cp, a in csms.before_accepted] == [(CS, "StatusNotification")]
        second = st.boot()
        assert (second.status, second.interval) == ("Accepted", 300) and csms.registration[CS] == "Accepted"
        st.call(call.StatusNotification(timestamp=now_iso(), connector_status="Occupied", evse_id=2,
                                        connector_id=1))
        assert csms.status201 == {(CS, 1, 1): "Available", (CS, 2, 1): "Occupied"}
        auth = lambda tag: st.call(call.Authorize(id_token={"idToken": tag, "type": "ISO14443"})).id_token_info  # noqa
        assert auth("CARD") == {"status": "Accepted"}
        assert auth("BLOCKED") == {"status": "Blocked"}
        assert auth("STRANGER") == {"status": "Unknown"}  # 2.0.1's word for it
        assert auth("GROUP") == {"status": "Accepted", "group_id_token": {"id_token": "G1", "type": "Central"}}
        assert st.call(call.Heartbeat()).current_time.endswith("Z")
        assert st.call(call.DataTransfer(vendor_id="devcsms", data={"x": 1})).data == {"x": 1}
        assert st.call(call.DataTransfer(vendor_id="other")).status == "UnknownVendorId"
        st.call(call.SecurityEventNotification(type="StartupOfTheDevice", timestamp=now_iso()))
        st.call(call.NotifyEvent(generated_at=now_iso(), seq_no=0, event_data=[
            {"event_id": 1, "timestamp": now_iso(), "trigger": "Delta", "actual_value": "Faulted",
             "event_notification_type": "HardWiredNotification", "component": {"name": "EVSE", "evse": {"id": 1}},
             "variable": {"name": "AvailabilityState"}}]))
        assert csms.notify_events[0][1]["eventData"][0]["actualValue"] == "Faulted"  # as sent: camelCase
        st.call(call.SignCertificate(csr="-----BEGIN CERTIFICATE REQUEST-----"))
        assert csms.csrs == [(CS, "-----BEGIN CERTIFICATE REQUEST-----")]
        for msg in (call.FirmwareStatusNotification(status="Installed"), call.LogStatusNotification(status="Idle"),
                    call.MeterValues(evse_id=1, meter_value=[{"timestamp": now_iso(),
                                                              "sampled_value": [{"value": 12.5}]}])):
            st.call(msg)
        assert csms.actions(proto=V201) == ["BootNotification", "StatusNotification", "BootNotification",
                                            "StatusNotification", "Authorize", "Authorize", "Authorize",
                                            "Authorize", "Heartbeat", "DataTransfer", "DataTransfer",
                                            "SecurityEventNotification", "NotifyEvent", "SignCertificate",
                                            "FirmwareStatusNotification", "LogStatusNotification", "MeterValues"]
        assert csms.actions(proto=V16) == []
        assert all(f.proto == V201 for f in csms.frames)
        assert csms.violations == []
    finally:
        csms.stop_thread()


def test_invalid_frames_are_recorded_with_what_is_wrong(peers):
    csms = DevCSMS(protocols=(V201,))
    csms.start_in_thread()
    try:
        st = peers(csms)
        st.boot()
        # Against the schema: the library answers with a CALLERROR, the record says why.
        bad = call.BootNotification(charging_station={"model": "REON"}, reason="PowerUp")  # no vendorName
        assert st.call(bad, skip_schema_validation=True) is None  # (the CALLERROR, suppressed)
        msg, problems = csms.violations[-1]
        assert msg[2] == "BootNotification" and problems == ["'vendorName' is a required property"]
        answer = [m for _, d, _, m in csms.frames if d == ">>" and m[1] == msg[1]][0]
        assert answer[0] == 4
        # A date-time without offset passes the library (it checks no format), not the record.
        n = len(csms.violations)
        st.call(call.StatusNotification(timestamp="2025-06-10T12:34:56", connector_status="Available",
                                        evse_id=1, connector_id=1))
        assert csms.violations[n][1] == [".timestamp: '2025-06-10T12:34:56' is not an RFC 3339 date-time"]
        assert csms.status201[(CS, 1, 1)] == "Available"  # it was processed all the same
        # Over 3 decimals of a second, inside a $ref'd definition.
        st.call(call.MeterValues(evse_id=1, meter_value=[{"timestamp": "2025-06-10T12:34:56.1234Z",
                                                          "sampled_value": [{"value": 1}]}]))
        assert csms.violations[n + 1][1] == [
            ".meterValue[0].timestamp: '2025-06-10T12:34:56.1234Z' has more than 3 decimals of a second"]
        st.call(call.MeterValues(evse_id=1, meter_value=[{"timestamp": "2025-06-10T12:34:56.123+02:00",
                                                          "sampled_value": [{"value": 1}]}]))
        assert len(csms.violations) == n + 2  # three decimals and an offset: fine
        # OCPP-J: a message id over 36 characters, a 1.6 error code, not a message at all.
        st.send(json.dumps([2, "x" * 37, "Heartbeat", {}]))
        st.send(json.dumps([4, "id-1", "FormationViolation", "1.6 spelling", {}]))
        st.send(json.dumps([4, "id-2", "GenericError", "no details"]))
        st.send(json.dumps([5, "id-3", {}]))
        st.send("not json")
        csms.wait_for(lambda: len(csms.violations) == n + 7, 5, "five more violations")
        assert [p for _, p in csms.violations[n + 2:]] == [
            ["a message id has at most 36 characters"],
            ["'FormationViolation' is not an OCPP 2.0.1 error code"],
            ["a CALLERROR has 5 elements"],
            ["unknown message type 5"],
            ["not an OCPP-J message"]]
    finally:
        csms.stop_thread()


def test_transaction_events_are_kept_per_transaction_with_repeats_and_gaps(peers):
    csms = DevCSMS(protocols=(V201,), tags={"BAD": "Invalid"})
    csms.start_in_thread()
    try:
        st = peers(csms)
        st.boot()
        card = {"id_token": "CARD", "type": "ISO14443"}
        begin = [{"timestamp": now_iso(), "sampled_value": [{"value": 0, "context": "Transaction.Begin"}]}]
        started = st.call(tx_event("Started", 0, id_token=card, meter_value=begin))
        assert started.id_token_info == {"status": "Accepted"}  # idToken present: idTokenInfo answered
        st.call(tx_event("Updated", 1, trigger="MeterValuePeriodic"))
        repeat = tx_event("Updated", 1, trigger="MeterValuePeriodic")
        st.call(repeat)  # the same seqNo again (its answer was lost, say)
        assert st.call(repeat).id_token_info is None
        st.call(tx_event("Updated", 4, trigger="ChargingStateChanged"))  # 2 and 3 not (yet) here
        st.call(tx_event("Updated", 2, trigger="MeterValuePeriodic", offline=True))  # late
        st.call(tx_event("Ended", 5, trigger="StopAuthorized", id_token=card))
        events = csms.transactions201["TX-1"]
        assert [e["seqNo"] for e in events] == [0, 1, 4, 2, 5]  # in the order they came, each once
        assert events[0]["transactionInfo"] == {"transactionId": "TX-1"}  # as sent
        assert events[0]["meterValue"][0]["sampledValue"][0]["context"] == "Transaction.Begin"
        assert csms.duplicates["TransactionEvent"] == 2 and csms.conflicts == []
        assert [(tx, want, got) for _, _, tx, want, got in csms.seq_gaps] == [("TX-1", 2, 4), ("TX-1", 5, 2)]
        assert csms.missing_seq_nos("TX-1") == [3]
        # the same seqNo with other content is a conflict; a first event that is not Started, an orphan
        st.call(tx_event("Updated", 1, trigger="Deauthorized"))
        assert csms.conflicts[0][0] == "TX-1" and csms.conflicts[0][1]["triggerReason"] == "Deauthorized"
        st.call(tx_event("Updated", 0, txid="TX-2", trigger="MeterValuePeriodic"))
        assert [(a, tx) for _, _, a, tx in csms.orphans] == [("TransactionEvent", "TX-2")]
        # a token in the table gets its status; replies rewrites an answer after the bookkeeping
        assert st.call(tx_event("Started", 0, txid="TX-3", id_token={"id_token": "BAD", "type": "ISO14443"})) \
            .id_token_info == {"status": "Invalid"}
        csms.replies["TransactionEvent"] = {"idTokenInfo": {"status": "Expired"}, "totalCost": 1.5}
        answer = st.call(tx_event("Updated", 1, txid="TX-3"))
        assert answer.id_token_info == {"status": "Expired"} and answer.total_cost == 1.5
        assert [e["seqNo"] for e in csms.transactions201["TX-3"]] == [0, 1]
        del csms.replies["TransactionEvent"]
        assert csms.violations == []
    finally:
        csms.stop_thread()


# ---- CSMS-initiated 2.0.1 calls ----------------------------------------------------------

def test_csms_initiated_calls_as_objects_raw_payloads_and_raw_frames(peers):
    csms = DevCSMS(protocols=(V201,))
    csms.start_in_thread()
    try:
        st = peers(csms)
        st.boot()
        evse = {"name": "EVSE", "evse": {"id": 1}}
        get = call.GetVariables(get_variable_data=[{"component": evse, "variable": {"name": "AvailabilityState"}},
                                                   {"component": evse, "variable": {"name": "Nope"}}])
        answer = csms.run_call(CS, get)
        assert [(r["attribute_status"], r.get("attribute_value")) for r in answer.get_variable_result] == \
            [("Accepted", "Available"), ("UnknownVariable", None)]
        raw = csms.run_call(CS, get, raw=True)  # the payload as the station sent it
        assert raw["getVariableResult"][0]["attributeValue"] == "Available"
        sv = csms.run_call(CS, call.SetVariables(set_variable_data=[
            {"component": evse, "variable": {"name": "AvailabilityState"}, "attribute_value": "Unavailable"}]))
        assert sv.set_variable_result[0]["attribute_status"] == "Rejected"
        # GetBaseReport: the NotifyReports come after the answer, kept per requestId
        assert csms.run_call(CS, call.GetBaseReport(request_id=42, report_base="FullInventory")).status == "Accepted"
        csms.wait_for(lambda: csms.report_done(42), 5, "the whole report")
        assert [p["seqNo"] for p in csms.reports[42]] == [0, 1]
        assert [d["variable"]["name"] for d in csms.report_data(42)] == ["V0", "V1"]
        start = call.RequestStartTransaction(id_token={"id_token": "REMOTE", "type": "Central"}, remote_start_id=7)
        assert csms.run_call(CS, start).status == "Accepted"
        # A CALLERROR raises; a 1.6 object on a 2.0.1 connection is refused before sending.
        with pytest.raises(OCPPError) as e:
            csms.run_call(CS, call.Reset(type="Immediate"))
        assert e.value.code == "NotSupported"
        with pytest.raises(TypeError, match="ocpp2.0.1"):
            csms.run_call(CS, call16.Reset(type="Hard"))
        # call_raw: anything, unchecked; the answer frame comes back as a list.
        answer = csms.call_raw(CS, "GetVariables", {"getVariableData": "not a list"})
        assert answer[0] == 4 and answer[2] in ("TypeConstraintViolation", "FormatViolation")
        assert csms.call_raw(CS, "NoSuchAction", {})[2] == "NotSupported"  # (the library's answer)
        assert csms.call_raw(CS, "GetVariables", get_payload := {"getVariableData": [
            {"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "AvailabilityState"}}]},
            msg_id="raw-1") == [3, "raw-1", {"getVariableResult": [
                {"attributeStatus": "Accepted", "attributeValue": "Available", "component": get_payload[
                    "getVariableData"][0]["component"], "variable": {"name": "AvailabilityState"}}]}]
        # the session goes on after the stray answers reached the library
        assert csms.run_call(CS, get).get_variable_result[0]["attribute_value"] == "Available"
        assert [a for _, a, _ in csms.calls(direction=">>")] == [
            "GetVariables", "GetVariables", "SetVariables", "GetBaseReport", "RequestStartTransaction", "Reset",
            "GetVariables", "NoSuchAction", "GetVariables", "GetVariables"]
        assert csms.violations == []
    finally:
        csms.stop_thread()


def test_errors_silent_delay_and_restart_on_a_2_0_1_connection(peers):
    csms = DevCSMS(protocols=(V201,))
    csms.start_in_thread()
    try:
        st = peers(csms, timeout=1)
        st.boot()
        csms.errors["Heartbeat"] = ("InternalError", 1)
        with pytest.raises(OCPPError) as e:
            st.call(call.Heartbeat(), suppress=False)
        assert e.value.code == "InternalError" and [x[2:] for x in csms.errored] == [("Heartbeat", "InternalError")]
        assert st.call(call.Heartbeat()).current_time  # only the next one
        csms.silent["Heartbeat"] = 1
        with pytest.raises(asyncio.TimeoutError):
            st.call(call.Heartbeat())
        assert [x[2] for x in csms.unanswered] == ["Heartbeat"]
        csms.delay["Heartbeat"] = 0.5
        t = time.time()
        st.call(call.Heartbeat())
        assert time.time() - t >= 0.5
        st.call(tx_event("Started", 0))
        st.close()
        csms.restart(abrupt=True)  # the record stays
        again = peers(csms)
        again.call(tx_event("Ended", 1, trigger="StopAuthorized"))
        assert [e["eventType"] for e in csms.transactions201["TX-1"]] == ["Started", "Ended"]
        assert csms.restarts == 1 and csms.seq_gaps == [] and csms.connections == 2
        assert csms.actions().count("Heartbeat") == 4 and csms.violations == []
    finally:
        csms.stop_thread()


def test_passwords_and_tls_on_2_0_1(peers, pki):
    csms = DevCSMS(protocols=(V201,), passwords={CS: "s3cret-key-0123"})
    csms.start_in_thread(ssl=server_tls(pki))
    import base64
    import ssl
    tls = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    url = "wss://localhost:%d" % csms.port
    try:
        with pytest.raises(websockets.InvalidStatus):
            Peer(url, ssl=tls)
        assert [why for _, _, why in csms.refused] == ["no Basic auth"]
        basic = "Basic " + base64.b64encode(b"%s:s3cret-key-0123" % CS.encode()).decode()
        st = Peer(url, ssl=tls, additional_headers={"Authorization": basic})
        try:
            assert st.ws.subprotocol == V201 and st.boot().status == "Accepted"
            assert csms.auth[-1] == basic and csms.protocol[CS] == V201
        finally:
            st.close()
    finally:
        csms.stop_thread()


# ---- 1.6 as before -------------------------------------------------------------------------

class Station16(ChargePoint16):
    @on("GetConfiguration")
    def on_get_configuration(self, **kw):
        from ocpp.v16 import call_result as r16
        return r16.GetConfiguration(configuration_key=[{"key": "HeartbeatInterval", "readonly": False,
                                                        "value": "300"}])


def test_the_1_6_path_is_unchanged(peers):
    csms = DevCSMS(boot_replies=[("Pending", 3)], tags={"BLOCKED": "Blocked"})
    csms.start_in_thread()
    try:
        cp = peers(csms, "CP16", protocols=(V201, V16), cls=Station16)  # 1.6 is the CSMS's first choice
        assert cp.ws.subprotocol == V16
        boot = call16.BootNotification(charge_point_vendor="v", charge_point_model="m")
        assert cp.call(boot).status == "Pending" and cp.call(boot).status == "Accepted"
        assert cp.call(call16.Authorize(id_tag="BLOCKED")).id_tag_info == {"status": "Blocked"}
        start = call16.StartTransaction(connector_id=1, id_tag="T1", meter_start=0, timestamp=now_iso())
        assert cp.call(start).transaction_id == 1
        assert cp.call(start).transaction_id == 1  # a repeat: the same number
        cp.call(call16.StopTransaction(meter_stop=100, timestamp=now_iso(), transaction_id=1, reason="Local"))
        assert csms.transactions[1]["meterStop"] == 100 and csms.duplicates["StartTransaction"] == 1
        cp.call(call16.StatusNotification(connector_id=1, error_code="NoError", status="Available",
                                          timestamp="2025-01-01T00:00:00"))
        assert csms.violations[-1][1] == [".timestamp: '2025-01-01T00:00:00' is not an RFC 3339 date-time"]
        assert csms.status[("CP16", 1)] == "Available"
        conf = csms.run_call("CP16", call16.GetConfiguration())
        assert conf.configuration_key[0]["value"] == "300"
        assert csms.run_call("CP16", call16.GetConfiguration(), raw=True) == {
            "configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "300"}]}
        with pytest.raises(TypeError, match="ocpp1.6"):
            csms.run_call("CP16", call.GetVariables(get_variable_data=[]))
        assert all(f.proto == V16 for f in csms.frames) and csms.calls("Authorize", proto=V201) == []
        assert csms.transactions201 == {} and [x[2] for x in csms.before_accepted] == []
    finally:
        csms.stop_thread()


# ---- the firmware's offer (needs its OcppVersion key; no 2.0.1 package) ---------------------

def test_firmware_option_ocpp_makes_a_board_with_that_default(tmp_path):
    from conftest import Firmware
    from test_csms_errors import board_with
    fw = Firmware(tmp_path / "CP9", "ws://x", "CP9", board=board_with(tmp_path, HeartbeatInterval=60),
                  ocpp=("ocpp2.0.1", "1.6"))
    board = fw.cmd[fw.cmd.index("--board") + 1]
    assert board == str(tmp_path / "CP9-board")
    config = json.loads((tmp_path / "CP9-board" / "board.json").read_text())["config"]
    assert config["OcppVersion"] == fw.ocpp == "ocpp2.0.1,ocpp1.6" and config["HeartbeatInterval"] == 60
    assert Firmware(tmp_path / "CP8", "ws://x").ocpp is None
    with pytest.raises(ValueError):
        Firmware(tmp_path / "CP7", "ws://x", ocpp="2.1")


needs_ocpp_version = pytest.mark.skipif(
    "OcppVersion" not in (dev_csms.Path(__file__).parent.parent / "firmware" / "config.py").read_text(),
    reason="the firmware has no OcppVersion key yet")


@needs_ocpp_version
def test_firmware_offers_its_ocpp_version_list_and_the_csms_picks(csms, csms201, firmware_factory):
    fw = firmware_factory(csms, ocpp="1.6,2.0.1")  # Firmware(ocpp=...): a board default
    assert fw.ocpp == "ocpp1.6,ocpp2.0.1"
    fw.start()
    fw.wait_line(r"accepted this charge point")
    assert csms.offered == [[V16, V201]] and csms.protocol["CP001"] == V16
    # A station that speaks only 1.6, at a CSMS that speaks only 2.0.1: no session.
    old = firmware_factory(csms201, "CP-OLD", ocpp="1.6")
    old.start()
    csms201.wait_for(lambda: csms201.no_protocol, 20, "a refused handshake")
    assert csms201.no_protocol[0][1:] == ("CP-OLD", [V16]) and csms201.connections == 0
    old.wait_line(r"subprotocol")
