"""A real headless Chromium for the end-to-end tests: Debian's package, driven by Playwright,
never a downloaded browser. Screenshots land in tests/artifacts/ (git-ignored)."""

from __future__ import annotations

from urllib.parse import urlparse

from tests.conftest import REPO

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "tests" / "artifacts"


class Watched:
    """A page whose console errors and outgoing requests are recorded."""

    def __init__(self, browser, width: int, height: int = 900) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.urls: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.urls.append(r.url))

    @property
    def hosts(self) -> set[str | None]:
        return {urlparse(url).hostname for url in self.urls}

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()
