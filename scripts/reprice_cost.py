"""Price the passes timed in a ``cost.json`` (``dragnext bench --cost-only``) with today's recipe counts.

For a change that alters how many passes of an already timed kind a recipe spends, when the machine that timed
them (a lent GPU) is gone: the seconds and memory per kind of pass are kept, the totals and ratios recomputed.

    python scripts/reprice_cost.py docs/benchmarks/gpu/cost.json --out docs/benchmarks/gpu
"""

import argparse
import json
from pathlib import Path

from dragnext.bench.cost import cost_json, cost_markdown, repriced
from dragnext.files import write_text_atomic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cost_json", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="folder for the repriced cost.json and cost.md")
    args = parser.parse_args()
    report = repriced(json.loads(args.cost_json.read_text()))
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "cost.json", cost_json(report))
    note = (f"\nRepriced by `python scripts/reprice_cost.py {args.cost_json}`: the passes timed then, counted as "
            "the recipes spend them now.\n")
    write_text_atomic(args.out / "cost.md", cost_markdown(report) + note)
    print(", ".join(f"{recipe} {report.ratio(recipe):.3f}" for recipe in report.counts))


if __name__ == "__main__":
    main()
