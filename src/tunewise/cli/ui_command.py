"""`tunewise ui`: browse runs in a local web app. Registered on the app by cli/app.py; parses the options, checks
the bind is safe and starts uvicorn. The app itself (and FastAPI, uvicorn) is imported only when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from tunewise.cli.shared import RunsOpt, console, fail

API_KEYS_ENV = "TUNEWISE_API_KEYS"  # the same variable `tunewise serve` reads


def ui(
    runs_dir: RunsOpt = Path("runs"),
    host: Annotated[str, typer.Option(help="Interface to listen on; anything but loopback needs an API key")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one)")] = 8765,
    api_key_file: Annotated[Path | None, typer.Option("--api-key-file", help=f"Accepted API keys, one per line (also: ${API_KEYS_ENV})")] = None,
) -> None:
    """Browse runs in a local web app: runs, verdicts, predictions, comparisons."""
    from tunewise.serve.auth import AuthConfigError, load_keys
    from tunewise.ui.security import BindError, check_bind

    try:
        keys = load_keys(API_KEYS_ENV, api_key_file)
        check_bind(host, keys)
    except (AuthConfigError, BindError) as exc:
        raise fail(str(exc)) from None
    if not runs_dir.is_dir():
        raise fail(f"--runs-dir {runs_dir}: no such folder. Fix: point it at the folder `tunewise run` writes "
                   "(default: runs).")
    import uvicorn

    from tunewise.ui.app import create_app

    app = create_app(runs_dir, keys)
    if port == 0:  # pick the free port here so the address printed is the one served
        import socket

        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.bind((host, 0))
            port = int(probe.getsockname()[1])
    shown = f"[{host}]" if ":" in host else host
    console.print(f"tunewise ui on http://{escape(shown)}:{port}/ over {escape(str(runs_dir))} "
                  f"({'API key required' if keys else 'no API key: loopback only'}); Ctrl+C stops it", soft_wrap=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", server_header=False)
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
