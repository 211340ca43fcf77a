"""The `<script>` tag of connect.js that docs/api.md publishes ("Embed it in your app"): its versioned,
immutable URL and its Subresource Integrity hash, computed from functions/connect_script/connect.js
exactly as the API serves it (`teams_connect.http.assets.StaticScript`: version = the first 16 hex
digits of the SHA-256, integrity = sha384).

    python -m tools.connect_js_tag          # rewrite the block in docs/api.md
    python -m tools.connect_js_tag --check  # exit 1 when the block is stale (tests/docs does this too)
"""

from __future__ import annotations

import base64
import hashlib
import sys
from pathlib import Path

from tools.docs_blocks import replace_block

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "functions" / "connect_script" / "connect.js"
DOC = ROOT / "docs" / "api.md"
BLOCK = "connect-js-tag"
EXAMPLE_ORIGIN = "https://connect.example.com"


def version_and_integrity(body: bytes) -> tuple[str, str]:
    version = hashlib.sha256(body).hexdigest()[:16]
    integrity = "sha384-" + base64.b64encode(hashlib.sha384(body).digest()).decode("ascii")
    return version, integrity


def block() -> str:
    version, integrity = version_and_integrity(SCRIPT.read_bytes())
    return (
        "```html\n"
        f'<script src="{EXAMPLE_ORIGIN}/connect/v1/connect.js?v={version}"\n'
        f'        integrity="{integrity}" crossorigin="anonymous"></script>\n'
        "```"
    )


def main(argv: list[str]) -> int:
    if "--check" in argv:
        text = DOC.read_text(encoding="utf-8")
        if block() not in text:
            print("docs/api.md: the connect.js tag is stale; run python -m tools.connect_js_tag")
            return 1
        return 0
    changed = replace_block(DOC, BLOCK, "\n" + block() + "\n")
    print("docs/api.md updated" if changed else "docs/api.md already current")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
