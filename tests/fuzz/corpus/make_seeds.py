#!/usr/bin/env python3
"""Writes the hand-made seeds of the program-driven fuzz targets (report, edge_heartbeat,
edge_command, stream_delivery, client_packet) into tests/fuzz/corpus/<target>/seed-*.

Each seed is a small program in the target's input format (see the comment at the top of each
fuzz_*.c). The url, spki_pin and pem seeds are plain files made by hand (pem: openssl, see
tests/fuzz/README.md). Run from anywhere: python3 tests/fuzz/corpus/make_seeds.py
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def val(v):
    """fz_val(): a byte below 0xf8 is itself; 0xf8 + k is followed by k + 1 big-endian bytes."""
    if v < 0xF8:
        return bytes([v])
    n = max(1, (v.bit_length() + 7) // 8)
    return bytes([0xF8 + n - 1]) + v.to_bytes(n, "big")


def blob(b):
    """fz_data(): a length byte (255: a u16 follows) and the bytes."""
    if len(b) < 254:
        return bytes([len(b)]) + b
    return b"\xff" + struct.pack(">H", len(b)) + b


def fill(n, byte):
    """fz_data(): n copies of byte."""
    return b"\xfe" + struct.pack(">H", n) + bytes([byte])


def frame(msg_type, payload):
    return bytes([msg_type]) + struct.pack(">I", len(payload)) + payload


def js(o):
    return json.dumps(o, separators=(",", ":")).encode()


def write(target, seeds):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, "seed-" + name), "wb") as f:
            f.write(data)


# ---- the edge's parsers (fuzz_edge.c): 0 open, 1 data, 2 data+FIN, 3 reset, 4 stop, 5 FIN,
# 6 close, 7 write pass; the stream is op >> 3 among the open ones.
def op(kind, pick=0):
    return bytes([kind | (pick << 3)])


OPEN, DATA, DATA_FIN, RESET, STOP, FIN, CLOSE, FLUSH = range(8)

HB = frame(0x01, js({"device_id": "fuzz", "timestamp": 1700000000000, "sequence": 7,
                     "vitals": {"cpu_percent": 1.5, "load_1": 0.1, "mem_available_kb": 1000,
                                "uptime_s": 42}}))


def one_stream(*chunks, fin=True, close=True):
    p = op(OPEN)
    for i, c in enumerate(chunks):
        last = i == len(chunks) - 1
        p += op(DATA_FIN if (last and fin) else DATA) + blob(c)
    if close:
        p += op(CLOSE) + val(0)
    return p + op(FLUSH)


edge_hb = {
    "whole": one_stream(HB),
    "chunks": one_stream(HB[:1], HB[1:3], HB[3:20], HB[20:]),
    "bad-type": one_stream(frame(0x02, b"{}")),
    "too-long": one_stream(b"\x01\xff\xff\xff\xff"),
    "trailing": one_stream(HB + b"x"),
    "truncated": one_stream(HB[:-3]),
    "invalid-json": one_stream(frame(0x01, b"{\"device_id\":")),
    "after-object": one_stream(frame(0x01, b"{}  x")),
    "missing": one_stream(frame(0x01, js({"device_id": "fuzz", "timestamp": -1, "sequence": 1.5,
                                          "vitals": []}))),
    "reset": op(OPEN) + op(DATA) + blob(HB[:10]) + op(RESET) + val(5) + op(CLOSE) + val(5),
    "stop": op(OPEN) + op(DATA) + blob(HB[:10]) + op(STOP) + val(16) + op(FLUSH),
    "two": op(OPEN) + op(OPEN) + op(DATA, 0) + blob(HB[:8]) + op(DATA, 1) + blob(HB[:8])
    + op(DATA_FIN, 0) + blob(HB[8:]) + op(DATA_FIN, 1) + blob(HB[8:]) + op(FLUSH),
    "big": op(OPEN) + op(DATA) + blob(b"\x01\x00\x01\x00\x00{\"v\":\"") + op(DATA) + fill(65000, 0x61)
    + op(DATA_FIN) + blob(b"\"}") + op(CLOSE) + val(0),
    "over-max": op(OPEN) + op(DATA) + blob(b"\x01\x00\x01\x00\x01") + op(DATA) + fill(40000, 0x20)
    + op(DATA) + fill(40000, 0x20),
    "many-refusals": (op(OPEN) + op(DATA_FIN) + blob(frame(0x01, b"[]")) + op(CLOSE) + val(0)) * 18
    + op(FLUSH),
}
write("edge_heartbeat", edge_hb)

edge_cmd = {
    "src": one_stream(b"SRC 100\n"),
    "src-zero": one_stream(b"SRC 0\n"),
    "sleep": one_stream(b"SLEEP 10\nbody"),
    "sleep-body": one_stream(b"SLEEP 5\n", b"x" * 600, b"y" * 600),
    "reset-hex": one_stream(b"RESET 0x10\n"),
    "reset-big": one_stream(b"RESET 4611686018427387904\n"),
    "echo": one_stream(b"hello", b" world"),
    "split-word": one_stream(b"RES", b"ET 5\n"),
    "long-line": one_stream(b"SRC " + b"1" * 70),
    "sleep-fill": op(OPEN) + op(DATA) + blob(b"SLEEP 1\n") + (op(DATA) + fill(60000, 0x41)) * 4
    + op(FIN) + op(CLOSE) + val(0),
    "no-newline": one_stream(b"SLEEP 10"),
    "overflow": one_stream(b"SRC 99999999999999999999999\n"),
    "sleep-max": one_stream(b"SLEEP 600001\n"),
    "prefix-fin": one_stream(b"SR"),
    "reset-mid": op(OPEN) + op(DATA) + blob(b"SLEEP 1\nabc") + op(RESET) + val(1) + op(STOP)
    + val(2) + op(CLOSE) + val(1),
}
write("edge_command", edge_cmd)

# ---- the device's report parser (fuzz_report.c): as above, and 7 = heartbeats:
# op 7 | what << 3 | pick << 5; what 0 send, 1 delivered, 2 refused (STOP_SENDING), 3 lost.
HB_SEND = bytes([7])


def hb(what, pick=0):
    return bytes([7 | (what << 3) | (pick << 5)])


def report(o):
    return frame(0x02, js(o))


REFUSED = {"kind": "heartbeat_refused", "stream_id": 2, "sequence": 0, "error": 16,
           "reason": "bad"}
rep = {
    "in-flight": HB_SEND + op(OPEN) + op(DATA_FIN) + blob(report(REFUSED)) + op(CLOSE) + val(0),
    "after-delivery": HB_SEND + hb(1) + val(0) + op(OPEN) + op(DATA_FIN) + blob(report(REFUSED))
    + op(CLOSE) + val(0),
    "stream-id-only": HB_SEND + HB_SEND + op(OPEN) + op(DATA_FIN)
    + blob(report({"kind": "heartbeat_refused", "stream_id": 6})) + op(CLOSE) + val(0),
    "unknown-kind": op(OPEN) + op(DATA_FIN) + blob(report({"kind": "hello"})) + op(CLOSE) + val(0),
    "bad-type": op(OPEN) + op(DATA) + blob(b"\x01\x00") + op(FIN) + op(CLOSE) + val(0),
    "too-long": op(OPEN) + op(DATA) + blob(b"\x02\x00\x01\x00\x00") + op(CLOSE) + val(0),
    "truncated": op(OPEN) + op(DATA_FIN) + blob(report(REFUSED)[:-4]) + op(CLOSE) + val(0),
    "trailing": op(OPEN) + op(DATA_FIN) + blob(report(REFUSED) + b"zz") + op(CLOSE) + val(0),
    "oversize": op(OPEN) + op(DATA) + blob(b"\x02\x00\x00\x10\x00") + op(DATA) + fill(4200, 0x20)
    + op(CLOSE) + val(0),
    "max-report": op(OPEN) + op(DATA) + blob(b"\x02\x00\x00\x10\x00{\"kind\":\"x\",\"p\":\"")
    + op(DATA) + fill(4096 - 19, 0x41) + op(DATA_FIN) + blob(b"\"}") + op(CLOSE) + val(0),
    "no-stream-id": op(OPEN) + op(DATA_FIN)
    + blob(report({"kind": "heartbeat_refused", "sequence": 1.5})) + op(CLOSE) + val(0),
    "hb-refused": HB_SEND + hb(2) + val(0) + hb(3) + val(16),
    "hb-lost": HB_SEND + HB_SEND + hb(3, 1) + val(3) + hb(1) + val(0),
    "bidi-refused": bytes([0x08]) + op(DATA) + blob(b"\x02") + op(CLOSE) + val(1),
    "chunks": HB_SEND + op(OPEN) + op(DATA) + blob(report(REFUSED)[:3]) + op(DATA)
    + blob(report(REFUSED)[3:9]) + op(DATA_FIN) + blob(report(REFUSED)[9:]) + op(RESET) + val(0)
    + op(CLOSE) + val(0),
}
write("report", rep)

# ---- requests and streams (fuzz_stream_delivery.c): 0 open (bit 3: a stream; then a behaviour
# byte, and for a request its maximum response), 1 data, 2 data+FIN, 3 RESET_STREAM,
# 4 STOP_SENDING, 5 FIN, 6 close (pick bit 4: an acknowledgement), 7 the application:
# op 7 | what << 3 | pick << 6 (0 cancel, 1 write, 2 finish, 3 reset, 4 pause, 5 resume,
# 6 write pass), then a value (not for 6).
def req(beh=0, maxr=0):
    return bytes([0, beh]) + val(maxr)


def strm(beh=0):
    return bytes([8, beh])


def app(what, pick=0):
    return bytes([7 | (what << 3) | (pick << 6)])


ACK = lambda pick=0: bytes([6 | ((16 | pick) << 3)])  # noqa: E731

sd = {
    "response": req() + op(DATA) + blob(b"hello") + op(DATA_FIN) + blob(b" world") + op(CLOSE)
    + val(0),
    "too-large": req(0, 4) + op(DATA) + blob(b"0123456789") + op(CLOSE) + val(0x11),
    "at-max": req(0, 5000) + op(DATA) + fill(4999, 0x33) + op(DATA) + blob(b"x") + op(FIN)
    + op(CLOSE) + val(0),
    "paused-big": strm(1) + op(DATA) + fill(30000, 0x34) + op(DATA) + fill(30000, 0x35)
    + app(5) + val(0) + op(FIN),
    "peer-reset": req() + op(DATA) + blob(b"part") + op(RESET) + val(9) + op(CLOSE) + val(9),
    "stop-then-fin": req() + op(STOP) + val(0) + op(DATA_FIN) + blob(b"ok") + op(CLOSE) + val(0),
    "cancel": req() + app(0) + val(0) + op(DATA_FIN) + blob(b"late"),
    "stream": strm() + op(DATA) + blob(b"abc") + op(FIN) + app(2) + val(0) + op(CLOSE) + val(0),
    "paused": strm(1) + op(DATA) + blob(b"abc") + op(DATA_FIN) + blob(b"def") + op(CLOSE)
    + val(0) + app(5) + val(0),
    "reset-in-data": strm(2) + op(DATA) + blob(b"x") + op(DATA) + blob(b"y"),
    "echo-acked": strm(4 | 64) + op(DATA) + blob(b"ping" * 20) + app(6) + ACK() + val(40)
    + ACK() + val(200),
    "backpressure": strm(64) + app(1) + val(8000) + app(1) + val(8000) + app(6) + ACK()
    + val(4000),
    "stream-stop": strm() + op(STOP) + val(3) + app(1) + val(10) + op(CLOSE) + val(3),
    "nested": req(2) + req(1) + req() + op(DATA_FIN, 0) + blob(b"a") + op(DATA_FIN, 1)
    + blob(b"b") + app(6),
    "pause-resume": strm(1 | 8) + op(DATA) + blob(b"1") + app(5) + val(0) + op(DATA)
    + blob(b"2") + app(4) + val(0) + app(5) + val(0) + op(FIN),
    "end-finish": strm(16 | 32 | 128) + op(DATA_FIN) + blob(b"bye"),
}
write("stream_delivery", sd)

# ---- packets into the tunnel (fuzz_client_packet.c): a setup byte, then op % 25; op + 125
# selects a frame's second variant. Stream operands: 0x00 | i the tunnel's i-th bidirectional
# stream, 0x47 a new edge unidirectional stream, 0x40 | k an earlier one, 0x80 + value any id.
PAD, PING, ACKF, RST, STOPF, CRYPTO, TOKEN, STREAM = range(8)
MAXDATA, MAXSD, MAXSTREAMS, DBLOCK, SDBLOCK, SBLOCK, NCID, RCID = range(8, 16)
PCHAL, PRESP, CCLOSE, HSDONE, DGRAM, RAW, END, RAWDG, APP = range(16, 25)


def stream_f(sel, data, fin=False, off=None):
    f = (1 if fin else 0) | (2 if off is not None else 0)
    b = bytes([STREAM, sel, f, len(data)])
    if off is not None:
        b += val(off)
    return b + data


def ack(below=0, first=0, delay=0, ranges=(), ecn=None):
    b = bytes([ACKF + (125 if ecn else 0)]) + val(below) + val(first) + val(delay)
    b += bytes([len(ranges)])
    for g, l in ranges:
        b += val(g) + val(l)
    if ecn:
        b += b"".join(val(x) for x in ecn)
    return b


REPORT = report(REFUSED)
cp = {
    "response": b"\x01" + bytes([PING]) + ack() + stream_f(0x00, b"hello", fin=True),
    "chunks": b"\x01" + stream_f(0x00, b"he") + bytes([END, 0]) + stream_f(0x00, b"llo", fin=True,
                                                                         off=2),
    "report": b"\x00" + stream_f(0x47, REPORT[:20]) + stream_f(0x40, REPORT[20:], fin=True),
    "stream-reset": b"\x04" + stream_f(0x00, b"data") + bytes([RST, 0x00]) + val(7)
    + bytes([STOPF, 0x00]) + val(8),
    "reset-final": b"\x01" + bytes([RST + 125, 0x00]) + val(1) + val(100),
    "flow": b"\x05" + bytes([MAXDATA]) + val(1 << 24) + bytes([MAXSD, 0x00]) + val(1 << 20)
    + bytes([MAXSTREAMS]) + val(200) + bytes([MAXSTREAMS + 125]) + val(20) + bytes([DBLOCK])
    + val(5) + bytes([SDBLOCK, 0x00]) + val(5) + bytes([SBLOCK]) + val(3),
    "cids": b"\x00" + bytes([NCID]) + val(2) + val(0) + bytes([8]) + b"\x11" * 8 + b"\x22" * 16
    + bytes([NCID]) + val(3) + val(2) + bytes([8]) + b"\x33" * 8 + b"\x44" * 16 + bytes([RCID])
    + val(1),
    "path": b"\x00" + bytes([PCHAL]) + b"12345678" + bytes([PRESP]) + b"abcdefgh"
    + bytes([END, 4]) + bytes([PING]),
    "misc": b"\x00" + bytes([TOKEN, 4]) + b"tokn" + bytes([HSDONE]) + bytes([CRYPTO]) + val(0)
    + bytes([4]) + b"\x04\x00\x00\x00",
    "close": b"\x01" + bytes([CCLOSE]) + val(0) + val(0) + bytes([3]) + b"bye",
    "app-close": b"\x00" + bytes([CCLOSE + 125]) + val(0x10) + bytes([2]) + b"no",
    "key-update": b"\x01" + bytes([PING, END, 1, PING, END, 0]) + stream_f(0x00, b"k", fin=True),
    "datagram": b"\x00" + bytes([DGRAM, 3]) + b"dgm",
    "raw": b"\x00" + bytes([RAW, 3]) + b"\x1e\x01\x00" + bytes([RAWDG, 5]) + b"\x40junk"
    + bytes([RAWDG + 125, 40]) + b"\x00" * 40,
    "ack-ranges": b"\x01" + ack(0, 0, 10, ((0, 0), (1, 0)), ecn=(1, 0, 0)),
    "ecn-reserved": b"\x00" + bytes([PING, END, 0x08, PING, END, 0x02, PING, END, 0x20]),
    "app": b"\x00" + bytes([APP, 0, APP, 1]) + stream_f(0x00, b"x", fin=True)
    + stream_f(0x01, b"y") + bytes([APP, 2 | (1 << 3)]) + struct.pack(">H", 100)
    + bytes([APP, 6]),
    "padding": b"\x00" + bytes([PAD, 40, PING]),
}
write("client_packet", cp)

# ---- packets into the edge (fuzz_client_packet.c built as fuzz_edge_packet): the same operations;
# stream operands 0x20 a new request stream, 0x00 | i an existing one, 0x47 a new heartbeat stream,
# 0x40 | k an earlier one, 0xc0 the edge's first report stream.
MORE = bytes([MAXDATA]) + val(1 << 30) + bytes([MAXSD, 0x00]) + val(1 << 30)
ep = {
    "echo": b"\x00" + stream_f(0x20, b"hello", fin=True) + bytes([END, 0]) + ack(),
    "src": b"\x00" + stream_f(0x20, b"SRC 20000\n", fin=True) + bytes([END, 0]) + MORE
    + bytes([END, 0]) + ack(0, 3) + bytes([END, 0]) + ack(0, 10),
    "sleep": b"\x00" + stream_f(0x20, b"SLEEP 1\nbody", fin=True),
    "reset": b"\x00" + stream_f(0x20, b"RESET 0x10\n", fin=True) + bytes([END, 0]) + ack(),
    "split": b"\x00" + stream_f(0x20, b"SR") + bytes([END, 0]) + stream_f(0x00, b"C 9\n", fin=True),
    "heartbeat": b"\x00" + stream_f(0x47, HB[:30]) + bytes([END, 0]) + stream_f(0x40, HB[30:],
                                                                             fin=True),
    "refused": b"\x00" + bytes([MAXSTREAMS + 125]) + val(8) + stream_f(0x47, frame(0x01, b"[]"),
                                                                     fin=True)
    + bytes([END, 0]) + ack() + bytes([STOPF, 0xC0]) + val(16) + bytes([END, 0]) + ack(0, 2),
    "report": b"\x00" + bytes([MAXSTREAMS + 125]) + val(8) + bytes([APP, 4]) + b"{\"k\":1}"
    + bytes([END, 0]) + ack(0, 1),
    "stream-reset": b"\x00" + stream_f(0x20, b"abc") + bytes([RST, 0x00]) + val(5)
    + bytes([STOPF, 0x00]) + val(6),
    "migrate": b"\x00" + bytes([PING, END, 4, PCHAL]) + b"12345678" + bytes([END, 4]),
    "cids": b"\x00" + bytes([NCID]) + val(1) + val(0) + bytes([8]) + b"\x55" * 8 + b"\x66" * 16
    + bytes([RCID]) + val(1),
    "close": b"\x00" + bytes([CCLOSE + 125]) + val(0) + bytes([0]),
    "raw": b"\x00" + bytes([RAWDG + 125, 30]) + b"\x11" * 30,
}
write("edge_packet", ep)
