#!/usr/bin/env python3
"""A forward protocol server for the forward output's tests.

Speaks Fluentd's forward protocol v1 (Message, Forward, PackedForward and
CompressedPackedForward with gzip), acks `{"ack": chunk}`, and can be told
to misbehave: withhold the first N acks, ack the first N messages with
another chunk id, close the connection instead of acking the first N
messages, or require the handshake (shared key and
users). Every message received is logged as one JSON line:

  {"server": name, "conn": n, "tag": t, "chunk": c, "size": s,
   "compressed": z, "acked": bool, "events": [[secs, nanos, record], ...]}

Prints `READY <port>` on stdout once it listens.
"""

import argparse
import gzip
import hashlib
import json
import os
import socket
import sys
import threading

import msgpack


def ext_hook(code, data):
    if code == 0 and len(data) == 8:
        return ("eventtime", int.from_bytes(data[:4], "big"), int.from_bytes(data[4:], "big"))
    return msgpack.ExtType(code, data)


def split_time(t):
    if isinstance(t, tuple) and t and t[0] == "eventtime":
        return t[1], t[2]
    if isinstance(t, int):
        return t, 0
    if isinstance(t, float):
        s = int(t)
        return s, int(round((t - s) * 1e9))
    if isinstance(t, list) and t:
        return split_time(t[0])
    raise ValueError("bad time %r" % (t,))


def jsonable(v):
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, dict):
        return {jsonable(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [jsonable(x) for x in v]
    if isinstance(v, msgpack.ExtType):
        return {"ext": v.code, "hex": v.data.hex()}
    return v


def hexdigest(*parts):
    h = hashlib.sha512()
    for p in parts:
        h.update(p if isinstance(p, bytes) else p.encode())
    return h.hexdigest()


class Server:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.messages = 0
        self.conns = 0
        self.log = open(args.log, "a", buffering=1)
        self.users = {}
        for u in args.user or []:
            name, _, pw = u.partition(":")
            self.users[name] = pw

    def record(self, entry):
        with self.lock:
            self.log.write(json.dumps(entry) + "\n")
            self.log.flush()

    def next_message(self):
        with self.lock:
            self.messages += 1
            return self.messages

    def handshake(self, sock, unpacker):
        nonce = os.urandom(16)
        auth = os.urandom(16) if self.users else b""
        sock.sendall(msgpack.packb(["HELO", {"nonce": nonce, "auth": auth, "keepalive": True}]))
        ping = next_value(sock, unpacker)
        if ping is EOF or not isinstance(ping, list) or len(ping) < 4:
            return False
        ping = [p.encode() if isinstance(p, str) else p for p in ping]
        _, hostname, salt, digest = ping[:4]
        username = ping[4] if len(ping) > 4 else b""
        pw_digest = ping[5] if len(ping) > 5 else b""
        key = self.args.shared_key
        reason = ""
        if hexdigest(salt, hostname, nonce, key) != digest.decode():
            reason = "shared_key mismatch"
        elif self.users:
            pw = self.users.get(username.decode())
            if pw is None or hexdigest(auth, username, pw) != pw_digest.decode():
                reason = "username/password mismatch"
        ok = reason == ""
        server_digest = hexdigest(salt, self.args.hostname, nonce, key) if ok else ""
        sock.sendall(msgpack.packb(["PONG", ok, reason, self.args.hostname, server_digest]))
        self.record({"server": self.args.hostname, "handshake": ok, "reason": reason,
                     "client": hostname.decode()})
        return ok

    def serve(self, sock):
        with self.lock:
            self.conns += 1
            conn_no = self.conns
        unpacker = msgpack.Unpacker(raw=False, ext_hook=ext_hook, strict_map_key=False)
        try:
            if self.args.shared_key is not None and not self.handshake(sock, unpacker):
                return
            while True:
                msg = next_value(sock, unpacker)
                if msg is EOF:
                    return
                if not isinstance(msg, list):
                    continue  # heartbeat (nil) or junk
                n = self.next_message()
                tag, events, opt = decode(msg)
                entry = {"server": self.args.hostname, "conn": conn_no, "tag": tag,
                         "chunk": opt.get("chunk"), "size": opt.get("size"),
                         "compressed": opt.get("compressed"), "events": events}
                if n <= self.args.close_first:
                    entry["acked"] = False
                    self.record(entry)
                    return
                ack = opt.get("chunk") is not None and n > self.args.withhold_acks
                if ack and n <= self.args.wrong_acks:
                    entry["acked"] = False
                    self.record(entry)
                    sock.sendall(msgpack.packb({"ack": "not-" + str(opt["chunk"])}))
                    continue
                entry["acked"] = ack
                self.record(entry)
                if ack:
                    sock.sendall(msgpack.packb({"ack": opt["chunk"]}))
                    if self.args.close_after_ack:
                        return
        except (ConnectionError, OSError):
            return
        finally:
            try:
                sock.close()
            except OSError:
                pass


EOF = object()


def next_value(sock, unpacker):
    while True:
        try:
            return next(unpacker)
        except StopIteration:
            pass
        data = sock.recv(65536)
        if not data:
            return EOF
        unpacker.feed(data)


def decode(msg):
    tag = msg[0]
    second = msg[1]
    opt = {}
    events = []
    if isinstance(second, (bytes, str)):
        opt = msg[2] if len(msg) > 2 else {}
        body = second.encode() if isinstance(second, str) else second
        if opt.get("compressed") == "gzip":
            body = gzip.decompress(body)
        u = msgpack.Unpacker(raw=False, ext_hook=ext_hook, strict_map_key=False)
        u.feed(body)
        for t, r in u:
            s, ns = split_time(t)
            events.append([s, ns, jsonable(r)])
    elif isinstance(second, list):
        opt = msg[2] if len(msg) > 2 else {}
        for t, r in second:
            s, ns = split_time(t)
            events.append([s, ns, jsonable(r)])
    else:
        opt = msg[3] if len(msg) > 3 else {}
        s, ns = split_time(second)
        events.append([s, ns, jsonable(msg[2])])
    return tag, events, opt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--hostname", default="pyserver")
    ap.add_argument("--withhold-acks", type=int, default=0,
                    help="do not ack the first N messages (the connection stays open)")
    ap.add_argument("--close-first", type=int, default=0,
                    help="close the connection instead of acking the first N messages")
    ap.add_argument("--close-after-ack", action="store_true",
                    help="close each connection after acking (a server's idle timeout)")
    ap.add_argument("--wrong-acks", type=int, default=0,
                    help="answer the first N messages with an ack for another chunk")
    ap.add_argument("--shared-key", default=None, help="require the handshake")
    ap.add_argument("--user", action="append", help="USER:PASSWORD (repeatable)")
    args = ap.parse_args()
    srv = Server(args)
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", args.port))
    ls.listen(128)
    print("READY %d" % args.port, flush=True)
    while True:
        s, _ = ls.accept()
        threading.Thread(target=srv.serve, args=(s,), daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
