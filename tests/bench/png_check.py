#!/usr/bin/python3
"""Checks a screenshot of the bench's HTML report: both plots are drawn, i.e. each half of the
page (throughput left, latency right) holds pixels of the first two series' colours. Standard
library only (zlib): decodes 8-bit RGB/RGBA PNGs.

    png_check.py shot.png"""
import struct
import sys
import zlib


def read_png(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6), f"unsupported PNG (depth {depth}, type {color})"
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, prev = [], bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, channels, rows


def main():
    width, height, channels, rows = read_png(sys.argv[1])
    colors = {"#1f77b4": (0x1F, 0x77, 0xB4), "#d62728": (0xD6, 0x27, 0x28)}
    found = {}
    for y in range(0, height):
        row = rows[y]
        for x in range(0, width):
            px = row[x * channels:x * channels + 3]
            for name, rgb in colors.items():
                if all(abs(px[k] - rgb[k]) < 24 for k in range(3)):
                    half = "left" if x < 740 else "right"
                    found[(name, half)] = found.get((name, half), 0) + 1
    print("series pixels:", found)
    missing = [(n, h) for n in colors for h in ("left", "right") if found.get((n, h), 0) < 50]
    if missing:
        print("missing series pixels in", missing)
        sys.exit(1)


main()
