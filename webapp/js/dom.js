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
