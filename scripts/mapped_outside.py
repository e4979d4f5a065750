"""Used by `scripts/hot-symbols.sh --check`: whether any process of a running Apache tree has
mapped module code outside the 64 KiB blocks that hold the serving functions of
src/hot-symbols.txt (those before the start-up code's marker, which every process unmaps from
once its start-up is over).

    mapped_outside.py MODULE.so APACHE_PID HOT_SYMBOLS_TXT MODE [MAX_BLOCKS]

The kernel maps a library's code in 64 KiB blocks around each page touched (fault-around), so a
block mapped outside the listed functions' blocks means a function that ran is not listed.
Exits 1, naming the blocks, if there is one. MODE `embedded-normal` (an embedded-mode tree that
has served only requests that succeed) allows only the blocks of the first two groups of the
list (what both modes and what embedded mode run), and with MAX_BLOCKS, the tree may map no more
blocks than that. In every mode, the tree may map only one block of the module's constants (see
scripts/hot_rodata.py). Needs root (/proc/PID/pagemap of other users).
"""
import struct
import subprocess
import sys

from proc_tree import children

BLOCK = 65536
PAGE = 4096
MARKER = "mod_wsgi_rs_start_up_code"


def text_symbols(module):
    """name -> (address, size) of every function the module defines."""
    out = subprocess.run(["nm", "--defined-only", "-S", module], capture_output=True, text=True,
                         check=True).stdout
    symbols = {}
    for line in out.splitlines():
        words = line.split()
        if len(words) == 4 and words[2] in ("t", "T"):
            symbols[words[3]] = (int(words[0], 16), int(words[1], 16))
    return symbols


def code_sections(module):
    """(name, address, size) of the module's executable sections (.text, .plt, .init, ...)."""
    out = subprocess.run(["readelf", "--section-headers", "--wide", module], capture_output=True,
                         text=True, check=True).stdout
    sections = []
    for line in out.splitlines():
        words = line.replace("[ ", "[").split()
        if len(words) > 7 and words[1].startswith(".") and "X" in words[7]:
            sections.append((words[1], int(words[3], 16), int(words[5], 16)))
    return sections


def mapped_blocks(pid, module, perms):
    """The blocks (by address in the module's own layout, its load address subtracted) of the
    module's mappings with permissions `perms` that `pid` has pages of in memory."""
    maps = [line.split() for line in open(f"/proc/{pid}/maps")]
    maps = [m for m in maps if len(m) >= 6 and m[5] == module]
    if not maps:
        return set()
    # The module's load address: where its first mapping (file offset 0) starts.
    base = min(int(m[0].split("-")[0], 16) - int(m[2], 16) for m in maps)
    blocks = set()
    with open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for m in maps:
            if m[1] != perms:
                continue
            start, end = (int(x, 16) for x in m[0].split("-"))
            pagemap.seek(start // PAGE * 8)
            entries = pagemap.read((end - start) // PAGE * 8)
            for i in range(len(entries) // 8):
                if struct.unpack_from("<Q", entries, i * 8)[0] >> 63:
                    blocks.add((start + i * PAGE - base) // BLOCK)
    return blocks


def constants_segment(module):
    """(address, size) of the module's first loaded segment: its constants (`.rodata`), and
    the symbol tables and relocations only the loader reads."""
    out = subprocess.run(["readelf", "--segments", "--wide", module], capture_output=True,
                         text=True, check=True).stdout
    for line in out.splitlines():
        words = line.split()
        if words and words[0] == "LOAD":
            return int(words[2], 16), int(words[5], 16)
    raise SystemExit(f"no loaded segment in {module}")


def mapped_constant_blocks(pid, module, segment):
    """The blocks of the module's constants segment `pid` has in memory (not those of its
    relocated data, which the loader makes read-only too)."""
    first, size = segment
    return {b for b in mapped_blocks(pid, module, "r--p")
            if b * BLOCK < first + size and (b + 1) * BLOCK > first}


def group_lines(lines, titles):
    """The lines of the list's groups headed by `titles` (comment lines)."""
    kept, keep = [], False
    for line in lines:
        if line.startswith("# "):
            keep = line in titles
        elif keep:
            kept.append(line)
    return kept


def main():
    module, parent, listed, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    max_blocks = int(sys.argv[5]) if len(sys.argv) > 5 else None
    symbols = text_symbols(module)
    lines = [l.strip() for l in open(listed) if l.strip()]
    # Once serving, a process has unmapped the start-up code listed after the marker.
    if MARKER in lines:
        lines = lines[:lines.index(MARKER) + 1]
    if mode == "embedded-normal":
        lines = group_lines(lines, ("# serving, both modes", "# serving, embedded mode only"))
    names = [l for l in lines if not l.startswith("#")]
    allowed = set()
    for addr, size in (symbols[n] for n in names if n in symbols):
        allowed.update(range(addr // BLOCK, (addr + max(size, 1) - 1) // BLOCK + 1))
    tree = [parent]
    for pid in children(parent):
        tree += [pid] + children(pid)
    outside, mapped, constants = {}, set(), set()
    segment = constants_segment(module)
    for pid in tree:
        blocks = mapped_blocks(pid, module, "r-xp")
        mapped |= blocks
        for block in blocks - allowed:
            outside.setdefault(block, []).append(pid)
        constants |= mapped_constant_blocks(pid, module, segment)
    if len(constants) > 1:
        print(f"{mode} mode: the tree maps {len(constants)} blocks of the module's constants, "
              "not only the first: the serving code reads constants src/hot-rodata.txt does "
              "not list (run scripts/hot-symbols.sh to list them again), or they have "
              "outgrown the block.")
        return 1
    if max_blocks is not None and len(mapped) > max_blocks:
        print(f"{mode} mode: the tree maps {len(mapped)} blocks of module code, more than "
              f"{max_blocks}: its serving code has outgrown them (make it smaller, or move what "
              "only a failing request runs out of it).")
        return 1
    if not outside:
        print(f"{mode} mode: {len(tree)} processes map module code only in the listed "
              f"functions' {len(allowed)} blocks ({len(mapped)} mapped), and "
              f"{len(constants)} block of constants")
        return 0
    print(f"{mode} mode: module code mapped outside the listed serving functions' blocks "
          "(run scripts/hot-symbols.sh to list them again):")
    for block, pids in sorted(outside.items()):
        there = sorted(n for n, (a, _) in symbols.items() if a // BLOCK == block)
        sections = [name for name, addr, size in code_sections(module)
                    if addr // BLOCK <= block <= (addr + max(size, 1) - 1) // BLOCK]
        print(f"  block at {block * BLOCK:#x} ({', '.join(sections)}), mapped by {sorted(pids)}: "
              f"{len(there)} functions, such as {', '.join(there[:4])}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
