#!/usr/bin/env python3
"""Writes tests/corpus/safetensors/: malformed safetensors files (bad-*) that clquant must reject
with a FormatError within a second, and well-formed ones (good-*) it must accept. The files are
checked in (they seed the fuzz target); run this again after adding a case.
"""
import json
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "safetensors")


def image(header, data=b"", hlen=None):
    if isinstance(header, str):
        header = header.encode("utf-8")
    n = len(header) if hlen is None else hlen
    return struct.pack("<Q", n) + header + data


def entry(dtype="F32", shape=(1,), off=(0, 4)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(off)}


ONE = '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
D4 = b"\x00\x00\x80\x3f"

cases = {
    # length field and size
    "bad-short-file": b"\x05\x00\x00",
    "bad-hlen-past-end": image(ONE, D4, hlen=1000),
    "bad-hlen-over-limit": image(ONE, D4, hlen=100_000_001),
    "bad-hlen-zero": image(b"", b""),
    # encoding
    "bad-bom": image(b"\xef\xbb\xbf" + ONE.encode(), D4),
    "bad-utf8-overlong": image('{"a\xc0\xaf":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'.encode("latin-1"), D4),
    "bad-utf8-surrogate": image(b'{"\xed\xa0\x80":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', D4),
    "bad-utf8-truncated": image(b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"\xe2\x82":1}', D4),
    "bad-lone-surrogate-escape": image('{"\\ud800":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', D4),
    "bad-control-in-string": image('{"a\x01":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', D4),
    # bytes after the JSON
    "bad-nul-then-junk": image(ONE.encode() + b"\x00garbage", D4),
    "bad-trailing-nul": image(ONE.encode() + b"\x00\x00\x00", D4),
    "bad-second-object": image(ONE + "{}", D4),
    "bad-not-object": image("[1,2]"),
    "bad-leading-space": image(" " + ONE, D4),
    "bad-unclosed": image('{"a":'),
    # duplicates
    "bad-duplicate-name": image(
        '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}',
        D4 * 2),
    "bad-duplicate-field": image('{"a":{"dtype":"F32","shape":[1],"shape":[1],"data_offsets":[0,4]}}', D4),
    "bad-duplicate-dtype": image('{"a":{"dtype":"F16","dtype":"F32","shape":[1],"data_offsets":[0,4]}}', D4),
    "bad-duplicate-metadata": image('{"__metadata__":{},"__metadata__":{},' + ONE[1:], D4),
    "bad-duplicate-metadata-key": image('{"__metadata__":{"k":"1","k":"2"},' + ONE[1:], D4),
    # schema
    "bad-unknown-dtype": image('{"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,4]}}', D4),
    "bad-no-dtype": image('{"a":{"shape":[1],"data_offsets":[0,4]}}', D4),
    "bad-shape-negative": image('{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}', D4),
    "bad-shape-float": image('{"a":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}}', D4),
    "bad-shape-exponent": image('{"a":{"dtype":"F32","shape":[1e0],"data_offsets":[0,4]}}', D4),
    "bad-shape-string": image('{"a":{"dtype":"F32","shape":["1"],"data_offsets":[0,4]}}', D4),
    "bad-shape-huge-literal": image('{"a":{"dtype":"F32","shape":[' + "9" * 5000 + '],"data_offsets":[0,4]}}', D4),
    "bad-shape-overflow": image('{"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}}', D4 * 2),
    "bad-shape-overflow-with-zero": image(
        '{"a":{"dtype":"I32","shape":[4611686018427387904,4611686018427387904,0],"data_offsets":[0,0]}}'),
    "bad-shape-2p63": image('{"a":{"dtype":"U8","shape":[9223372036854775808,0],"data_offsets":[0,0]}}'),
    "bad-offsets-one": image('{"a":{"dtype":"F32","shape":[1],"data_offsets":[4]}}', D4),
    "bad-offsets-three": image('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}', D4),
    "bad-offsets-reversed": image('{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}', D4),
    "bad-offsets-past-end": image('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,400]}}', D4),
    "bad-offsets-u64-overflow": image('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551616]}}', D4),
    "bad-size-mismatch": image('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', D4 * 2),
    "bad-gap": image(
        '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}',
        D4 * 3),
    "bad-overlap": image(
        '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}',
        D4 * 2),
    "bad-trailing-data": image(ONE, D4 * 2),
    "bad-metadata-number": image('{"__metadata__":{"k":1},' + ONE[1:], D4),
    "bad-metadata-list": image('{"__metadata__":[],' + ONE[1:], D4),
    "bad-entry-not-object": image('{"a":[1,2]}'),
    # nesting: a shape nested 100,000 deep once crashed the error message's recursive dump()
    "bad-deep-shape": image('{"a":{"dtype":"F32","shape":' + "[" * 100_000 + "1" + "]" * 100_000 +
                            ',"data_offsets":[0,4]}}', D4),
    "bad-deep-unknown-field": image('{"a":{"dtype":"F32","x":' + "[" * 10_000 + "]" * 10_000 +
                                    ',"shape":[1],"data_offsets":[0,4]}}', D4),
    "bad-deep-unclosed": image('{"a":{"x":' + "{\"k\":" * 10_000),
}

good = {
    "good-one": image(ONE, D4),
    "good-padded": image(ONE + "   ", D4),
    "good-empty-header": image("{}"),
    "good-empty-tensor": image('{"z":{"dtype":"I32","shape":[0],"data_offsets":[0,0]},'
                               '"a":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}}', b"\x38\x7e\x01\x02"),
    "good-metadata-escapes": image('{"__metadata__":{"format":"pt","n\\u00e9":"\\ud83d\\ude00\\n"},' + ONE[1:], D4),
    "good-unknown-field": image('{"a":{"dtype":"F32","extra":{"x":[1,2.5e3,null,true]},"shape":[1],'
                                '"data_offsets":[0,4]}}', D4),
    "good-scalar": image('{"s":{"dtype":"BF16","shape":[],"data_offsets":[0,2]}}', b"\x80\x3f"),
}

os.makedirs(OUT, exist_ok=True)
for name in os.listdir(OUT):
    if name.endswith(".safetensors"):
        os.remove(os.path.join(OUT, name))
for name, data in {**cases, **good}.items():
    with open(os.path.join(OUT, name + ".safetensors"), "wb") as f:
        f.write(data)
print(f"wrote {len(cases)} bad and {len(good)} good files to {OUT}")
