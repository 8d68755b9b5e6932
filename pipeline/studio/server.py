"""Serving the studio: where it listens, what it may serve, and the one call `stylize serve` makes.

    1. check_host   loopback unless --host says otherwise
    2. the page     built by `page`, Gradio's files kept inside the output folder
    3. /runs/N/...  the files of the run folders the server was given, and nothing outside them
    4. HostGuard    only requests naming this studio in their Host header (`hosts`)
    5. uvicorn      on a free port unless one was given
"""

from __future__ import annotations

import os
import socket

from ..errors import EnvironmentProblem, InputError
from ..media.files import check_destination
from .folders import StudioFolders
from .hosts import HostGuard, is_loopback


def require_gradio():
    try:
        import gradio
    except ImportError:
        raise EnvironmentProblem("the studio needs Gradio: pip install 'stylize[web]'") from None
    return gradio


def check_host(host: str, from_option: bool) -> None:
    """Listening beyond this machine lets anyone who can reach it use its GPU and read its
    results: only an explicit --host may ask for that (not, say, GRADIO_SERVER_NAME)."""
    if not from_option and not is_loopback(host):
        raise InputError(f"the studio listens on {host!r} only when --host {host} says so; without it, 127.0.0.1")


def check_folders(folders: StudioFolders) -> None:
    """Every problem before the server starts, each naming its folder."""
    check_destination(folders.output_dir / "uploads" / "probe")
    if not folders.library():
        raise InputError("no paintings (jpg, png, webp, ...) in the style library: give --styles a folder of them", folders.styles_dir)
    for run in folders.runs:
        if not run.is_dir():
            raise InputError("no such run folder (give --runs an output folder of `stylize run`)", run)


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def make_app(folders: StudioFolders, device: str = "auto", max_upload_mb: int = 200, host: str = "127.0.0.1"):
    """The studio as an ASGI app listening on `host`: the page at /, run folders at /runs/N/."""
    os.environ["GRADIO_TEMP_DIR"] = str(folders.cache.resolve())  # Gradio writes only inside our folder
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    gr = require_gradio()
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import FileResponse

    from .page import build_page

    app = FastAPI()

    @app.get("/runs/{run}/{relative:path}")
    def run_file(run: int, relative: str):
        try:
            return FileResponse(folders.run_file(run, relative))
        except PermissionError:
            raise HTTPException(403, "outside the run folders this studio serves") from None
        except FileNotFoundError:
            raise HTTPException(404) from None

    page = build_page(folders, device).queue(default_concurrency_limit=1)
    allowed = [str(folders.output_dir.resolve()), str(folders.styles_dir.resolve())]
    app = gr.mount_gradio_app(app, page, path="/", allowed_paths=allowed, max_file_size=f"{max_upload_mb}mb",
                              footer_links=[], theme=gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["monospace"]),
                              css=_CSS, ssr_mode=False)
    return HostGuard(app, host)


def serve(folders: StudioFolders, host: str, port: int, device: str = "auto", max_upload_mb: int = 200,
          host_from_option: bool = True, announce=print) -> None:
    check_host(host, host_from_option)
    require_gradio()  # before anything is written
    check_folders(folders)
    app = make_app(folders, device, max_upload_mb, host)
    import uvicorn

    port = port or free_port(host)
    shown = f"[{host}]" if ":" in host else host
    announce(f"studio: http://{shown}:{port}/  (Ctrl-C stops it; results in {folders.output_dir})")
    uvicorn.run(app, host=host, port=port, log_level="warning")


_CSS = """
.job-status { display: flex; flex-direction: column; gap: 4px; font-variant-numeric: tabular-nums; }
.job-status progress { width: 100%; height: 14px; }
#image-result img { width: 100%; height: 100%; object-fit: contain; }  /* small previews fill the frame */
"""
