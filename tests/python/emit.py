"""Sends events to fuwa with the real PyPI `fluent-logger` client.

Run by tests/clients.rs:

    python emit.py --host 127.0.0.1 --port 24224 --tag py.sync --count 50 \
        --sender sync|async --time int|float|eventtime [--nanosecond-precision]

With --nanosecond-precision a float time goes out as an EventTime; without,
as a msgpack float64.

Event i is {"i": i, "msg": "python #i", "client": <sender>, ...} with a time
from `event_time(i)` below (tests/clients.rs computes the same times).
Prints one line per event, `sent <i> <secs> <nanos>`, giving the time as
the client encoded it, then `done <count>`. Exits 0 only if the client
reported no failure. A hard alarm ends the script if it hangs.
"""

import argparse
import os
import signal
import struct
import sys

import msgpack
from fluent import asyncsender, sender

BASE = 1_700_000_000


def event_time(i, mode):
    """The time given to emit_with_time for event i."""
    if mode == "int":
        return BASE + i
    if mode == "float":
        # k/512 is exact in binary and k * 1953125 ns is exact in decimal, so
        # the float the client turns into an EventTime has exact nanoseconds
        # (e.g. .001953125), finer than microseconds.
        k = (i * 37 + 1) % 512
        return BASE + i + k / 512
    if mode == "eventtime":
        # an explicit EventTime: any nanoseconds at all
        return sender.EventTime(BASE + i, 123_456_789 + i)
    raise ValueError(mode)


def on_alarm(signum, frame):
    print("emit.py: timed out (fuwa did not take the events?)", file=sys.stderr)
    sys.stderr.flush()
    os._exit(124)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default=os.environ.get("FUWA_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("FUWA_PORT", "24224")))
    p.add_argument("--tag", default=os.environ.get("FUWA_TAG", "py"))
    p.add_argument("--count", type=int, default=int(os.environ.get("FUWA_COUNT", "50")))
    p.add_argument("--sender", choices=["sync", "async"], default="sync")
    p.add_argument("--time", choices=["int", "float", "eventtime"], default="int")
    p.add_argument("--nanosecond-precision", action="store_true")
    p.add_argument("--timeout", type=int, default=20, help="hard limit, seconds")
    a = p.parse_args()

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(a.timeout)

    failures = []

    def overflow(pending):
        failures.append("buffer overflow handler called with %d bytes" % len(pending))

    mod = asyncsender if a.sender == "async" else sender
    s = mod.FluentSender(
        a.tag,
        host=a.host,
        port=a.port,
        timeout=5.0,
        nanosecond_precision=a.nanosecond_precision,
        buffer_overflow_handler=overflow,
    )
    for i in range(a.count):
        t = event_time(i, a.time)
        record = {
            "i": i,
            "msg": "python #%d" % i,
            "client": "python-" + a.sender,
            "unicode": "ふわ ✓",
            "nested": {"list": [1, 2.5, None, True], "n": -i},
        }
        if not s.emit_with_time(None, t, record):
            failures.append("emit %d returned False: %r" % (i, s.last_error))
        # what went over the wire, as the client encodes it
        packed = s._make_packet(None, t, record)
        _tag, wire_time, _rec = msgpack.unpackb(packed, raw=False, strict_map_key=False)
        if isinstance(wire_time, msgpack.ExtType):
            assert wire_time.code == 0, wire_time
            secs, nanos = struct.unpack(">II", wire_time.data)
        elif isinstance(wire_time, int):
            secs, nanos = wire_time, 0
        elif isinstance(wire_time, float):
            # without nanosecond_precision a float goes out as msgpack float64
            secs, nanos = int(wire_time), int(wire_time % 1 * 10**9)
        else:
            failures.append("unexpected wire time %r" % (wire_time,))
            secs, nanos = -1, -1
        print("sent %d %d %d" % (i, secs, nanos))
    s.close()
    if a.sender == "async" and s.pendings:
        # the async sender keeps what it could not send in `pendings`
        failures.append("%d bytes never sent" % len(s.pendings))
    if a.sender == "sync" and s.last_error is not None:
        failures.append("last_error: %r" % (s.last_error,))
    for f in failures:
        print("emit.py: " + f, file=sys.stderr)
    print("done %d" % a.count)
    sys.stdout.flush()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
