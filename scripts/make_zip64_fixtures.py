#!/usr/bin/env python3
"""ZIP64 variants of Tests/Fixtures/torch/valid.bin, for the zip reader's ZIP64 path.

A pytorch_model.bin over 4 GiB (mamba2-2.7b's is 5.4 GB) is a ZIP64 archive: its central
directory entries carry their sizes and offsets in a ZIP64 extra field, and its end record
points to a ZIP64 end record through a locator. This script rewrites the small valid.bin
(made by torch.save in scripts/make_torch_fixtures.py) with Python's zipfile writing every ZIP64
structure it has (the first entry's offset, 0, stays classic): the limit under which zipfile
writes classic fields is set to 0, and the classic end record's fields are then set to their
"see ZIP64" values (0xFFFF, 0xFFFFFFFF), as they are in an archive too large for them.

Writes
  Tests/Fixtures/torch/zip64.bin              the same tensors as valid.bin, in a ZIP64 archive
  Tests/Fixtures/torch/zip64-bad-locator.bin  the same, its locator pointing past the file's end
  Tests/Fixtures/torch/zip64-short-extra.bin  the same, the last entry's ZIP64 extra field
                                              declared 8 bytes too short for its three values

Usage (repository root): python3 scripts/make_zip64_fixtures.py
Requires: Python 3 (standard library only; 3.11.7 made the committed files). Two runs with one
Python version give byte-identical files.
"""
import os
import struct
import zipfile

TORCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "torch")


def zip64_copy(source, target):
    limit = zipfile.ZIP64_LIMIT
    zipfile.ZIP64_LIMIT = 0  # every size and offset above it: all written in ZIP64 form
    try:
        with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zout:
            for info in zin.infolist():
                entry = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
                with zout.open(entry, "w", force_zip64=True) as out:
                    out.write(zin.read(info.filename))
    finally:
        zipfile.ZIP64_LIMIT = limit
    with open(target, "r+b") as f:
        data = bytearray(f.read())
        eocd = data.rindex(b"PK\x05\x06")
        assert data[eocd - 20 : eocd - 16] == b"PK\x06\x07", "no ZIP64 locator before the end record"
        # Entries on this disk, entries in all, directory size, directory offset: "see ZIP64".
        struct.pack_into("<HHII", data, eocd + 8, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
        f.seek(0)
        f.write(data)
    return data


def main():
    valid = os.path.join(TORCH, "valid.bin")
    data = zip64_copy(valid, os.path.join(TORCH, "zip64.bin"))
    locator = data.rindex(b"PK\x06\x07")
    bad = bytearray(data)
    struct.pack_into("<Q", bad, locator + 8, len(bad) + 1000)  # the ZIP64 end record's offset
    with open(os.path.join(TORCH, "zip64-bad-locator.bin"), "wb") as f:
        f.write(bad)
    short = bytearray(data)
    entry = short.rindex(b"PK\x01\x02")
    name_length, extra_length = struct.unpack_from("<HH", short, entry + 28)
    field = entry + 46 + name_length
    assert struct.unpack_from("<HH", short, field) == (0x0001, 24) and extra_length >= 28
    struct.pack_into("<H", short, field + 2, 16)
    with open(os.path.join(TORCH, "zip64-short-extra.bin"), "wb") as f:
        f.write(short)
    with zipfile.ZipFile(os.path.join(TORCH, "zip64.bin")) as z:
        assert z.testzip() is None
        print(len(z.infolist()), "entries")


if __name__ == "__main__":
    main()
