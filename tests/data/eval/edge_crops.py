"""Derived frames that cut people at each picture edge, made by one fixed rule (run once; frames.json keeps them).

    python tests/data/eval/edge_crops.py [--write]

Why: people cut off by the frame edge were the set's thinnest categories within each part (tuning: cut_left
6, cut_right 8, cut_bottom 4 people; test: cut_left 7, cut_right 7), too few to choose an edge rule on the
tuning part or to report one on the test part. Crops need no new labels: a derived frame's labels are its
base frame's put through the crop (``mie_pose.backends.evaluation``), so they are not new people, only new
views of them.

The rule, the same for every labelled base frame with a counted person, in both parts: for each edge (left,
right, top, bottom), take the counted person whose box centre lies nearest the picture's centre along that
axis and whose box does not already touch that edge, and crop the picture so that the edge passes through
that person, CUT_SHARE of their box extent in from the side being cut (the rest of the picture is kept, and
anyone else the line crosses is cut too). A crop narrower or shorter than MIN_SIDE_PX is skipped. Each new
entry is ``{base}/cut_{edge}`` with ``derived_by: "edge_crops.py"``; without ``--write`` the entries are
printed, not stored.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FRAMES = HERE / "frames.json"
sys.path.insert(0, str(HERE.parents[2] / "source"))
CUT_SHARE = 0.4  # the share of the person's width (or height) that falls outside the crop
MIN_SIDE_PX = 160
EDGES = ("left", "right", "top", "bottom")


def frame_size(spec: dict, media: dict) -> tuple[int, int]:
    """``spec``'s picture size, read from its media (``media``: the manifest's entries)."""
    from mie_pose.backends.evaluation import locate_media, read_frame

    image = read_frame(locate_media(media[spec["media"]]["locate"]), spec.get("frame"))
    return image.shape[1], image.shape[0]


def edge_crop(spec: dict, size: tuple[int, int], edge: str) -> dict | None:
    """The derived entry cutting ``spec``'s most central person at ``edge``, or None when there is none."""
    w, h = size
    people = [p["box"] for p in spec["persons"] if not p.get("ignore") and not p.get("crowd")]
    horizontal = edge in ("left", "right")
    centre = (w if horizontal else h) / 2
    axis = (0, 2) if horizontal else (1, 3)

    def untouched(box):
        return {"left": box[0] > 2, "right": box[2] < w - 2, "top": box[1] > 2, "bottom": box[3] < h - 2}[edge]

    candidates = [b for b in people if untouched(b)]
    if not candidates:
        return None
    box = min(candidates, key=lambda b: (abs((b[axis[0]] + b[axis[1]]) / 2 - centre), b))
    low, high = box[axis[0]], box[axis[1]]
    if edge in ("left", "top"):
        cut = round(low + CUT_SHARE * (high - low))
        crop = [cut, 0, w, h] if horizontal else [0, cut, w, h]
    else:
        cut = round(high - CUT_SHARE * (high - low))
        crop = [0, 0, cut, h] if horizontal else [0, 0, w, cut]
    if crop[2] - crop[0] < MIN_SIDE_PX or crop[3] - crop[1] < MIN_SIDE_PX:
        return None
    return {"id": f"{spec['id']}/cut_{edge}", "derived_from": spec["id"], "part": spec["part"],
            "derived_by": "edge_crops.py", "transform": {"kind": "crop", "box": crop}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="add the entries to frames.json")
    args = parser.parse_args(argv)
    specs = json.loads(FRAMES.read_text())
    existing = {s["id"] for s in specs}
    media = json.loads((HERE / "manifest.json").read_text())["media"]
    added = []
    for spec in specs:
        if "derived_from" in spec or not any(not p.get("ignore") and not p.get("crowd") for p in spec["persons"]):
            continue
        size = frame_size(spec, media)
        for edge in EDGES:
            entry = edge_crop(spec, size, edge)
            if entry and entry["id"] not in existing:
                added.append(entry)
    for entry in added:
        print(entry["id"], entry["part"], entry["transform"]["box"])
    if args.write:
        FRAMES.write_text("[\n" + ",\n".join(json.dumps(s) for s in specs + added) + "\n]\n")  # one frame a line
        print(f"added {len(added)} entries to {FRAMES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
