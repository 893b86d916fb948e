"""Hand protobuf encoding for the grpcio interop scripts: a few fields each, so no generated
code (and no protoc) is needed to prove the services answer an outside client."""
import json


def ident(b):
    return b


def varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_varint(data, i):
    shift = value = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def fields(data):
    """(number, value) pairs: ints for varints, bytes for length-delimited fields."""
    i, out = 0, []
    while i < len(data):
        key, i = read_varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = read_varint(data, i)
        elif wire == 2:
            length, i = read_varint(data, i)
            value, i = data[i:i + length], i + length
        else:
            raise ValueError("unexpected wire type %d" % wire)
        out.append((number, value))
    return out


def field(number, payload):
    """A length-delimited field (string or message)."""
    if isinstance(payload, str):
        payload = payload.encode()
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def report(case, ok, **details):
    """One JSON line per case, as the Swift side reads them."""
    print(json.dumps(dict(case=case, ok=ok, **details)), flush=True)
