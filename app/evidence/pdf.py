"""A pack's page printed to PDF by a local headless browser, where one is installed: bounded in
time and in how many run at once, its whole process group killed when it overruns."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path

from core.errors import ApiError

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# A browser is a few hundred MB of memory: two at once, and a third caller is told to retry.
_RENDER_SLOTS = threading.BoundedSemaphore(2)


def find_renderer(setting: str) -> str | None:
    """MEMAUDIT_PDF_RENDERER when set ("none" turns PDF off), else a Chromium on PATH."""
    if setting == "none":
        return None
    if setting:
        return setting if os.access(setting, os.X_OK) else None
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


def _command(renderer: str, page: Path, output: Path, profile: Path) -> list[str]:
    command = [
        renderer,
        "--headless",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--no-pdf-header-footer",
        f"--user-data-dir={profile}",
        f"--print-to-pdf={output}",
        page.as_uri(),
    ]
    if os.geteuid() == 0:  # Chromium refuses root without it; the page has no script to run
        command.insert(1, "--no-sandbox")
    return command


def _failed(reason: str) -> ApiError:
    return ApiError(
        503,
        "pdf_render_failed",
        f"the PDF could not be printed: {reason}; the JSON and HTML forms are available",
        headers={"Retry-After": "30"},
    )


def html_to_pdf(html: str, renderer: str | None, timeout: float) -> bytes:
    """The PDF of a self-contained page; 501 without a renderer, 503 when it fails or is busy."""
    if renderer is None:
        raise ApiError(
            501,
            "pdf_unavailable",
            "no PDF renderer on this server (install chromium or set MEMAUDIT_PDF_RENDERER); "
            "ask for format=html and print it, or format=json to verify",
        )
    if not _RENDER_SLOTS.acquire(timeout=timeout):
        raise _failed("every renderer slot stayed busy")
    try:
        with tempfile.TemporaryDirectory(prefix="memaudit-pdf-") as work:
            folder = Path(work)
            page, output = folder / "evidence.html", folder / "evidence.pdf"
            page.write_text(html, encoding="utf-8")
            process = subprocess.Popen(
                _command(renderer, page, output, folder / "profile"),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,  # the browser's helpers share its group: killed together
            )
            try:
                _, stderr = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                raise _failed(f"the renderer took longer than {timeout:g} s") from None
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            document = output.read_bytes() if output.exists() else b""
            if process.returncode != 0 or not document.startswith(b"%PDF"):
                last = stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise _failed(f"the renderer exited {process.returncode}: {last[0][:300]}")
            return document
    finally:
        _RENDER_SLOTS.release()
