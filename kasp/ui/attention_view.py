"""bertviz's head view rendered fully offline: vendored d3 and jQuery inlined, no require.js, no CDN.

bertviz 1.4.1 (``head_view(..., html_action="return")``) emits HTML that loads require.js, d3 5.7.0
and jQuery from a CDN. :func:`head_view_html` keeps bertviz's own visualisation code and data, and
rewrites the loader: the two libraries (``assets/vendor``, with their licences) are inlined and the
``requirejs([...], function ($, d3) {...})`` wrapper becomes a direct call. XML namespace
identifiers inside d3 (``http://www.w3.org/2000/svg``, never fetched) are written with an escaped
slash so that the served page contains no ``http://`` or ``https://`` text at all.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import torch

from kasp.ground.resources import vendor_js

D3 = vendor_js("d3-5.7.0.min.js")
JQUERY = vendor_js("jquery-3.7.1.min.js")


def _js(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    if text.startswith("// https://d3js.org"):  # d3's banner line: keep the credit, drop the link
        text = "/* d3 " + text.split("\n", 1)[0].split(" v", 1)[1] + " (d3js.org); BSD-3-Clause, see assets/vendor */" + \
            text.split("\n", 1)[1]
    text = text.replace("http://www.w3.org", "http:\\/\\/www.w3.org")
    return text.replace("</script", "<\\/script")


def head_view_html(attentions: Sequence[torch.Tensor], tokens: list[str], title: str | None = None,
                   layer: int | None = None, heads: list[int] | None = None) -> str:
    """Self-contained HTML of bertviz's head view.

    Args:
        attentions: one tensor per layer, [1, heads, T, T] post-softmax probabilities.
        tokens: the T tokens.
        title: optional heading above the view.
        layer, heads: initially selected layer and heads (bertviz defaults when None).

    Raises:
        RuntimeError: if bertviz's HTML no longer has the expected loader (a bertviz upgrade).
        KaspError: bertviz is not installed (it comes with the extra kasp[app]).
    """
    from kasp.ground.errors import require_extra

    head_view = require_extra("bertviz", "app", "the attention head view").head_view
    html = head_view(attention=tuple(a.detach().float().cpu() for a in attentions), tokens=tokens, layer=layer,
                     heads=heads, html_action="return").data
    html = re.sub(r'<script src="https?://[^"]*require[^"]*"></script>', "", html)
    html = re.sub(r"/\*\*.*?\*\*/", "", html, count=1, flags=re.S)  # the file header comment (with links)
    html, n_cfg = re.subn(r"require\.config\(\{.*?\}\);", "", html, count=1, flags=re.S)
    html, n_req = re.subn(r"requirejs\(\['jquery', 'd3'\],\s*function \(\$, d3\) \{", "(function ($, d3) {", html, count=1)
    if not (n_cfg and n_req):
        raise RuntimeError("unexpected bertviz head_view HTML: cannot replace its require.js loader")
    # the wrapper's closing "});" is the last one in the script
    idx = html.rfind("});")
    html = html[:idx] + "})(window.jQuery, window.d3);" + html[idx + 3:]
    head = f"<h4 style='font-family:sans-serif;margin:4px 0'>{title}</h4>" if title else ""
    libs = f"<script>{_js(JQUERY)}</script>\n<script>{_js(D3)}</script>\n"
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'>{libs}</head><body>{head}{html}</body></html>"


def external_urls(html: str) -> list[str]:
    """Every http(s) URL in ``html`` outside HTML and JS block comments (what a browser might fetch)."""
    text = re.sub(r"<!--.*?-->", "", html, flags=re.S)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.findall(r"https?://[^\s\"'<>)]+", text)
