"""Open a page in Debian's headless Chromium, as a person would, and report what happened.

Dependency-free: Chromium is driven through the Chrome DevTools Protocol over
``--remote-debugging-pipe`` (JSON messages ended by NUL on fds 3 and 4), so no
websocket client or selenium is needed. :func:`inspect_page` loads a file,
waits for the load event and returns the console errors, every network request,
each image's decoded size, the visible text and a full-page screenshot.

:func:`ensure_chromium` installs ``chromium`` with apt-get when it is missing
(in CI the browser tests must run, never skip); :func:`start_chromium_install`
begins that install in the background as soon as browser tests are collected.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.apt import apt_install

CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
)


PACKAGES = ["chromium", "chromium-driver"]
_background: threading.Thread | None = None


def _found() -> str | None:
    return shutil.which("chromium") or (CHROMIUM if os.path.exists(CHROMIUM) else None)


def start_chromium_install() -> None:
    """Begin installing Chromium in a background thread when it is missing.

    Called when the browser tests are collected; :func:`ensure_chromium` waits for it.
    An install that fails here is retried there, where its error is reported.
    """
    global _background
    if _background is None and _found() is None:
        _background = threading.Thread(target=_install_quietly, daemon=True)
        _background.start()


def _install_quietly() -> None:
    with contextlib.suppress(Exception):
        apt_install(PACKAGES, lambda: _found() is not None)


def ensure_chromium() -> str:
    """The chromium binary; installs Debian's package when missing (needs root)."""
    if _background is not None:
        _background.join()
    apt_install(PACKAGES, lambda: _found() is not None)
    return _found() or CHROMIUM


@dataclass
class PageReport:
    """What loading a page produced."""

    images: list[dict[str, Any]]  # alt, complete, width, height (natural, decoded)
    console_errors: list[str]
    requests: list[str]  # every URL the page asked for (the page itself included)
    text: str  # document.body.innerText
    script_elements: int
    scroll_width: int  # wider than the window means a horizontal scrollbar
    screenshot: Path
    events: list[dict[str, Any]] = field(default_factory=list)


class _Pipe:
    """CDP over a pair of pipes; events are queued while waiting for replies."""

    def __init__(self, proc: subprocess.Popen, write_fd: int, read_fd: int) -> None:
        self.proc, self.w, self.r = proc, write_fd, read_fd
        self.buf = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            ready, _, _ = select.select([self.r], [], [], left)
            if ready:
                chunk = os.read(self.r, 1 << 16)
                if not chunk:
                    raise RuntimeError(f"chromium exited (code {self.proc.poll()})")
                self.buf += chunk
        raw, self.buf = self.buf.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict[str, Any]:  # fmt: skip
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 30.0) -> dict[str, Any]:
        for e in self.events:
            if e.get("method") == method:
                return e
        deadline = time.monotonic() + timeout
        while True:
            e = self._read_message(deadline)
            self.events.append(e)
            if e.get("method") == method:
                return e


def _high_fd(fd: int) -> int:
    """A copy of ``fd`` numbered >= 10, so dup2 onto 3 and 4 cannot clobber it."""
    new = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return new


_IMAGES_JS = """JSON.stringify(Array.from(document.images).map(i => ({
  alt: i.alt, complete: i.complete, width: i.naturalWidth, height: i.naturalHeight})))"""


def inspect_page(
    page: Path, screenshot: Path, width: int = 1280, timeout: float = 60.0
) -> PageReport:
    """Load ``page`` in headless Chromium; return what a reader (and the console) saw."""
    binary = ensure_chromium()
    cmd_r, cmd_w = (_high_fd(fd) for fd in os.pipe())
    out_r, out_w = (_high_fd(fd) for fd in os.pipe())

    def child_fds() -> None:  # chromium reads commands on fd 3 and writes on fd 4
        os.dup2(cmd_r, 3)
        os.dup2(out_w, 4)

    profile = tempfile.mkdtemp(prefix="bench-chromium-")
    proc = subprocess.Popen(
        [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        pass_fds=(3, 4),
        preexec_fn=child_fds,
    )
    os.close(cmd_r)
    os.close(out_w)
    cdp = _Pipe(proc, cmd_w, out_r)
    try:
        target = cdp.send("Target.createTarget", {"url": "about:blank"}, timeout=timeout)
        session = cdp.send("Target.attachToTarget",
                           {"targetId": target["targetId"], "flatten": True})["sessionId"]  # fmt: skip
        for domain in ("Page", "Runtime", "Log", "Network"):
            cdp.send(f"{domain}.enable", session=session)
        cdp.send("Emulation.setDeviceMetricsOverride",
                 {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
                 session=session)  # fmt: skip
        cdp.events.clear()
        cdp.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
        cdp.wait_event("Page.loadEventFired", timeout)

        def evaluate(expr: str) -> Any:
            res = cdp.send("Runtime.evaluate", {"expression": expr, "returnByValue": True},
                           session=session)  # fmt: skip
            return res["result"].get("value")

        images = json.loads(evaluate(_IMAGES_JS))
        text = evaluate("document.body ? document.body.innerText : ''") or ""
        scripts = int(evaluate("document.querySelectorAll('script').length"))
        height = int(evaluate("Math.ceil(document.documentElement.scrollHeight)"))
        scroll_width = int(evaluate("Math.ceil(document.documentElement.scrollWidth)"))
        cdp.send("Emulation.setDeviceMetricsOverride",
                 {"width": width, "height": min(max(height, 600), 16000), "deviceScaleFactor": 1,
                  "mobile": False}, session=session)  # fmt: skip
        shot = cdp.send("Page.captureScreenshot", {"format": "png"}, session=session)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        errors, requests = _console_and_requests(cdp.events)
        with contextlib.suppress(RuntimeError, TimeoutError):
            cdp.send("Browser.close", timeout=5)
        return PageReport(
            images, errors, requests, text, scripts, scroll_width, screenshot, cdp.events
        )
    finally:
        os.close(cmd_w)
        os.close(out_r)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def _console_and_requests(events: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    errors, requests = [], []
    for e in events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            errors.append(
                " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            )
        elif m == "Runtime.exceptionThrown":
            errors.append(p.get("exceptionDetails", {}).get("text", "exception"))
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            errors.append(p["entry"].get("text", ""))
        elif m == "Network.requestWillBeSent":
            requests.append(p.get("request", {}).get("url", ""))
        elif m == "Network.loadingFailed":
            errors.append(f"load failed: {p.get('errorText', '')}")
    return errors, requests
