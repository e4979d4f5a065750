"""Process-tree helpers for the measuring scripts (cost-per-side.sh, memory-by-mapping.sh)."""
import os


def children(pid):
    """The pids of every child of `pid` (of all its threads), from /proc."""
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            out += [int(c) for c in open(f"/proc/{pid}/task/{task}/children").read().split()]
        except OSError:
            pass
    return out
