"""Used by `scripts/hot-symbols.sh`: writes (to stdout) the constants the serving code reads,
as the names of the linker's input sections of `.rodata` that hold them, for src/hot-rodata.txt.

    hot_rodata.py MODULE.so HOT_SYMBOLS_TXT LINK_MAP...

build.rs has the linker put these sections first in `.rodata`, after the strings and the
merged constants (which the linker cannot split), and `.rodata` itself at the start of the
module, so that everything a serving process reads of the module's constants lies in its first
64 KiB block. Spread out, the constants the serving code reads touched two blocks, and every
Apache process mapped both.

A constant is the serving code's when a function of the list's serving part (the groups before
the marker) refers to it by its address (`lea`/`mov` relative to the instruction pointer), which
objdump annotates with the target address; the link map (LLD's `-Map`, which build.rs asks for)
names the input section at that address. Of the maps given, the module's is the first whose
addresses of the two exported symbols are the module's. Sections referred to by more than one group go with
the first of them, in the list's order of groups.
"""
import bisect
import re
import subprocess
import sys

MARKER = "mod_wsgi_rs_start_up_code"


def serving_functions(listed):
    """name -> index of its group, for the functions before the marker."""
    group, functions = -1, {}
    for line in open(listed):
        line = line.strip()
        if line == MARKER:
            break
        if line.startswith("# serving"):
            group += 1
        elif line and not line.startswith("#"):
            functions[line] = max(group, 0)
    return functions


def rodata_sections(link_map):
    """Sorted (address, size, section name) of the input sections in the output `.rodata`; the
    linker's own merged sections (strings, constants by size) are named `<internal>`."""
    sections, output = [], None
    line_re = re.compile(r"\s*([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+\d+( +)(\S.*)$")
    for line in open(link_map):
        m = line_re.match(line)
        if not m:
            continue
        name = m.group(4).strip()
        if len(m.group(3)) == 1:  # an output section starts
            output = name
        elif output == ".rodata" and ":(" in name:
            where, section = name.rsplit(":(", 1)
            if where != "<internal>":
                sections.append((int(m.group(1), 16), int(m.group(2), 16), section[:-1]))
    return sorted(sections)


def exported(module):
    """address -> name of the module's exported symbols."""
    out = subprocess.run(["nm", "-D", "--defined-only", module], capture_output=True, text=True,
                         check=True).stdout
    return {int(w[0], 16): w[2] for w in (l.split() for l in out.splitlines()) if len(w) == 3}


def map_of(module, maps):
    """The first of `maps` that was written by the link of `module`."""
    symbols = exported(module)
    for link_map in maps:
        found = {}
        for line in open(link_map):
            words = line.split()
            if len(words) == 5 and words[4] in symbols.values():
                found[int(words[0], 16)] = words[4]
        if found == symbols:
            return link_map
    sys.exit(f"no linker map of {module} among {maps}: build it again (cargo build --release; "
             "build.rs asks the linker for the map)")


def main():
    module, listed = sys.argv[1:3]
    link_map = map_of(module, sys.argv[3:])
    functions = serving_functions(listed)
    sections = rodata_sections(link_map)
    starts = [s[0] for s in sections]
    group_of = {}
    disassembly = subprocess.run(["objdump", "--disassemble", "--no-show-raw-insn", module],
                                 capture_output=True, text=True, check=True).stdout
    current = None
    for line in disassembly.splitlines():
        m = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
        if m:
            current = functions.get(m.group(1))
            continue
        if current is None:
            continue
        m = re.search(r"# ([0-9a-f]+) <", line)
        if not m:
            continue
        address = int(m.group(1), 16)
        i = bisect.bisect_right(starts, address) - 1
        if i >= 0 and address < sections[i][0] + max(sections[i][1], 1):
            name = sections[i][2]
            group_of[name] = min(group_of.get(name, current), current)
    if not sections:
        sys.exit(f"no input sections of .rodata in {link_map}")
    for name in sorted(group_of, key=lambda n: (group_of[n], n)):
        print(name)


if __name__ == "__main__":
    main()
