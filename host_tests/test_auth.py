"""Local Auth List Management and the Authorization Cache (OCPP 1.6 §3.5, §5.4,
§5.10, §5.15), offline behaviour, parentIdTag groups and idTags the CSMS
invalidates after the start."""
import time

from ocpp.v16 import call

from scenario import boot, restart, settle, wait_status, iso, go_offline, icsms  # noqa: F401

NO_ALIGNED = [("ClockAlignedDataInterval", 0)]


def entry(tag, status="Accepted", **info):
    return {"idTag": tag, "idTagInfo": dict(info, status=status)}


def send_list(csms, version, kind, items=None):
    kw = {"local_authorization_list": items} if items is not None else {}
    return csms.run_call("CP001", call.SendLocalList(list_version=version, update_type=kind, **kw)).status


def version(csms):
    return csms.run_call("CP001", call.GetLocalListVersion()).list_version


def error_code(csms, msg_id):
    got = csms.wait_for(lambda: [m for _, d, _, m in csms.frames if d == "<<" and m[:2] == [4, msg_id]], 5, msg_id)
    return got[0][2]


def started(fw, tag):
    return fw.wait_line(r"transaction started for %s" % tag)


def test_send_local_list_every_answer(csms, firmware_factory):
    fw = firmware_factory(csms)
    boot(fw, csms, NO_ALIGNED + [("SendLocalListMaxLength", 3), ("LocalAuthListMaxLength", 4)])
    assert version(csms) == 0  # empty
    assert send_list(csms, 1, "Full", [entry("A"), entry("B", "Blocked")]) == "Accepted"
    assert version(csms) == 1
    # Differential: a stale version is a VersionMismatch and changes nothing.
    assert send_list(csms, 1, "Differential", [entry("C")]) == "VersionMismatch"
    assert version(csms) == 1
    # Add C, update B, delete A (no idTagInfo).
    assert send_list(csms, 2, "Differential", [entry("C"), entry("B"), {"idTag": "A"}]) == "Accepted"
    assert version(csms) == 2
    # Too many in one message (SendLocalListMaxLength 3), or too many in all (LocalAuthListMaxLength 4).
    assert send_list(csms, 3, "Full", [entry("T%d" % i) for i in range(4)]) == "Failed"
    assert send_list(csms, 3, "Differential", [entry("D"), entry("E"), entry("F")]) == "Failed"
    assert version(csms) == 2
    # Malformed: a Full entry without idTagInfo, a duplicate idTag (case-insensitive), version 0 (errata 3.52).
    assert send_list(csms, 3, "Full", [entry("A"), {"idTag": "B"}]) == "Failed"
    assert send_list(csms, 3, "Full", [entry("A"), entry("a")]) == "Failed"
    assert send_list(csms, 0, "Full", [entry("A")]) == "Failed"
    assert version(csms) == 2
    # Wrong types never reach the list.
    csms.send_raw("CP001", '[2,"sl1","SendLocalList",{"listVersion":"4","updateType":"Full"}]')
    assert error_code(csms, "sl1") == "TypeConstraintViolation"
    csms.send_raw("CP001", '[2,"sl2","SendLocalList",{"listVersion":4,"updateType":"Partial"}]')
    assert error_code(csms, "sl2") == "PropertyConstraintViolation"
    assert version(csms) == 2
    # Persisted: the list (C and B) and its version survive a restart.
    restart(fw, csms, NO_ALIGNED + [("LocalPreAuthorize", "true")])
    assert version(csms) == 2
    fw.send("plug 1")
    fw.send("card 1 c")  # idTags are case-insensitive
    fw.wait_line(r"c accepted from the local list \(LocalPreAuthorize\)")
    assert csms.calls("Authorize") == []
    # A Differential update with no entries only moves the version; a Full empty one empties the list.
    assert send_list(csms, 5, "Differential") == "Accepted"
    assert version(csms) == 5
    assert send_list(csms, 6, "Full", []) == "Accepted"
    assert version(csms) == 0
    # Disabled: -1, and SendLocalList is NotSupported.
    settle(fw, [("LocalAuthListEnabled", "false")])
    assert version(csms) == -1
    assert send_list(csms, 7, "Full", [entry("A")]) == "NotSupported"
    assert csms.violations == []


