"""``leanvl serve``: the local web app (search an index, ask a video a question).

Needs the ``app`` extra (gradio). Exit codes: 0 stopped normally, 1 failure (gradio missing,
bad model or index), 2 usage error.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from leanvl.cli.app import app, fail


@app.command("serve")
def serve_command(
    model: Path = typer.Option(..., "--model", help="leanvl checkpoint folder (e.g. DIR/model)."),
    index: Path = typer.Option(None, "--index", help="Index folder (leanvl index --out)."),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Interface to bind; 0.0.0.0 exposes the app to the network."
    ),
    port: int = typer.Option(7860, "--port", min=1, max=65535, help="TCP port."),
    max_upload_mb: int = typer.Option(100, "--max-upload-mb", min=1, help="Upload size limit."),
) -> None:
    """Serve a Gradio app: text-to-video search, and questions about an uploaded clip."""
    console = Console(stderr=True)
    try:
        import gradio  # noqa: F401
    except ImportError:
        console.print("[red]error:[/red] leanvl serve needs gradio: pip install 'leanvl[app]'")
        raise typer.Exit(1) from None
    from leanvl.tools.app import serve

    if host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"[yellow]warning:[/yellow] serving on {host}: reachable from the network")
    console.print(f"leanvl serve: http://{host}:{port}  (Ctrl+C to stop)", highlight=False)
    try:
        serve(model, index, host=host, port=port, max_upload_mb=max_upload_mb)
    except (FileNotFoundError, ValueError) as exc:
        fail(console, str(exc), 1)
