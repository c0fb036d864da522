// Draws boxes, the top label and a small probability bar chart per face onto a canvas whose
// pixel grid equals the source frame (the canvas is CSS-scaled like the video underneath).
import { argmax } from './classifier.js';

export const COLORS = {
  angry: '#ff5252', disgust: '#8bc34a', fear: '#b388ff', happy: '#ffd740',
  sad: '#40c4ff', surprise: '#ff80ab', neutral: '#e0e0e0',
};

/**
 * faces: [{box:{x,y,w,h}, probs, id}] in frame pixels; labels: label names.
 * mirror: the video is shown mirrored (front camera), so boxes are mirrored but text is not.
 */
export function drawOverlay(canvas, faces, labels, { width, height, mirror = false } = {}) {
  if (width && (canvas.width !== width || canvas.height !== height)) { canvas.width = width; canvas.height = height; }
  const ctx = canvas.getContext('2d');
  const W = canvas.width, H = canvas.height;
  ctx.clearRect(0, 0, W, H);
  const unit = Math.max(14, Math.round(Math.min(W, H) / 24));
  for (const f of faces) {
    const b = f.box;
    const x = mirror ? W - b.x - b.w : b.x;
    const best = f.probs ? argmax(f.probs) : -1;
    const label = best >= 0 ? labels[best] : 'face';
    const color = COLORS[label] || '#ffffff';
    ctx.lineWidth = Math.max(2, unit / 5);
    ctx.strokeStyle = '#000';
    ctx.strokeRect(x - 1, b.y - 1, b.w + 2, b.h + 2);
    ctx.strokeStyle = color;
    ctx.strokeRect(x, b.y, b.w, b.h);
    // Label tag above the box (below it when at the top edge).
    const text = best >= 0 ? `${label} ${Math.round(f.probs[best] * 100)}%` : label;
    ctx.font = `600 ${unit}px system-ui, sans-serif`;
    const tw = ctx.measureText(text).width + unit * 0.8;
    const th = unit * 1.5;
    const ty = b.y - th >= 0 ? b.y - th : b.y + b.h;
    ctx.fillStyle = color;
    ctx.fillRect(x, ty, tw, th);
    ctx.fillStyle = '#000';
    ctx.textBaseline = 'middle';
    ctx.fillText(text, x + unit * 0.4, ty + th / 2);
    if (!f.probs) continue;
    // Bar chart under (or inside) the box.
    const rowH = Math.max(9, unit * 0.9), chartW = Math.max(b.w, unit * 10);
    const chartH = rowH * labels.length + 4;
    let cy = b.y + b.h + (ty === b.y + b.h ? th : 0) + 4;
    if (cy + chartH > H) cy = Math.max(0, b.y + b.h - chartH);
    const cx = Math.min(Math.max(0, x), W - chartW);
    ctx.fillStyle = 'rgba(0,0,0,0.72)';
    ctx.fillRect(cx, cy, chartW, chartH);
    ctx.font = `${Math.round(rowH * 0.8)}px system-ui, sans-serif`;
    const nameW = rowH * 4.6;
    labels.forEach((name, k) => {
      const y = cy + 2 + k * rowH;
      ctx.fillStyle = '#fff';
      ctx.fillText(name, cx + 3, y + rowH / 2);
      ctx.fillStyle = COLORS[name] || '#fff';
      ctx.fillRect(cx + nameW, y + 1, Math.max(1, (chartW - nameW - 4) * f.probs[k]), rowH - 2);
    });
  }
}
