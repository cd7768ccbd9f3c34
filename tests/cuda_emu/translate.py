#!/usr/bin/env python3
"""Rewrites a CUDA source for the CPU emulator: every launch
    kernel<<<grid, block[, shared, stream]>>>(args);
becomes
    emu::launch("kernel", emu::config(grid, block[, ...]), kernel, args);
and "#pragma unroll" lines (a hint for nvcc that the host compiler warns
about) are emptied; nothing else changes (line numbers stay, and a #line
directive points compiler messages at the original file).

usage: translate.py IN.cu OUT.cpp"""
import re
import sys

NAME = re.compile(r"([A-Za-z_][A-Za-z0-9_:]*(?:<[^<>;{}()]*>)?)\s*$")


def closing(text, i, open_ch, close_ch):
    """Index just past the bracket that closes text[i] (== open_ch)."""
    depth = 0
    for j in range(i, len(text)):
        if text[j] == open_ch:
            depth += 1
        elif text[j] == close_ch:
            depth -= 1
            if depth == 0:
                return j + 1
    raise SystemExit("translate.py: unbalanced %s at offset %d" % (open_ch, i))


UNROLL = re.compile(r"^[ \t]*#pragma unroll\b.*$", re.M)


def translate(text, path):
    text = UNROLL.sub("", text)
    out, pos = [], 0
    while True:
        start = text.find("<<<", pos)
        if start < 0:
            out.append(text[pos:])
            return "".join(out)
        end = text.find(">>>", start)
        m = NAME.search(text, 0, start)
        paren = re.compile(r"\s*\(").match(text, end + 3)
        if end < 0 or not m or not paren:
            line = text.count("\n", 0, start) + 1
            raise SystemExit("translate.py: %s:%d: a launch I cannot read" % (path, line))
        name = m.group(1)
        open_i = paren.end() - 1
        close_i = closing(text, open_i, "(", ")")
        args = text[open_i + 1:close_i - 1]
        config = text[start + 3:end]
        out.append(text[pos:m.start(1)])
        out.append('emu::launch("%s", emu::config(%s), %s%s%s)'
                   % (name, config, name, ", " if args.strip() else "", args))
        pos = close_i


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, encoding="utf-8") as f:
        text = f.read()
    with open(dst, "w", encoding="utf-8") as f:
        f.write('#line 1 "%s"\n' % src)
        f.write(translate(text, src))


if __name__ == "__main__":
    main()