def test_offline_local_list_and_unknown_cards(firmware_factory, icsms):
    fw = firmware_factory(icsms)
    boot(fw, icsms, NO_ALIGNED)
    assert send_list(icsms, 1, "Full", [entry("LISTED"), entry("BLOCKED", "Blocked"), entry("OLD", expiryDate=iso(-60)),
                                        entry("SOON", expiryDate=iso(3600))]) == "Accepted"
    go_offline(fw, icsms)
    fw.send("card 1 BLOCKED")
    fw.wait_line(r"offline: BLOCKED is Blocked in the local list, refused")
    fw.send("card 1 OLD")
    fw.wait_line(r"offline: OLD is Expired in the local list, refused")
    fw.send("card 1 STRANGER")
    fw.wait_line(r"offline: STRANGER cannot be checked, refused")
    fw.send("plug 1")
    fw.send("card 1 LISTED")
    fw.wait_line(r"offline: LISTED accepted from the local list")
    started(fw, "LISTED")
    # AllowOfflineTxForUnknownId lets an unknown card charge; a blocked one stays out.
    settle(fw, [("AllowOfflineTxForUnknownId", "true")])
    fw.send("plug 2")
    fw.send("card 2 BLOCKED")
    fw.wait_line(r"offline: BLOCKED is Blocked in the local list, refused")
    fw.send("card 2 STRANGER")
    fw.wait_line(r"offline: STRANGER allowed \(AllowOfflineTxForUnknownId\)")
    started(fw, "STRANGER")
    # LocalAuthorizeOffline off: the list no longer opens the station offline;
    # a listed card then counts as unknown.
    fw.send("card 1 LISTED")
    fw.send("card 2 STRANGER")
    fw.wait_line(r"transaction stopped")
    fw.wait_line(r"transaction stopped")
    settle(fw, [("LocalAuthorizeOffline", "false"), ("AllowOfflineTxForUnknownId", "false")])
    fw.send("card 1 SOON")
    fw.wait_line(r"offline: SOON cannot be checked, refused")
    # After a restart, still offline, the list still holds.
    fw.stop()
    fw.start()
    fw.wait_line(r"cannot connect")
    settle(fw, [("LocalAuthorizeOffline", "true")])
    fw.send("plug 1")
    fw.send("card 1 SOON")
    started(fw, "SOON")


def test_authorization_cache(firmware_factory, icsms):
    icsms.tags = {"BAD": "Blocked"}
    icsms.infos = {"CACHED": {"expiryDate": iso(3600)}}
    fw = firmware_factory(icsms)
    boot(fw, icsms, NO_ALIGNED)

    def present(cid, tag):
        fw.send("card %d %s" % (cid, tag))
        fw.wait_line(r"card %s (accepted|refused)" % tag)

    # Online every card is asked, and the answers fill the cache ...
    present(1, "CACHED")
    present(1, "GONE")
    assert len(icsms.calls("Authorize")) == 2
    # ... so that with LocalPreAuthorize a valid entry starts at once, without Authorize.
    settle(fw, [("LocalPreAuthorize", "true")])
    fw.send("card 1 CACHED")
    fw.wait_line(r"CACHED accepted from the cache \(LocalPreAuthorize\)")
    assert len(icsms.calls("Authorize")) == 2
    settle(fw, [("LocalPreAuthorize", "false")])
    assert icsms.run_call("CP001", call.ClearCache()).status == "Accepted"
    # GONE is learnt again, BAD as Blocked, BRIEF for two seconds only.
    expiry = time.time() + 2
    icsms.infos["BRIEF"] = {"expiryDate": iso(2)}
    for tag in ("GONE", "BAD", "BRIEF"):
        present(1, tag)
    assert len(icsms.calls("Authorize")) == 5
    # StartTransaction.conf fills the cache too: REMOTE never sees an Authorize.
    fw.send("plug 2")
    assert icsms.run_call("CP001", call.RemoteStartTransaction(id_tag="REMOTE", connector_id=2)).status == "Accepted"
    fw.wait_line(r"the CSMS numbered the transaction")
    fw.send("unplug 2")
    icsms.wait_for(lambda: icsms.calls("StopTransaction"), 10, "StopTransaction")
    go_offline(fw, icsms)
    time.sleep(max(0, expiry + 1.1 - time.time()))
    # Offline the cache decides (LocalAuthorizeOffline).
    fw.send("card 2 BAD")
    fw.wait_line(r"offline: BAD is Blocked in the cache, refused")
    fw.send("card 2 BRIEF")  # its validity ran out: Expired (§3.5.1)
    fw.wait_line(r"offline: BRIEF is Expired in the cache, refused")
    fw.send("card 2 CACHED")  # gone with ClearCache
    fw.wait_line(r"offline: CACHED cannot be checked, refused")
    fw.send("card 2 GONE")
    fw.wait_line(r"offline: GONE accepted from the cache")
    # The cache survives a restart (errata 3.4).
    fw.stop()
    fw.start()
    fw.wait_line(r"cannot connect")
    fw.send("plug 2")
    fw.send("card 2 REMOTE")
    fw.wait_line(r"offline: REMOTE accepted from the cache")
    started(fw, "REMOTE")
    settle(fw, [("AuthorizationCacheEnabled", "false")])
    fw.send("card 1 GONE")
    fw.wait_line(r"offline: GONE cannot be checked, refused")


