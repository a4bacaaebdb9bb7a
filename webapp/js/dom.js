// A tiny element builder: el('p', {class: 'x', style: {color: 'red'}}, 'text', child). Text is always set as
// text, never HTML.
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'muted') node.muted = true;
    // Styles go through the CSSOM: the app's CSP (style-src 'self') refuses style attributes.
    if (name === 'style' && typeof value === 'object') {
      for (const [property, v] of Object.entries(value)) node.style.setProperty(property, v);
      continue;
    }
    node.setAttribute(name, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function formatTime(epochSeconds) {
  return epochSeconds ? new Date(epochSeconds * 1000).toLocaleString() : '';
}

// A chart canvas sized to its box at the screen's pixel density, cleared, drawn in CSS pixels.
export function clearedCanvas(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const box = canvas.getBoundingClientRect();
  canvas.width = Math.max(1, Math.round(box.width * ratio));
  canvas.height = Math.max(1, Math.round(box.height * ratio));
  const ctx = canvas.getContext('2d');
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, box.width, box.height);
  return { ctx, box };
}
