// The pages' message box (a `role="alert"` element): a bold title and one paragraph. Text only,
// never HTML, since messages often carry server or exception text.

/** Show `title` and `text` in `box`; `kind` ('error' | 'warning' | 'ok') picks the styling. */
export function showMessage(box, title, text, kind = 'error') {
  const h = document.createElement('strong');
  h.textContent = title;
  const p = document.createElement('p');
  p.textContent = text;
  box.replaceChildren(h, p);
  box.dataset.kind = kind;
  box.hidden = false;
}

export function hideMessage(box) { box.hidden = true; }

/**
 * `parts` as one text of sentences: each part ends with exactly one full stop (an exception's
 * message may or may not bring its own), so "…browser." + "Reload…" never reads "browser..".
 */
export function sentences(...parts) {
  return parts.filter(Boolean).map((p) => {
    const t = String(p).trim();
    return /[.!?…]$/.test(t) ? t : `${t}.`;
  }).join(' ');
}
