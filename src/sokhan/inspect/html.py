"""Write a `Picture` as one standalone HTML file: the data as JSON, drawn by an inline script.

The page needs nothing from the network (no CDN, no web fonts): `view.js`, shipped inside
the package, builds inline SVG (and a list of bars) from the embedded JSON and shows each
cell's, bar's or point's value on hover. The same file draws the web server's Inspect view,
which serves it as /static/view.js. The browser shapes Persian itself; labels only need `dir`/a font.
"""

from __future__ import annotations

import html
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

from sokhan.inspect.picture import Picture
from sokhan.inspect.render import CSS_FONTS, is_rtl

DATA_ID = "sokhan-data"

STYLE = """
body { font-family: %(fonts)s; margin: 1.5em; color: #222; background: #fff; }
h1 { font-size: 1.25em; margin: 0 0 .3em; }
.subtitle { margin: 0 0 1em; color: #444; white-space: pre-wrap; }
#panels { display: grid; grid-template-columns: repeat(%(columns)d, minmax(0, max-content)); gap: 1.2em; }
figure { margin: 0; }
figcaption { font-weight: bold; font-size: .95em; margin-bottom: .3em; }
svg text { font-family: %(fonts)s; }
.tokens { display: flex; flex-wrap: wrap; gap: 3px; max-width: 60em; }
.tokens span { padding: 2px 5px; border: 1px solid #666; border-radius: 3px; white-space: pre; }
.ramp { height: 12px; max-width: 40em; margin-top: .6em; border: 1px solid #999; }
.ramp-labels { display: flex; justify-content: space-between; max-width: 40em; font-size: .85em; }
ol.bars { list-style: none; margin: 0; padding: 0; width: 30em; display: flex; flex-direction: column; gap: .3em; }
.bar { display: grid; grid-template-columns: minmax(3em, 9em) 1fr 4.5em; align-items: center; gap: .5em; }
.bar-token { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; unicode-bidi: plaintext;
             text-align: right; }
.bar-track { height: 1em; background: #eee; border-radius: 3px; overflow: hidden; }
.bar-fill { display: block; height: 100%%; background: #1f77b4; }
.bar-value { font-size: .85em; color: #444; text-align: end; }
#tip { position: fixed; z-index: 10; pointer-events: none; background: #fffbe6; border: 1px solid #aaa;
       padding: 4px 7px; font-size: .9em; border-radius: 3px; box-shadow: 1px 1px 4px #0003; max-width: 30em; }
.note { font-size: .8em; color: #666; }
"""


@lru_cache(maxsize=1)
def view_script() -> str:
    """The page's script, read once from the package (src/sokhan/inspect/view.js)."""
    return resources.files("sokhan.inspect").joinpath("view.js").read_text(encoding="utf-8")


def embed_json(data: object) -> str:
    """JSON safe inside <script>: every '<' written as its escape \\u003c.

    '</script' would close the element early, and '<!--' followed by '<script' would make the
    parser swallow the real '</script>' (the page goes blank); with no '<' at all, neither
    can happen. '<' only occurs inside JSON strings, where the escape reads back the same.
    """
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


def write_html(picture: Picture, path: str | Path) -> Path:
    """One self-contained page per picture: title, the text read (right to left if Persian), panels."""
    data = picture.json()
    subtitle = ""
    if picture.subtitle:
        direction = "rtl" if is_rtl(picture.subtitle) else "ltr"
        lang = ' lang="fa"' if direction == "rtl" else ""
        subtitle = f'<p class="subtitle" dir="{direction}"{lang}>{html.escape(picture.subtitle)}</p>'
    page = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(picture.title)}</title>
<style>{STYLE % {"fonts": CSS_FONTS, "columns": max(1, min(picture.columns, len(picture.panels)))}}</style>
</head>
<body>
<h1 dir="auto">{html.escape(picture.title)}</h1>
{subtitle}
<div id="panels"></div>
<p class="note">Made by <code>sokhan inspect</code>; hover over a cell, bar, token or point to read its value.</p>
<div id="tip" role="tooltip" hidden></div>
<script type="application/json" id="{DATA_ID}">{embed_json(data)}</script>
<script>
{view_script()}
</script>
</body>
</html>
"""
    Path(path).write_text(page, encoding="utf-8")
    return Path(path)


def read_html_data(path: str | Path) -> dict:
    """The JSON a page embeds (what it draws): for tests, and for anyone who wants the numbers back."""
    text = Path(path).read_text(encoding="utf-8")
    start = text.index(f'id="{DATA_ID}">') + len(f'id="{DATA_ID}">')
    end = text.index("</script>", start)
    return json.loads(text[start:end])  # "<\/" is JSON's own escape for "</"
