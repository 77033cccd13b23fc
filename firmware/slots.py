# The boot stage: main.py runs boot(), which picks the application to run and
# starts it. An installed update lives in a slot, <flash>/app/a or <flash>/app/b
# (update.py puts it there); without one the built-in application runs (the
# frozen modules, the files `make deploy` copied, on the unix port the
# checkout's firmware/). This module and trial.py are part of the built-in
# firmware and no update replaces them (tools/bundle.py leaves them out), so
# this API stays put: confirm(), outcome(), clear_outcome(), running_version().
#
# It is imported at every boot, so it is only this: without <flash>/app/state
# (no update was ever installed, or its outcome was reported) nothing else is
# imported; with it, trial.py picks the slot, tries a new one once and rolls
# back one that does not confirm.
import sys
import os

RESTART_EXIT = 75  # the unix port's "start me again" (app.RESTART_EXIT)

root = None  # the flash: "/flash" on the unix port (mounted here), "" on a board


def unix():
    return sys.platform in ("linux", "darwin")


def flash():
    return root if root is not None else "/flash" if unix() else ""


def base():
    # The slots' directory.
    return flash() + "/app"


def _trial():
    # -> trial.py when there is an update state (it keeps it), else None.
    t = sys.modules.get("trial")
    if t is None:
        try:
            os.stat(base() + "/state")
        except OSError:
            return None
        import trial as t
    return t


def _mount():
    # -> the flash root, or None on a unix port without --data (no slots).
    if not unix():
        return ""
    a = sys.argv
    if "--data" not in a[:-1]:
        return None
    from hw import unixflash
    try:
        return unixflash.mount(a[a.index("--data") + 1])
    except Exception:
        return None  # the application mounts it again and says why it cannot


def boot():
    global root
    root = _mount()
    t = _trial() if root is not None else None
    if t:
        return t.boot()
    import app
    app.main()


def confirm():
    # The application's BootNotification was Accepted: an update on trial
    # runs from now on. Costs nothing when there is none.
    t = sys.modules.get("trial")
    if t:
        t.confirm()


def outcome():
    # -> None, ("Installed", version) or ("InstallationFailed", why): the
    # last update's result, until clear_outcome() (once it was reported).
    t = _trial()
    return t.outcome() if t else None


def clear_outcome():
    t = _trial()
    if t:
        t.clear_outcome()


def running_version():
    import version
    return version.VERSION
