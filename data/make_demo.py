"""Builds data/demo/ (the bundled demo collection) from the shared instance-track set.

Run once by the maintainers; the result is committed.  It keeps the 4 instances of the shared
set whose objects are the largest (see data/demo/README.md), the query and 5 references of each
(the frame with the largest box in each fifth of the sequence), with their annotation rows
(boxes and provenance) unchanged.

    python data/make_demo.py ../shared/data/instance-track data/demo
"""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

INSTANCES = ("FaceOcc1", "Diving", "DragonBaby", "boat1")
REFERENCES_PER_INSTANCE = 5


def box_area(row: dict) -> float:
    return (float(row["x2"]) - float(row["x1"])) * (float(row["y2"]) - float(row["y1"]))


def main(src: str, dst: str) -> None:
    src_p, dst_p = Path(src), Path(dst)
    rows = list(csv.DictReader(open(src_p / "annotations.csv", newline="")))
    fields = list(rows[0].keys())
    kept = []
    for inst in INSTANCES:
        mine = [r for r in rows if r["instance"] == inst]
        query = [r for r in mine if r["role"] == "query"]
        refs = [r for r in mine if r["role"] == "reference"]
        # One frame per stretch of the sequence (the instance seen in several poses), the one
        # where the object is largest (a box of a few cells localises little at 512 pixels).
        stretches = [refs[len(refs) * k // REFERENCES_PER_INSTANCE: len(refs) * (k + 1) // REFERENCES_PER_INSTANCE]
                     for k in range(REFERENCES_PER_INSTANCE)]
        kept += query + [max(stretch, key=box_area) for stretch in stretches]
    for r in kept:
        (dst_p / r["image"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src_p / r["image"], dst_p / r["image"])
    with open(dst_p / "annotations.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(kept)
    with open(dst_p / "gt.txt", "w") as f:
        for inst in INSTANCES:
            q = next(r for r in kept if r["instance"] == inst and r["role"] == "query")
            refs = [r["image"] for r in kept if r["instance"] == inst and r["role"] == "reference"]
            f.write(" ".join([q["image"], str(len(refs)), *refs]) + "\n")
    print(f"{dst_p}: {len(kept)} images of {len(INSTANCES)} instances")


if __name__ == "__main__":
    main(*sys.argv[1:3])
