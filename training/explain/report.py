"""explain.html: one self-contained page (inline CSS, PNGs as base64 data URIs, no script) that
opens anywhere, from the explain.json document and the pictures `build` made.

Sections, most telling first: headline numbers, where the model errs (confusion matrix, the
paper's named pairs, the most confused pairs, per class), where it looks (class-average maps),
the surest mistakes, a gallery per confused pair, how it was made. Text stays text (tables and
captions), so the page reads without the pictures too.
"""

from __future__ import annotations

from html import escape

from training.core.report import pct

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;
background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{font-size:26px;margin:0 0 4px} h2{font-size:20px;margin:36px 0 8px;border-bottom:2px solid #dde;
padding-bottom:4px} h3{font-size:16px;margin:20px 0 6px}
.sub{color:#5a6275;margin:0 0 14px} .warn{background:#fff4d6;border:1px solid #f0d58a;
padding:8px 12px;border-radius:6px;font-size:13px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.card{background:#fff;border:1px solid #e1e4ea;border-radius:8px;padding:10px 14px;min-width:150px}
.card b{display:block;font-size:24px} .card span{color:#5a6275;font-size:13px}
.row{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}
.row>div{flex:1 1 380px}
.row>div.fig{flex:0 1 560px}
table{border-collapse:collapse;background:#fff;font-size:14px}
th,td{border:1px solid #e1e4ea;padding:4px 8px;text-align:right} th{background:#eef0f4}
td:first-child,th:first-child,td.l{text-align:left}
.bar{display:inline-block;height:8px;background:#4a7bd0;border-radius:2px;vertical-align:middle;
margin-left:6px}
.bad{background:#d0584a} tr.joint td{font-style:italic;color:#5a6275}
.gallery{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;background:#fff;border:1px solid #e1e4ea;border-radius:8px;padding:6px}
figure img{display:block;image-rendering:auto} figcaption{font-size:12px;color:#3a4150;
margin-top:4px}
img.wide{max-width:100%;height:auto;background:#fff;border:1px solid #e1e4ea;border-radius:8px}
img.cm{max-width:min(100%,560px)}
.legend{font-size:13px;color:#5a6275} code{background:#eef0f4;padding:1px 4px;border-radius:3px}
"""


def _img(b64: str, alt: str, cls: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f'<img{klass} alt="{escape(alt)}" src="data:image/png;base64,{b64}">'


def _bar(rate: float, bad: bool = False) -> str:
    width = max(1, round(80 * rate))
    return f'<span class="bar{" bad" if bad else ""}" style="width:{width}px"></span>'


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _rate_cell(p: dict) -> str:
    return f"{pct(p['rate'], 1)} ({p['count']}/{p['support']}){_bar(p['rate'], True)}"


def _share_cells(p: dict) -> str:
    """Two cells: the share of the true class (with a bar) and count / support."""
    return (f"<td>{pct(p['rate'], 1)}{_bar(p['rate'], True)}</td>"
            f"<td>{p['count']} / {p['support']}</td>")


def _panels(methods: list[str]) -> str:
    names = {"occlusion": "occlusion", "gradcam": "Grad-CAM"}
    parts = ["face"] + [f"{names[m]} for <i>{w}</i>" for m in methods
                        for w in ("predicted", "true")]
    return " · ".join(parts)


def _gallery(examples: list[dict], tiles: dict) -> str:
    if not examples:
        return '<p class="legend">None in this split.</p>'
    figs = []
    for e in examples:
        cap = (f"#{e['index']}: <b>{escape(e['true'])}</b> → <b>{escape(e['pred'])}</b> "
               f"p={e['prob_pred']:.2f} (true {e['prob_true']:.2f})")
        figs.append(f"<figure>{_img(tiles[e['index']], 'split image ' + str(e['index']))}"
                    f"<figcaption>{cap}</figcaption></figure>")
    return f'<div class="gallery">{"".join(figs)}</div>'


def render_html(doc: dict, images: dict) -> str:
    """The page for one explain.json document; images: confusion, classes (base64 PNG) and
    tiles {split index: base64 PNG}."""
    mode = "flip TTA" if doc["tta"] else "no TTA"
    per_class = doc["per_class"]
    worst = min(per_class, key=lambda k: per_class[k]["recall"])
    top = doc["top_pairs"][0] if doc["top_pairs"] else None
    sample = (f"a stratified sample of {doc['n']} of its {doc['n_split']} images"
              if doc["indices"] is not None else f"all {doc['n']} images")
    methods = doc["saliency"]["methods"]

    cards = [
        (pct(doc["accuracy"]), f"accuracy ({mode})"),
        (pct(doc["macro_f1"]), "macro-F1"),
        (f"{worst}", f"weakest class: {pct(per_class[worst]['recall'], 1)} right"),
    ]
    if top:
        cards.append((f"{top['true']} → {top['pred']}",
                      f"most common mistake: {top['count']} images, {pct(top['rate'], 1)} of "
                      f"{top['true']}"))
    for p in doc["named_pairs"]:
        cards.append((pct(p["joint_rate"], 1), f"{p['pair']} swapped (both ways)"))
    cards_html = "".join(f'<div class="card"><b>{escape(v)}</b><span>{escape(t)}</span></div>'
                         for v, t in cards)

    named_rows = []
    for p in doc["named_pairs"]:
        ab, ba = p["a_to_b"], p["b_to_a"]
        both = ab["count"] + ba["count"], ab["support"] + ba["support"]
        named_rows += [
            f'<tr><td rowspan="3">{escape(p["pair"])}</td>'
            f'<td class="l">{escape(ab["true"])} → {escape(ab["pred"])}</td>'
            f"{_share_cells(ab)}</tr>",
            f'<tr><td class="l">{escape(ba["true"])} → {escape(ba["pred"])}</td>'
            f"{_share_cells(ba)}</tr>",
            f'<tr class="joint"><td class="l">both ways</td><td>{pct(p["joint_rate"], 1)}</td>'
            f"<td>{both[0]} / {both[1]}</td></tr>"]
    named = ("<table><thead><tr><th>pair</th><th>true → predicted</th><th>share</th>"
             f"<th>images</th></tr></thead><tbody>{''.join(named_rows)}</tbody></table>")
    pairs = _table(["true → predicted", "images", "share of the true class"], [
        [f"{escape(p['true'])} → {escape(p['pred'])}", str(p["count"]), _rate_cell(p)]
        for p in doc["top_pairs"]])
    classes = doc["saliency"]["classes"]
    class_rows = []
    for label, v in per_class.items():
        row = [escape(label), f"{pct(v['recall'], 1)}{_bar(v['recall'])}", pct(v["precision"], 1),
               pct(v["f1"], 1), str(v["support"])]
        for m in methods:
            s = classes[label].get(m)
            share = s["upper_half_share"] if s else None
            row.append(pct(share, 0) if share is not None else "-")
        class_rows.append(row)
    class_table = _table(["class", "accuracy (recall)", "precision", "F1", "images"]
                         + [f"{m}: evidence above mid-face" for m in methods], class_rows)

    pair_sections = "".join(
        f"<h3>{escape(g['true'])} → {escape(g['pred'])}: {g['count']} images "
        f"({pct(g['rate'], 1)} of {escape(g['true'])})</h3>"
        + _gallery(g["examples"], images["tiles"]) for g in doc["pair_galleries"])

    how = [f"Target <code>{escape(doc['path'])}</code> ({escape(doc['kind'])}), split "
           f"{escape(doc['split_name'])}, {sample}, {mode}; predictions "
           f"{escape(doc['predictions'])}."]
    if "occlusion" in doc["saliency"]:
        o = doc["saliency"]["occlusion"]
        how.append(f"<b>Occlusion</b>: a {o['patch']}×{o['patch']} patch of the image's mean grey "
                   f"slides with stride {o['stride']}; a pixel's value is the mean drop of the "
                   "class probability over the patches covering it. Model-agnostic: the same "
                   "method for Keras models and the shipped TF.js graphs.")
    if "gradcam" in doc["saliency"]:
        g = doc["saliency"]["gradcam"]
        how.append(f"<b>Grad-CAM</b> at layer <code>{escape(g['layer'])}</code> "
                   f"({g['map_size'][0]}×{g['map_size'][1]} feature map, upsampled bilinearly), "
                   "gradient of log p(class); each map scaled to max 1.")
    how.append(f"Class averages: up to {doc['saliency']['maps_per_class']} images per true class "
               f"(seed {doc['seed']}), {doc['saliency']['images_mapped']} images mapped in all. "
               f"Took {doc['seconds']['total']} s. Numbers: <code>explain.json</code>.")

    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>explain: {escape(doc['target'])} on {escape(doc['split_name'])}</title>
<style>{_CSS}</style></head><body><main>
<h1>{escape(doc['target'])}: what it gets wrong, and where it looks</h1>
<p class="sub">{escape(doc['split_name'])}, {sample}, {mode} · {escape(doc['created'])}</p>
<p class="warn">This page shows faces from the dataset ({escape(doc['split_name'])}):
research-only images. Keep it out of git and do not publish it; <code>explain.json</code> holds
the numbers alone.</p>
<div class="cards">{cards_html}</div>

<h2>Where it errs</h2>
<div class="row"><div class="fig">{_img(images['confusion'], 'confusion matrix', 'wide cm')}</div>
<div><h3>The paper's hard pairs</h3>{named}
<p class="legend">Share: of the images of the true class, how many were predicted as the other
one; "both ways" pools the two directions over both classes' images.</p>
<h3>Most confused pairs</h3>{pairs}</div></div>
<h3>Per class</h3>{class_table}

<h2>Where it looks</h2>
<p class="legend">Each column: the average face of a class, and the average map of where the
evidence <i>for that class</i> lies (warm = strongest evidence; for occlusion: hiding this
region lowers the class's probability most). "Evidence above mid-face": share of the positive
map in the upper half (eyes, brows) rather than the lower (nose, mouth).</p>
{_img(images['classes'], 'class-average saliency maps', 'wide')}

<h2>Surest mistakes</h2>
<p class="legend">Wrong answers given with the highest probability: where to look for label
noise and for faces that really are ambiguous. Panels: {_panels(methods)}.</p>
{_gallery(doc['confident_mistakes'], images['tiles'])}

<h2>Most confused pairs, by example</h2>
<p class="legend">Panels: {_panels(methods)}.</p>
{pair_sections or '<p class="legend">No confusions.</p>'}

<h2>How this was made</h2>
{''.join(f'<p>{h}</p>' for h in how)}
</main></body></html>
"""
