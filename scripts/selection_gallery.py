"""Region from a click on real photographs: each DragBench sample in ../shared/data clicked at its first handle point.

Writes one picture: per sample, the photo with the click (a white dot) and the selected region tinted, at the
default tolerance and at a wider one. The handle points are the benchmark's, not chosen to flatter the method.

    python scripts/selection_gallery.py --data ../shared/data --out docs/images/region-from-click.png
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from dragnext.bench.convert import load_dragbench_meta
from dragnext.selection import DEFAULT_TOLERANCE, select_region

TILE = 192


def tile(image: np.ndarray, mask: np.ndarray, click: tuple[float, float], caption: str) -> Image.Image:
    tinted = image.astype(np.float64)
    tinted[mask] = 0.45 * tinted[mask] + 0.55 * np.array([255.0, 40.0, 200.0])
    picture = Image.fromarray(np.round(tinted).astype(np.uint8))
    scale = TILE / max(picture.size)
    picture = picture.resize((round(picture.width * scale), round(picture.height * scale)), Image.LANCZOS)
    canvas = Image.new("RGB", (TILE, TILE + 14), "white")
    canvas.paste(picture, ((TILE - picture.width) // 2, (TILE - picture.height) // 2))
    draw = ImageDraw.Draw(canvas)
    x = (TILE - picture.width) // 2 + click[0] * scale
    y = (TILE - picture.height) // 2 + click[1] * scale
    draw.ellipse((x - 4, y - 4, x + 4, y + 4), fill="white", outline="black")
    draw.text((4, TILE), caption, fill="black")
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--out", default="docs/images/region-from-click.png")
    parser.add_argument("--wide", type=float, default=2.5 * DEFAULT_TOLERANCE, help="the second, wider tolerance")
    args = parser.parse_args()
    folders = sorted(p.parent for p in Path(args.data, "dragbench").glob("*/*/meta_data.pkl"))
    columns = []
    for folder in folders:
        meta = load_dragbench_meta(folder / "meta_data.pkl")
        image = np.asarray(Image.open(folder / "original_image.png").convert("RGB"))
        click = tuple(float(v) for v in meta["points"][0])
        tiles = [tile(image, select_region(image, [click], tolerance=tolerance), click,
                      f"{folder.parent.name[:18]} tol {tolerance:g}")
                 for tolerance in (DEFAULT_TOLERANCE, args.wide)]
        columns.append(tiles)
    per_row = 5
    rows = [columns[i:i + per_row] for i in range(0, len(columns), per_row)]
    sheet = Image.new("RGB", (per_row * TILE, len(rows) * 2 * (TILE + 14)), "white")
    for r, row in enumerate(rows):
        for c, (narrow, wide) in enumerate(row):
            sheet.paste(narrow, (c * TILE, r * 2 * (TILE + 14)))
            sheet.paste(wide, (c * TILE, r * 2 * (TILE + 14) + TILE + 14))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"wrote {args.out}: {len(columns)} samples")


if __name__ == "__main__":
    main()
