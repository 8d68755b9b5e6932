"""report.html: a run's report as one page to read in the morning, offline and without a
server: the totals, then what failed or was interrupted, then a gallery per job.

`render_report` is a pure function of the report's data (the dict report.json holds), so
the studio can show a run inside its own page with its own links (`href`)."""

from __future__ import annotations

import os
from fractions import Fraction
from html import escape
from pathlib import PurePath
from typing import Callable
from urllib.parse import quote

from ..media.files import printable
from ..video.summary import holding_up

Href = Callable[[str], str]  # a path relative to the output folder -> the link to it

FRAMES = ("first", "middle", "last")

CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
h1 { margin: 0 0 .2em; font-size: 1.5em; }
h2 { margin: 1.5em 0 .5em; border-bottom: 1px solid #ccc; }
h3 { margin: 0 0 .4em; font-size: 1em; word-break: break-all; }
code { background: #eee; padding: 0 .3em; }
.totals { display: flex; gap: 1.5em; margin: 1em 0; }
.totals div { background: #fff; border: 1px solid #ddd; padding: .4em .8em; }
.totals dt { font-size: .8em; color: #666; }
.totals dd { margin: 0; font-size: 1.4em; font-weight: bold; }
.totals .failed.some dd, .totals .interrupted.some dd { color: #b00020; }
.problems li { background: #fff0f0; border-left: 4px solid #b00020; padding: .4em .8em; margin: .4em 0; list-style: none; }
.problems li.interrupted { background: #fff8e6; border-color: #c77700; }
.mark { font-weight: bold; text-transform: uppercase; color: #b00020; }
.interrupted .mark { color: #c77700; }
.flags { color: #b00020; margin: .2em 0; padding-left: 1.2em; }
.reason { margin: .2em 0 0; font-family: monospace; white-space: pre-wrap; }
.gallery { display: flex; flex-wrap: wrap; gap: 1em; }
.item { background: #fff; border: 1px solid #ddd; padding: .8em; max-width: 820px; }
.thumbs { display: flex; flex-wrap: wrap; gap: .5em; align-items: flex-end; }
figure { margin: 0; }
figcaption { font-size: .8em; color: #666; }
img { display: block; height: 128px; width: auto; max-width: 256px; object-fit: contain; background: #eee; }
.facts { margin: .4em 0 0; color: #444; }
.flicker { font-weight: bold; }
"""


def relative_href(path: str) -> str:
    """report.html sits in the output folder: a relative URL, quoted so that spaces, # and %
    in names survive (and a ':' cannot read as a scheme)."""
    return quote(os.fsencode(PurePath(path).as_posix()))  # bytes: a name that is not UTF-8 links to its own bytes


def render_report(data: dict, href: Href = relative_href) -> str:
    """The whole page for a report's data: manifest, started, finished, totals, items
    (and output_dir, against which outputs are linked)."""
    items = data["items"]
    root = data.get("output_dir") or os.curdir
    jobs: dict[str, list[dict]] = {}
    for record in items:
        if record["status"] in ("done", "skipped"):
            jobs.setdefault(record["job"], []).append(record)
    body = [_header(data), _problems(items, "failed"), _problems(items, "interrupted")]
    body += [_job(job, records, root, href) for job, records in jobs.items()]
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>Run report: {_e(data['manifest'])}</title><style>{CSS}</style></head>\n"
            f"<body>\n{''.join(body)}</body></html>\n")


def _header(data: dict) -> str:
    finished = _e(data["finished"]) if data.get("finished") else "running…"
    totals = "".join(f'<div class="{_e(name)}{" some" if value else ""}"><dt>{_e(name)}</dt><dd>{_e(_total(name, value))}</dd></div>'
                     for name, value in data["totals"].items())
    return (f"<header><h1>Run report</h1><p>manifest <code>{_e(data['manifest'])}</code></p>"
            f"<p>started {_e(data['started'])} · finished {finished}</p>"
            f'<dl class="totals">{totals}</dl></header>\n')


def _total(name: str, value) -> str:
    return f"{value:.1f} s" if name == "seconds" else str(value)


def _problems(items: list[dict], status: str) -> str:
    """Items that did not finish, each with its reason, before any gallery."""
    found = [r for r in items if r["status"] == status]
    if not found:
        return ""
    rows = "".join(f'<li class="{status}"><span class="mark">{status}</span> '
                   f'<b class="job">{_e(r["job"])}</b> · <span class="input">{_e(_name(r["input"]))}</span> × '
                   f'<span class="style">{_e(r["style"])}</span>'
                   f'<p class="reason">{_e(r.get("error") or "no reason recorded")}</p></li>' for r in found)
    return f'<section class="problems {status}"><h2>{status.capitalize()} ({len(found)})</h2><ul>{rows}</ul></section>\n'


def _job(job: str, records: list[dict], root: str, href: Href) -> str:
    cards = "".join(_item(record, root, href) for record in records)
    return f'<section class="job"><h2>{_e(job)}</h2><div class="gallery">{cards}</div></section>\n'


def _item(record: dict, root: str, href: Href) -> str:
    """One output: its inputs and result as thumbnails (a clip: three frames of each), and its figures."""
    link = href(os.path.relpath(record["output"], root))
    name = _name(record["output"])
    thumbs = record.get("thumbnails") or {}
    styles = sorted((key for key in thumbs if key.startswith("style-")), key=lambda key: int(key.removeprefix("style-")))
    style_figures = "".join(_figure(thumbs, key, f"style {key.removeprefix('style-')}", href) for key in styles)
    if record.get("video") is None:
        pictures = (_figure(thumbs, "content", f"content: {_name(record['input'])}", href) + style_figures
                    + _figure(thumbs, "result", f"result: {name}", href, link))
        rows = f'<div class="thumbs">{pictures}</div>'
    else:
        rows = (f'<div class="thumbs">{style_figures}</div>'
                + _frames(thumbs, "in", f"input: {_name(record['input'])}", href)
                + _frames(thumbs, "out", f"output: {name}", href, link)
                + _clip_facts(record["video"], link))
    return (f'<article class="item {_e(record["status"])}"><h3><a href="{_e(link)}">{_e(name)}</a></h3>'
            f"{rows}{_facts(record)}</article>")


def _frames(thumbs: dict, side: str, label: str, href: Href, link: str | None = None) -> str:
    figures = "".join(_figure(thumbs, f"{side}-{at}", f"{label}, {at} frame", href, link) for at in FRAMES)
    return f'<div class="thumbs frames {side}">{figures}</div>'


def _figure(thumbs: dict, key: str, label: str, href: Href, link: str | None = None) -> str:
    """A thumbnail with its caption; nothing where it could not be made."""
    thumb = thumbs.get(key)
    if not thumb:
        return ""
    image = (f'<img src="{_e(href(thumb["path"]))}" width="{int(thumb["width"])}" height="{int(thumb["height"])}" '
             f'alt="{_e(label)}">')
    if link:
        image = f'<a href="{_e(link)}">{image}</a>'
    return f'<figure class="{_e(key)}">{image}<figcaption>{_e(key.replace("-", " "))}</figcaption></figure>'


def _facts(record: dict) -> str:
    facts = [record["status"]]
    if record["status"] == "done":
        facts.append(f"{record['seconds']:.1f} s")
    if record.get("iterations"):
        facts.append(f"{record['iterations']} steps")
    losses = ", ".join(f"{name} {value:.3g}" for name, value in (record.get("losses") or {}).items() if value)
    facts += [f"losses: {losses}"] if losses else []
    return f'<p class="facts">{_e(" · ".join(facts))}</p>'


def _clip_facts(video: dict, link: str) -> str:
    flicker = video.get("flicker_ratio")
    facts = [f"{video.get('frames_out')} frames", f"{_fps(video.get('fps_out'))} fps", f"{_seconds(video.get('duration_out'))} long",
             "audio kept" if video.get("audio_kept") else "no audio", f"{_seconds(video.get('seconds_per_frame'))}/frame"]
    facts += [f"{video['passes']} passes"] if video.get("passes", 1) > 1 else []
    ratio = f"{flicker:.2f}" if flicker is not None else "n/a"
    independent = video.get("flicker_ratio_independent")
    ratio += f" (independent flow: {independent:.2f})" if independent is not None else ""
    flagged = "".join(f"<li>{_e(flag)}</li>" for flag in video.get("flags") or [])
    holding = "".join(f"{part} · " for part in holding_up(video))
    return (f'<p class="facts video">{_e(" · ".join(facts))} · <span class="flicker">flicker ratio {_e(ratio)}</span> · '
            f'{_e(holding)}<a href="{_e(link)}">open the video</a></p>'
            + (f'<ul class="flags">{flagged}</ul>' if flagged else ""))


def _fps(value) -> str:
    try:
        return f"{float(Fraction(value)):.2f}"
    except (TypeError, ValueError, ZeroDivisionError):
        return "?"


def _seconds(value) -> str:
    return f"{value:.2f} s" if isinstance(value, (int, float)) else "? s"


def _name(path: str) -> str:
    return PurePath(path).name


def _e(text) -> str:
    return escape(printable(str(text)), quote=True)
