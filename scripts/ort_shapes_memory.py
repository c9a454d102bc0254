"""Does ONNX Runtime's memory stay flat when every call has its own shape (the unpadded batches of
ner_ofa.labelling, shapes="exact")? One session, 600 calls of random (rows 1-32, length 3-128) shapes; prints its
RSS in MiB after 50, 100, ... 600 calls.

    python scripts/ort_shapes_memory.py OUT/export/width_0.5_depth_0.5/int8/model.int8.onnx
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ner_ofa import backends  # noqa: E402


def rss_mib():
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) // 1024 for line in handle if line.startswith("VmRSS"))


def main(path, calls=600, threads=2):
    logits_fn = backends.onnx_logits_fn(path, threads)
    rng = np.random.default_rng(0)
    marks = {}
    for call in range(1, calls + 1):
        logits_fn(rng.integers(100, 2000, size=(int(rng.integers(1, 33)), int(rng.integers(3, 129)))))
        if call in (50, 100) or call % 100 == 0:
            marks[call] = rss_mib()
    print("RSS MiB after N calls:", marks)
    return marks


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
