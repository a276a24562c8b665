#!/usr/bin/env python3
"""Flash (.text + .rodata) and static RAM (.data + .bss) of 32-bit little-endian ELF files (what `size` reports, without needing
binutils for the target). usage: elf-size.py ELF... ; prints `name flash ram` per file."""
import struct
import sys


def sections(path):
    data = open(path, "rb").read()
    assert data[:4] == b"\x7fELF" and data[4] == 1, f"{path}: not a 32-bit ELF"
    shoff, = struct.unpack_from("<I", data, 0x20)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x2E)
    headers = [struct.unpack_from("<IIIIIIIIII", data, shoff + i * shentsize) for i in range(shnum)]
    strtab = headers[shstrndx]
    names = data[strtab[4]:strtab[4] + strtab[5]]
    for h in headers:
        name = names[h[0]:names.index(b"\0", h[0])].decode()
        yield name, h[5]


for path in sys.argv[1:]:
    s = dict(sections(path))
    flash = sum(s.get(n, 0) for n in (".text", ".rodata"))
    ram = sum(s.get(n, 0) for n in (".data", ".bss", ".uninit"))
    print(path.rsplit("/", 1)[-1], flash, ram)