def test_parent_id_tag_group_ends_a_transaction(firmware_factory, icsms):
    icsms.infos = {"MUM": {"parentIdTag": "FAMILY"}, "KID": {"parentIdTag": "FAMILY"},
                   "NEIGHBOUR": {"parentIdTag": "OTHERS"}}
    fw = firmware_factory(icsms)
    boot(fw, icsms, NO_ALIGNED)
    fw.send("plug 1")
    fw.send("card 1 MUM")
    icsms.wait_for(lambda: icsms.transactions, 10, "transaction")
    fw.wait_line(r"the CSMS numbered the transaction")
    fw.send("card 1 NEIGHBOUR")
    fw.wait_line(r"card NEIGHBOUR does not own this session")
    fw.send("card 1 KID")
    fw.wait_line(r"card KID of the same group ends the session")
    icsms.wait_for(lambda: icsms.calls("StopTransaction"), 10, "StopTransaction")
    stop = icsms.calls("StopTransaction")[0][2]
    assert stop["idTag"] == "KID" and stop["reason"] == "Local"
    assert [p["idTag"] for _, _, p in icsms.calls("Authorize")] == ["MUM", "NEIGHBOUR", "KID"]
    assert icsms.violations == []


def test_invalid_id_after_start(firmware_factory, icsms):
    # A remote start (no Authorize) whose idTag the CSMS refuses in StartTransaction.conf.
    icsms.tags = {"LATE": "Invalid", "LATER": "Blocked"}
    fw = firmware_factory(icsms)
    boot(fw, icsms, NO_ALIGNED + [("MaxEnergyOnInvalidId", 20)])
    fw.send("load 1 32")  # 22 kW: 20 Wh in about 3 s
    fw.send("plug 1")
    assert icsms.run_call("CP001", call.RemoteStartTransaction(id_tag="LATE", connector_id=1)).status == "Accepted"
    fw.wait_line(r"LATE may still take 20 Wh \(MaxEnergyOnInvalidId\)")
    icsms.wait_for(lambda: icsms.calls("StopTransaction"), 15, "StopTransaction")
    stop = icsms.calls("StopTransaction")[0][2]
    tx = icsms.transactions[stop["transactionId"]]
    assert stop["reason"] == "DeAuthorized" and 20 <= stop["meterStop"] - tx["meterStart"] < 60
    # StopTransactionOnInvalidId off: only the power is cut, the transaction goes on.
    settle(fw, [("StopTransactionOnInvalidId", "false"), ("MaxEnergyOnInvalidId", 0)])
    fw.send("plug 2")
    assert icsms.run_call("CP001", call.RemoteStartTransaction(id_tag="LATER", connector_id=2)).status == "Accepted"
    fw.wait_line(r"connector 2: power cut, the transaction goes on")
    wait_status(icsms, 2, "SuspendedEVSE")
    assert len(icsms.calls("StopTransaction")) == 1
    assert icsms.violations == []


def test_local_list_conflict_is_reported(firmware_factory, icsms):
    fw = firmware_factory(icsms)
    boot(fw, icsms, NO_ALIGNED + [("LocalPreAuthorize", "true")])
    assert send_list(icsms, 1, "Full", [entry("LISTED")]) == "Accepted"
    icsms.tags = {"LISTED": "Invalid"}
    fw.send("plug 1")
    fw.send("card 1 LISTED")
    icsms.wait_for(lambda: [p for _, _, p in icsms.calls("StatusNotification") if p["errorCode"] == "LocalListConflict"],
                   10, "LocalListConflict")
    conflict = [p for _, _, p in icsms.calls("StatusNotification") if p["errorCode"] == "LocalListConflict"][0]
    assert conflict["connectorId"] == 0
    # The CSMS said Invalid: the transaction ends (StopTransactionOnInvalidId).
    icsms.wait_for(lambda: icsms.calls("StopTransaction"), 10, "StopTransaction")
    assert icsms.violations == []
