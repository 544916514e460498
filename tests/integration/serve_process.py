"""A `rewardloop serve` stack (one in-process replica, no Ray) as its own process, so a test
can SIGKILL it: `python serve_process.py OUT_DIR [KEY=VALUE ...]`; it writes the API's URL to
OUT_DIR/url when it serves, and runs until killed."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from serve_testutil import build  # noqa: E402

if __name__ == "__main__":
    out = Path(sys.argv[1])
    st = build(out, *sys.argv[2:], start_loop=True)
    (out / "url.tmp").write_text(st.server.url)
    (out / "url.tmp").rename(out / "url")
    threading.Event().wait()
