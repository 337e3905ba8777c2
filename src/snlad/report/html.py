"""The few HTML pieces the report is made of: escaped text, tables, images, one page.

Plain HTML and a short inline stylesheet: the report opens from disk in any
browser, offline, with no script or framework.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1360px; }
h1 { margin-bottom: 4px; } h2 { border-bottom: 2px solid #ccc; padding-bottom: 4px; margin-top: 36px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
table.grid th { text-align: center; }
table.grid td { text-align: center; vertical-align: top; padding: 4px; font-size: 12px; }
table.grid img { display: block; width: 176px; height: 176px; }
img.plot { max-width: 100%; margin: 4px 8px 4px 0; vertical-align: top; }
.note { color: #666; font-size: 13px; } nav a { margin-right: 12px; }
.side { display: flex; flex-wrap: wrap; column-gap: 24px; } .side table { font-size: 12px; } .side td, .side th { padding: 2px 5px; }
"""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def table(header: Sequence[str], rows: Sequence[Sequence[str]], attributes: str = "") -> str:
    """A table of plain-text cells (escaped here)."""
    head = "".join(f"<th>{esc(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table {attributes}><tr>{head}</tr>{body}</table>"


def image(source: str, alt: str, css_class: str = "") -> str:
    return f'<img src="{esc(source)}" alt="{esc(alt)}" class="{esc(css_class)}">'


def page(title: str, parts: Sequence[str]) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f"<style>{_STYLE}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n"
    )
