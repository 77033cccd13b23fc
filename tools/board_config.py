"""A board directory like another, with other configuration defaults in its board.json.

    python tools/board_config.py boards/unix build/boards/unix-ocpp --ocpp 2.0.1 [KEY=VALUE ...]

Used by `make sim OCPP=2.0.1` and by the tests' Firmware(ocpp=...): the firmware reads
OcppVersion (the OCPP versions offered in the WebSocket handshake, preferred first) like
any key, a board default first and a stored value (console `set`, ChangeConfiguration)
over it. Only board.json is written: the firmware reads nothing else from --board.
"""
import argparse
import json
from pathlib import Path

_NAMES = {"1.6": "ocpp1.6", "16": "ocpp1.6", "2.0.1": "ocpp2.0.1", "201": "ocpp2.0.1"}


def ocpp_versions(spec):
    """"2.0.1", "2.0.1,1.6", ("ocpp2.0.1", "ocpp1.6") -> the OcppVersion value
    "ocpp2.0.1" / "ocpp2.0.1,ocpp1.6"."""
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    out = []
    for p in parts:
        p = p.strip()
        v = p[4:] if p.lower().startswith("ocpp") else p
        if v not in _NAMES:
            raise ValueError("unknown OCPP version %r: use 1.6, 2.0.1 or a list of them, preferred first" % p)
        out.append(_NAMES[v])
    if not out:
        raise ValueError("no OCPP version given")
    return ",".join(out)


def derive(board, out, **config):
    """Write out/board.json: board/board.json with `config` over its "config"; -> out."""
    data = json.loads((Path(board) / "board.json").read_text())
    data.setdefault("config", {}).update(config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=2) + "\n"
    target = out / "board.json"
    if not target.exists() or target.read_text() != text:
        target.write_text(text)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("board", help="the board directory to start from, e.g. boards/unix")
    ap.add_argument("out", help="the directory to write board.json into")
    ap.add_argument("--ocpp", help="OcppVersion: 1.6, 2.0.1, or both in order of preference (2.0.1,1.6)")
    ap.add_argument("set", nargs="*", metavar="KEY=VALUE", help="other configuration defaults")
    args = ap.parse_args()
    config = dict(kv.split("=", 1) for kv in args.set)
    if args.ocpp:
        try:
            config["OcppVersion"] = ocpp_versions(args.ocpp)
        except ValueError as e:
            ap.error(str(e))
    print(derive(args.board, args.out, **config))


if __name__ == "__main__":
    main()
