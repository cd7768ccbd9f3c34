#!/usr/bin/env python3
"""Rewrites a CUDA source for the CPU emulator: every launch
    kernel<<<grid, block[, shared, stream]>>>(args);
becomes
    emu::launch("kernel", emu::config(grid, block[, ...]), kernel, args);
"#pragma unroll" lines (a hint for nvcc that the host compiler warns
about) are emptied, and dynamic shared memory
    extern __shared__ [__align__(N)] T name[];
becomes, in a function, T *name = (T *)emu::dynamic_shared(); and at file
scope a #define of name as that expression; nothing else changes (line
numbers stay, and a #line directive points compiler messages at the
original file).

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
EXTERN_SHARED = re.compile(r"\bextern\s+__shared__\s+([^;{}()]*(?:\([^;{}()]*\)[^;{}()]*)*?)"
                           r"\b([A-Za-z_]\w*)\s*\[\s*\]\s*;")
ALIGN = re.compile(r"__align__\s*\([^()]*\)")
SKIP = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)


NAMESPACE = re.compile(r'(?:\bnamespace\s*[\w:]*|\bextern\s*"C")\s*$')


def in_function(text, end):
    """Whether text[end] is inside a function body (not at namespace scope),
    or None when it is inside a comment or literal."""
    opened, pos = [], 0
    while pos < end:
        m = SKIP.search(text, pos)
        stop = min(m.start(), end) if m else end
        for i in range(pos, stop):
            if text[i] == "{":
                opened.append(i)
            elif text[i] == "}" and opened:
                opened.pop()
        if m and m.start() < end < m.end():
            return None
        pos = m.end() if m and m.start() < end else end
    return any(not NAMESPACE.search(text, 0, i) for i in opened)


def dynamic_shared(text, path):
    out, pos = [], 0
    for m in EXTERN_SHARED.finditer(text):
        inside = in_function(text, m.start())
        if inside is None:
            continue
        ctype = ALIGN.sub("", m.group(1)).strip()
        name = m.group(2)
        line = text.count("\n", 0, m.start()) + 1
        if not ctype:
            raise SystemExit("translate.py: %s:%d: an extern __shared__ I cannot read"
                             % (path, line))
        expr = "(%s *)emu::dynamic_shared()" % ctype
        newlines = "\n" * m.group(0).count("\n")
        out.append(text[pos:m.start()])
        if inside:
            out.append("%s *%s = %s;%s" % (ctype, name, expr, newlines))
        else:
            line_start = text.rfind("\n", 0, m.start()) + 1
            line_end = text.find("\n", m.end())
            rest = text[m.end():line_end if line_end >= 0 else len(text)].strip()
            if text[line_start:m.start()].strip() or (rest and not rest.startswith("//")):
                raise SystemExit("translate.py: %s:%d: a file-scope extern __shared__ must "
                                 "have its line to itself" % (path, line))
            out.append("#define %s (%s)%s" % (name, expr, newlines))
        pos = m.end()
    out.append(text[pos:])
    return "".join(out)


def translate(text, path):
    text = UNROLL.sub("", text)
    text = dynamic_shared(text, path)
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
