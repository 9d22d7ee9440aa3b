"""``dragnext ui`` (and ``python -m dragnext.ui``): serve the web page on loopback, with the model loaded once."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import math
import os
from typing import Any

from ..config import FAST_SETTINGS
from ..ui.runner import DEFAULT_TIME_LIMIT
from .common import EXIT_BAD_INPUT, EXIT_INTERRUPTED, CliError, add_model_flags, load_model, reports_errors


def add_ui_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "ui", help="serve the web UI (Gradio) on http://127.0.0.1:7860",
        description="Serve the drag-editing web page. The model is loaded once; edits run one at a time.",
    )
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    add_model_flags(parser, "bundled")
    parser.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT, metavar="SECONDS",
                        help=f"stop an edit that runs longer than this, so one request cannot hold the queue "
                             f"(default: {DEFAULT_TIME_LIMIT:g}; 0: no limit)")
    parser.add_argument("--share", action="store_true",
                        help="also create a public gradio.live link (off by default: anyone with it can use the app)")
    # config.FAST_SETTINGS over every preset: a few-second edit on the bundled model (the browser test)
    parser.add_argument("--fast", action="store_true", help=argparse.SUPPRESS)
    parser.set_defaults(run=command_ui)
    return parser


@reports_errors
def command_ui(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise CliError(f"--port: {args.port} is not a port number (0-65535)", EXIT_BAD_INPUT)
    if not (math.isfinite(args.time_limit) and args.time_limit >= 0):
        raise CliError(f"--time-limit: {args.time_limit:g} is not a number of seconds (0: no limit)", EXIT_BAD_INPUT)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    if importlib.util.find_spec("gradio") is None:
        raise CliError("the web UI needs Gradio: pip install 'dragnext[ui]'")

    from ..config import PRESET_NAMES, preset

    backbone = load_model(args.model, args.device, args.bf16)
    fast = args.fast or os.environ.get("DRAGNEXT_UI_FAST") == "1"
    presets = {name: preset(backbone.name, name) for name in PRESET_NAMES}
    if fast:
        presets = {name: config.override(**FAST_SETTINGS) for name, config in presets.items()}

    from ..ui.app import build_app, launch
    from ..ui.runner import EditRunner

    runner = EditRunner(backbone, presets["default"], presets=presets, time_limit=args.time_limit or None)
    app = build_app(runner)
    print(f"dragnext ui: model {args.model!r} loaded; serving on http://{args.host}:{args.port} (Ctrl+C to stop)",
          flush=True)
    try:
        launch(app, host=args.host, port=args.port, share=args.share)
    except OSError as error:
        raise CliError(f"cannot serve on {args.host}:{args.port}: {error}") from None
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m dragnext.ui [--host H] [--port P] [--model M]``: the same as ``dragnext ui``."""
    parser = argparse.ArgumentParser(prog="python -m dragnext.ui")
    ui = add_ui_parser(parser.add_subparsers(dest="command"))
    ui.prog = "python -m dragnext.ui"
    args = ui.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.run(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
