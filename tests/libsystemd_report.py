"""What libsystemd makes of the passed fds: run by Debian's /usr/bin/python3
with python3-systemd (systemd-python), whose listen_fds_with_names() calls
sd_listen_fds_with_names(unset_environment=1). Prints a JSON report shaped like
child_report.py's (the same keys, where both have them)."""

import ctypes
import json

from systemd import daemon

VARS = ("LISTEN_PID", "LISTEN_PIDFDID", "LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_FDS_FIRST_FD")
libc = ctypes.CDLL(None)
libc.getenv.restype = ctypes.c_char_p

report = {}
try:
    names = daemon.listen_fds_with_names(unset_environment=True)
except OSError as exc:
    report["error"] = exc.errno
else:
    report["sockets"] = [{"fd": fd, "name": name} for fd, name in sorted(names.items())]
# libsystemd unsets in the C environment (os.environ is a snapshot).
report["c_environ"] = {v: libc.getenv(v.encode()).decode() for v in VARS if libc.getenv(v.encode())}
print(json.dumps(report))
