"""The rating page: server-rendered HTML with one plain form per generation, no scripts.

Every piece of generated text is escaped (it is untrusted model output), messages come from a
fixed table (nothing from the request is reflected), and the response forbids scripts with a
Content-Security-Policy, so the page works in any browser with JavaScript off.
"""

from __future__ import annotations

import html
from pathlib import Path
from string import Template

from .records import Item

STATIC_DIR = Path(__file__).resolve().parent / "static"
SCALES = ("like", "stars")
MESSAGES = {
    "thanks": ("Thanks, your rating is saved.", ""),
    "late": ("Someone was quicker, or the item expired; nothing was saved.", "warn"),
    "unknown": ("That item does not exist (any more).", "warn"),
    "invalid": ("That rating was not understood.", "warn"),
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_template: Template | None = None


def _page_template() -> Template:
    global _template
    if _template is None:
        _template = Template((STATIC_DIR / "rate.html").read_text(encoding="utf-8"))
    return _template


def _buttons(scale: str) -> str:
    if scale == "stars":
        return "".join(
            f'<button type="submit" name="stars" value="{s}" class="star" id="star-{{id}}-{s}"'
            f' aria-label="{s} of 5">{"★" * s}</button>'
            for s in range(1, 6)
        )
    return (
        '<button type="submit" name="value" value="1" class="like" id="like-{id}">Like</button>'
        '<button type="submit" name="value" value="0" class="dislike" id="dislike-{id}">Dislike</button>'
    )


def render_item(item: Item, scale: str, index: int) -> str:
    """One generation and its rating form. Element ids use the position, values the real id."""
    e = html.escape
    buttons = _buttons(scale).replace("{id}", str(index))
    return (
        f'<article class="item" id="item-{index}" data-item="{e(item.id)}">\n'
        f'<p class="prompt">{e(item.prompt)}</p>\n'
        f'<p class="completion">{e(item.completion)}</p>\n'
        f'<form method="post" action="/rate">'
        f'<input type="hidden" name="item_id" value="{e(item.id)}">'
        f'<input type="hidden" name="scale" value="{scale}">'
        f"{buttons}</form>\n</article>"
    )


def render_page(items: list[Item], rater: str, scale: str = "like", message: str = "") -> str:
    """The whole page for a rater; `message` is a key of MESSAGES (anything else is ignored)."""
    scale = scale if scale in SCALES else "like"
    text, cls = MESSAGES.get(message, ("", ""))
    note = f'<p class="message {cls}" id="message">{html.escape(text)}</p>' if text else ""
    body = "\n".join(render_item(it, scale, i) for i, it in enumerate(items))
    if not items:
        body = '<p class="empty" id="empty">Nothing to rate right now. Come back later.</p>'
    return _page_template().substitute(
        rater=html.escape(rater), message=note, items=body, count=len(items), scale=scale
    )


def render_unauthorized() -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Sign in</title>"
        "<link rel='stylesheet' href='/static/rate.css'></head><body><main><h1>Sign in</h1>"
        "<p>This rating page needs the link you were given (it ends in <code>?token=...</code>).</p>"
        "</main></body></html>"
    )


def render_bad_request(status: int = 400) -> str:
    """A request the page cannot serve (not a form, a file, too large, no such path): fixed
    text by status, nothing from the request echoed."""
    title = {404: "Not found", 405: "Method not allowed", 413: "Too large"}.get(
        status, "Bad request"
    )
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{title}</title>"
        f"<link rel='stylesheet' href='/static/rate.css'></head><body><main><h1>{title}</h1>"
        "<p>That request could not be served. Go back to <a href='/rate'>the rating page</a>.</p>"
        "</main></body></html>"
    )
