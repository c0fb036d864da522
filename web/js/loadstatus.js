// The live page's status line while it loads: what is happening right now, in words. Several
// things run at once (the models download while the engine is chosen and the detector loads),
// so the line names each of them. Pure; tested.

/**
 * tasks = {engine: null | 'starting' | 'choosing', detector: bool, models: null | {index, total}
 * (total null until the manifest is read), warmup: bool} -> the status line, e.g.
 * "Choosing the fastest engine; loading the expression model…".
 */
export function loadingText({ engine = null, detector = false, models = null, warmup = false } = {}) {
  if (warmup) return 'Warming up…';
  const loads = [];
  if (detector) loads.push('the face detector');
  if (models) {
    const { index = 0, total = null } = models;
    if (total === 1) loads.push('the expression model');
    else if (total > 1) loads.push(`the expression models (${index + 1} of ${total})`);
    else loads.push('the expression models');
  }
  const parts = [];
  if (engine === 'starting') parts.push('Starting the engine');
  if (engine === 'choosing') parts.push('Choosing the fastest engine');
  if (loads.length) parts.push(`loading ${loads.join(' and ')}`);
  if (!parts.length) return 'Loading…';
  const text = parts.join('; ');
  return `${text[0].toUpperCase()}${text.slice(1)}…`;
}
