"""The web UI, ``dragnext ui``: a Gradio page over the same editing API as the CLI.

- ``session.py``: the page's logic as plain code (clicks -> points, operations -> a validated request, the
  rounds of a multi-round edit, the cap on operations); no Gradio, unit-tested, as are the three below.
- ``coordinates.py``: the display size, clicks mapped to image pixels, painted layers <-> masks.
- ``drawing.py``: the pictures over the image: the added operations, the region and clicks being set.
- ``settings.py``: the page's settings to an ``EditConfig`` and a seed, within the caps on settings.
- ``uploads.py``: uploaded images and instruction files read under the page's limits, and the download format.
- ``workspace.py``: one folder per browser tab, removed when the tab's session ends; files served once.
- ``runner.py``: one edit at a time with the model loaded once, under a time limit; failures become messages.
- ``selecting.py``: the click tools: a region selected by clicks, merged with what the brush painted since.
- ``handlers.py``: one method per event of the page (what a button, click or upload does); imports Gradio.
- ``app.py``: the Gradio layout and the wiring of each event to its handler; with ``handlers.py`` the only
  modules of the package that import Gradio.
- ``__main__.py``: ``python -m dragnext.ui``; the command itself, ``dragnext ui``, is ``dragnext/cli/ui.py``.

Importing this package imports neither Gradio nor torch.
"""
