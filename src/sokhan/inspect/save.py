"""Save a `Picture` as NAME.png (matplotlib) and NAME.html (standalone page) in a folder."""

from __future__ import annotations

from pathlib import Path

from sokhan.inspect.html import write_html
from sokhan.inspect.picture import Picture
from sokhan.inspect.png import write_png


def save_picture(picture: Picture, out_dir: str | Path) -> Picture:
    """Write `out_dir/NAME.png` and `out_dir/NAME.html` (the folder is created); the picture remembers their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    picture.png = write_png(picture, out / f"{picture.name}.png")
    picture.html = write_html(picture, out / f"{picture.name}.html")
    return picture
