"""The command line's own module: light to import, so `textgen prepare` and `--help` stay fast."""

from __future__ import annotations

import subprocess
import sys
from typing import get_args


def test_importing_the_command_line_does_not_import_torch():
    code = "import sys, textgen.cli.main; print(sorted(m for m in sys.modules if m == 'torch'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"  # torch costs ~1.5 s and ~200 MB before any work


def test_serve_and_generate_offer_the_decoders_precisions():
    from textgen.inference.decoder import PRECISIONS
    from textgen.server.settings import Settings

    annotation = Settings.model_fields["precision"].annotation
    assert get_args(annotation) == PRECISIONS
