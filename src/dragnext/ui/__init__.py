"""The web UI, ``dragnext ui``: a Gradio page over the same editing API as the CLI.

- ``session.py``: the page's logic as plain code (clicks and strokes -> a validated request, the download
  and restore format, the upload limits); no Gradio, unit-tested.
- ``runner.py``: one edit at a time with the model loaded once; failures become messages.
- ``app.py``: the Gradio layout and wiring, the only module of the package that imports Gradio.
- ``cli.py``: ``add_ui_parser`` for the ``dragnext`` command.

Importing this package imports neither Gradio nor torch.
"""
