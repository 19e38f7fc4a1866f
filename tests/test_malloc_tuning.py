"""A batch worker keeps the memory it frees: glibc serves its buffers from the heap (not fresh
mmaps) and does not hand the freed ones back to the OS."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from edge_ser import malloc_tuning

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")

# A fresh interpreter, as mallopt changes the whole process. glibc's mallinfo2() tells how many
# chunks are mmapped (hblks) and how much free memory the heap keeps at its top (keepcost).
PROBE = textwrap.dedent("""
    import ctypes, json, sys
    import numpy as np
    from edge_ser.malloc_tuning import keep_freed_memory

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost")]

    mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    mallinfo2.restype = MallInfo2
    tuned = sys.argv[1] == "tuned" and keep_freed_memory()
    np.ones(1000)  # numpy's own first allocations
    before = mallinfo2().hblks
    buffer = np.ones(2**19)  # 4 MB, as a block of decoded audio or a segment's spectra
    mmapped = mallinfo2().hblks - before
    del buffer
    print(json.dumps({"tuned": tuned, "mmapped": mmapped, "kept": mallinfo2().keepcost}))
""")


def probe(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out)


def test_a_4_mb_buffer_comes_from_the_heap_and_stays_there_once_tuned():
    default, tuned = probe("default"), probe("tuned")
    assert default == {"tuned": False, "mmapped": 1, "kept": default["kept"]}
    assert default["kept"] < 2**20  # glibc trims the heap top above 128 kB by default
    assert tuned["tuned"] and tuned["mmapped"] == 0
    assert tuned["kept"] >= 4 * 2**20  # freed, kept for the next buffer


def test_it_reports_whether_it_could_tune():
    assert malloc_tuning.keep_freed_memory() is True  # this test machine runs glibc
