# OCPP 1.6 operations initiated by the CSMS: action name -> handler.
# A handler gets the checked payload and returns the response payload, or
# (response, after) where `after` is a coroutine function run once the
# response is out. Handlers only call the station model and configuration;
# the section numbers are those of the OCPP 1.6 specification.
import clock
import log
from ocpp import session

# UpdateFirmware and GetDiagnostics without retries / retryInterval: 3 attempts, 60 s apart
_RETRIES = 2
_RETRY_INTERVAL = 60
_PURPOSES = {"ChargePointMaxProfile": 0, "TxDefaultProfile": 1, "TxProfile": 2}  # charging.MAX, TX_DEFAULT, TX


def table(cp):
    config = cp.config
    station = cp.station

    # ---- Core ---------------------------------------------------------------

    def change_configuration(p):
        # §5.3: NotSupported, Rejected, RebootRequired or Accepted (config.set);
        # a variable of the 2.0.1 device model only is no 1.6 key.
        status = "NotSupported" if config.only201(p["key"]) else config.set(p["key"], p["value"])
        log.info("config", "CSMS set %s: %s" % (p["key"], status))
        return {"status": status}

    def get_configuration(p):
        # §5.8: at most GetConfigurationMaxKeys keys are looked up.
        keys = p.get("key")
        if not keys:  # every key: streamed, it is the largest answer we give
            return config.all_items_json
        limit = config.get("GetConfigurationMaxKeys")
        known, unknown = config.items(keys[:limit])
        answer = {"configurationKey": known}
        if unknown:
            answer["unknownKey"] = unknown
        return answer

    def remote_start(p):
        # §5.11: Accepted when a connector can take it; a charging profile
        # must be a TxProfile without transactionId (§5.16.2) that the station
        # can install: it becomes the transaction's TxProfile.
        profile = p.get("chargingProfile")
        c = station.remote_connector(p.get("connectorId"), p["idTag"])
        if profile:
            if profile["chargingProfilePurpose"] != "TxProfile" or "transactionId" in profile:
                log.warn("ocpp", "remote start refused: its charging profile is not a usable TxProfile")
                return {"status": "Rejected"}
            profile = _profile(profile, c.id if c else 1)
            # the limits of SetChargingProfile, for the transaction about to start
            if profile is None or station.profiles().refusal(profile, None, True):
                return {"status": "Rejected"}
        if c is None:
            return {"status": "Rejected"}
        return {"status": "Accepted"}, lambda: station.remote_start(
            c, p["idTag"], config.get("AuthorizeRemoteTxRequests"), profile)

    def remote_stop(p):
        # §5.12: Rejected for a transaction we do not know.
        tx = station.transaction_by_id(p["transactionId"])
        if tx is None:
            return {"status": "Rejected"}

        async def stop():
            station.stop_transaction(station.connector(tx.connector_id), "Remote")
        return {"status": "Accepted"}, stop

    def change_availability(p):
        # §5.2: Scheduled while a transaction runs on the connector(s).
        return {"status": station.change_availability(p["connectorId"], p["type"] == "Operative")}

    def unlock_connector(p):
        # §5.18, errata 3.85: NotSupported without a lock or for an unknown connector.
        ok = station.unlock(p["connectorId"], "UnlockCommand")
        return {"status": "NotSupported" if ok is None else "Unlocked" if ok else "UnlockFailed"}

    def reset(p):
        # §5.14: the confirmation first, then the transactions end and we restart.
        return {"status": "Accepted"}, lambda: cp.reset(p["type"] == "Hard")

    def clear_cache(p):
        # §5.4
        station.auth.cache.clear()
        return {"status": "Accepted"}

    # ---- Smart Charging (§3.13) ------------------------------------------------
    def _profile(cs, cid):
        # an OCPP 1.6 chargingProfile -> schedule.Profile, or None (logged)
        from schedule import from_ocpp16  # rarely used: imported when needed
        try:
            return from_ocpp16(cs, cid, clock.now())
        except ValueError as e:
            log.warn("ocpp", "charging profile %d refused: %s" % (cs["chargingProfileId"], e))
            return None

    def set_charging_profile(p):
        # §5.16: Rejected for what the station cannot follow (charging.py says why)
        cid = p["connectorId"]
        if not 0 <= cid < len(station.connectors):
            return {"status": "Rejected"}
        profile = _profile(p["csChargingProfiles"], cid)
        if profile is None or station.install_profile(profile):
            return {"status": "Rejected"}
        return {"status": "Accepted"}

    def clear_charging_profile(p):
        # §5.5: an id clears that profile only; else the criteria combine (AND)
        n = station.clear_profiles(p.get("id"), p.get("connectorId"), _PURPOSES.get(p.get("chargingProfilePurpose")),
                                   p.get("stackLevel"))
        return {"status": "Accepted" if n else "Unknown"}

    def get_composite_schedule(p):
        # §5.7: from now, periods relative to it; the unit asked for, else A
        cid = p["connectorId"]
        if not 0 <= cid < len(station.connectors):
            return {"status": "Rejected"}
        c = station.connectors[cid]
        unit = p.get("chargingRateUnit", "A")
        now = clock.now()
        periods = station.profiles().composite(c, now, p["duration"], unit, c.transaction)

        def answer():
            # JSON text in pieces: limits written with one decimal ("8.7"), which
            # json.dumps would give as 8.699999999999999 (not a multiple of 0.1)
            yield '{"status":"Accepted","connectorId":%d,"scheduleStart":"%s","chargingSchedule":' \
                  '{"duration":%d,"startSchedule":"%s","chargingRateUnit":"%s","chargingSchedulePeriod":[' % (
                      cid, clock.iso(now), p["duration"], clock.iso(now), unit)
            for i, (o, limit, n) in enumerate(periods):
                yield '%s{"startPeriod":%d,"limit":%.1f,"numberPhases":%d}' % ("," if i else "", o, limit, n)
            yield "]}}"
        return answer

    # ---- Local Auth List Management -------------------------------------------
    def get_local_list_version(p):
        # §5.10: 0 for an empty list, -1 while the list is disabled.
        return {"listVersion": station.auth.list_version()}

    def send_local_list(p):
        # §5.15
        status = station.auth.send_list(p["listVersion"], p["updateType"] == "Full",
                                        p.get("localAuthorizationList") or ())
        return {"status": status}

    # ---- Reservation -----------------------------------------------------------
    def reserve_now(p):
        # §5.13
        expiry = clock.parse(p["expiryDate"])
        status = station.reserve(p["reservationId"], p["connectorId"], expiry, p["idTag"], p.get("parentIdTag"))
        return {"status": status}

    def cancel_reservation(p):
        # §5.1
        return {"status": "Accepted" if station.cancel_reservation(p["reservationId"]) else "Rejected"}

    # ---- Firmware Management (maintenance.py runs the transfers) ---------------
    def update_firmware(p):
        # §5.19: an empty confirmation; the download starts at retrieveDate.
        # Whitepaper L01.FR.20: NotSupported once a ManufacturerRootCertificate is installed.
        from ocpp import signedfw
        signedfw.allow_plain(cp)
        at = clock.parse(p["retrieveDate"]) or clock.now()
        return {}, lambda: _start(cp.maintenance(True).request, p["location"], at,
                                  p.get("retries", _RETRIES), p.get("retryInterval", _RETRY_INTERVAL))

    def get_diagnostics(p):
        # §5.9: the name of the file that will be uploaded (none: nothing will be).
        start, stop = p.get("startTime"), p.get("stopTime")
        name = cp.maintenance(False).request(p["location"], p.get("retries", _RETRIES),
                                             p.get("retryInterval", _RETRY_INTERVAL),
                                             start and clock.parse(start), stop and clock.parse(stop))
        return {"fileName": name} if name else {}

    # ---- Remote Trigger ----------------------------------------------------------
    def trigger_message(p):
        # §5.17: the confirmation goes out before the requested message.
        status, after = cp.trigger(p["requestedMessage"], p.get("connectorId"))
        log.info("ocpp", "CSMS asks for %s: %s" % (p["requestedMessage"], status))
        return ({"status": status}, after) if after else {"status": status}

    return {
        "DataTransfer": session.data_transfer,
        "ChangeConfiguration": change_configuration,
        "GetConfiguration": get_configuration,
        "RemoteStartTransaction": remote_start,
        "RemoteStopTransaction": remote_stop,
        "ChangeAvailability": change_availability,
        "UnlockConnector": unlock_connector,
        "Reset": reset,
        "ClearCache": clear_cache,
        "GetLocalListVersion": get_local_list_version,
        "SendLocalList": send_local_list,
        "ReserveNow": reserve_now,
        "CancelReservation": cancel_reservation,
        "TriggerMessage": trigger_message,
        "UpdateFirmware": update_firmware,
        "GetDiagnostics": get_diagnostics,
        "SetChargingProfile": set_charging_profile,
        "ClearChargingProfile": clear_charging_profile,
        "GetCompositeSchedule": get_composite_schedule,
        # Security whitepaper: the code lives in modules imported at the first such CALL
        "GetLog": _on_demand(cp, "secext", "get_log"),  # N01
        "ExtendedTriggerMessage": _on_demand(cp, "secext", "extended_trigger"),
        "InstallCertificate": _on_demand(cp, "certops", "install"),  # M05
        "GetInstalledCertificateIds": _on_demand(cp, "certops", "ids"),  # M03
        "DeleteCertificate": _on_demand(cp, "certops", "delete"),  # M04
        "SignedUpdateFirmware": _on_demand(cp, "ocpp.signedfw", "signed_update_firmware"),  # L01
        "CertificateSigned": _on_demand(cp, "certsign", "certificate_signed"),  # A02, A03
    }


def _on_demand(cp, module, name):
    # A handler whose code lies in ocpp/v16/<module>.py (or the module named in
    # full: the signature rules both versions share): imported at its first call.
    if "." not in module:
        module = "ocpp.v16." + module

    def handler(p):
        m = __import__(module, None, None, (name,), 0)
        return getattr(m, name)(cp, p)
    return handler


async def _start(fn, *args):
    # After the confirmation: the first status notification follows it.
    fn(*args)
