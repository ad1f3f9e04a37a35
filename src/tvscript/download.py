"""Fetch the Seinfeld corpus from its public URL and verify its sha256."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from .errors import TvscriptError

SEINFELD_URL = (
    "https://raw.githubusercontent.com/udacity/deep-learning-v2-pytorch/master/"
    "project-tv-script-generation/data/Seinfeld_Scripts.txt"
)
SEINFELD_SHA256 = "456ab68e2694b90ce5cccc384d5e7d8c79e33334856a60333fb5348d3696d3f6"
SEINFELD_NAME = "Seinfeld_Scripts.txt"


def download(dest: str | Path = "data", url: str = SEINFELD_URL, sha256: str = SEINFELD_SHA256,
             name: str = SEINFELD_NAME, timeout: float = 60.0) -> Path:
    """Download to DEST/NAME (atomically; an existing verified copy is kept)."""
    target = Path(dest) / name
    if target.exists() and _sha256(target.read_bytes()) == sha256:
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise TvscriptError(f"cannot create {target.parent}: {err.strerror}") from None
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read()
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise TvscriptError(f"download of {url} failed ({reason}); check the network or pass --data with a local copy") from None
    digest = _sha256(data)
    if digest != sha256:
        raise TvscriptError(f"{url} has sha256 {digest[:12]}..., expected {sha256[:12]}...; not saved")
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, target)
    return target


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
