"""connect.js as published: its size budget and the `<script>` tag (version + SRI) in docs/api.md."""

from __future__ import annotations

import gzip
import re

from tools import connect_js_tag


def test_the_docs_publish_the_current_version_and_integrity() -> None:
    assert connect_js_tag.main(["--check"]) == 0
    version, integrity = connect_js_tag.version_and_integrity(connect_js_tag.SCRIPT.read_bytes())
    text = connect_js_tag.DOC.read_text(encoding="utf-8")
    assert f"connect.js?v={version}" in text
    assert f'integrity="{integrity}"' in text


def test_connect_js_stays_within_4_kb_gzipped_and_has_no_dependencies() -> None:
    body = connect_js_tag.SCRIPT.read_bytes()
    assert len(gzip.compress(body, compresslevel=9)) <= 4096
    source = body.decode("utf-8")
    assert not re.search(r"\b(import|require)\s*\(|^\s*import\s", source, re.M)
    assert "postMessage" in source
    assert '"*"' not in source
    assert "'*'" not in source
