"""``dragnext ui``: serve the web page on loopback, with the model loaded once.

``add_ui_parser(subparsers)`` adds the sub-command to the ``dragnext`` parser; ``python -m dragnext.ui``
runs it alone.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import sys

from .runner import DEFAULT_TIME_LIMIT

# Settings of the hidden --fast flag: a few-second edit on the bundled model (for the browser test and a
# quick look at the page); the result is rougher than the preset's.
FAST_SETTINGS = {"num_steps": 10, "pbsi_timesteps": 2, "iterations": 3}


def add_ui_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "ui", help="serve the web UI (Gradio) on http://127.0.0.1:7860",
        description="Serve the drag-editing web page. The model is loaded once; edits run one at a time.",
    )
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    parser.add_argument("--model", default="bundled",
                        help="'bundled' (default, offline), a local diffusers folder, or a hub id of Stable "
                             "Diffusion 1.x/2.x")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if present, else cpu)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast of the UNet on CPU")
    parser.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT, metavar="SECONDS",
                        help=f"stop an edit that runs longer than this, so one request cannot hold the queue "
                             f"(default: {DEFAULT_TIME_LIMIT:g}; 0: no limit)")
    parser.add_argument("--share", action="store_true",
                        help="also create a public gradio.live link (off by default: anyone with it can use the app)")
    parser.add_argument("--fast", action="store_true", help=argparse.SUPPRESS)  # FAST_SETTINGS (tests)
    parser.set_defaults(run=command_ui)
    return parser


def _error(message: str) -> int:
    print(f"dragnext: error: {message}", file=sys.stderr)
    return 1


def command_ui(args) -> int:
    if not 0 <= args.port <= 65535:
        print(f"dragnext: error: --port: {args.port} is not a port number (0-65535)", file=sys.stderr)
        return 2
    if not (math.isfinite(args.time_limit) and args.time_limit >= 0):
        print(f"dragnext: error: --time-limit: {args.time_limit:g} is not a number of seconds (0: no limit)",
              file=sys.stderr)
        return 2
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    if importlib.util.find_spec("gradio") is None:
        return _error("the web UI needs Gradio: pip install 'dragnext[ui]'")

    from ..cli import CliError, load_model
    from ..config import PRESET_NAMES, preset

    try:
        backbone = load_model(args.model, args.device, args.bf16)
    except CliError as error:
        print(f"dragnext: error: {error}", file=sys.stderr)
        return error.status
    fast = args.fast or os.environ.get("DRAGNEXT_UI_FAST") == "1"
    presets = {name: preset(backbone.name, name) for name in PRESET_NAMES}
    if fast:
        presets = {name: config.override(**FAST_SETTINGS) for name, config in presets.items()}

    from .app import build_app, launch
    from .runner import EditRunner

    runner = EditRunner(backbone, presets["default"], presets=presets, time_limit=args.time_limit or None)
    app = build_app(runner)
    print(f"dragnext ui: model {args.model!r} loaded; serving on http://{args.host}:{args.port} (Ctrl+C to stop)",
          flush=True)
    try:
        launch(app, host=args.host, port=args.port, share=args.share)
    except OSError as error:
        return _error(f"cannot serve on {args.host}:{args.port}: {error}")
    return 0
