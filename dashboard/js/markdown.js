// @ts-check
// A small, safe Markdown renderer for model output.
//
// Safety comes from the order of work: every piece of source text is HTML-escaped *before* any
// markup is added, and the only markup added is a fixed set of tags. Link targets must be http(s).
// So model output and tool results can never inject HTML or script.

/** @type {Record<string, string>} */
const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/** @param {unknown} text @returns {string} */
export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

// Emphasis in escaped text. A delimiter opens only where it does not follow a letter, digit or
// underscore and does not precede a space; it closes only where it does not follow a space and
// does not precede a word character. So intraword underscores (snake_case, OPENAI_BASE_URL) are
// text, and an emphasis may contain them: `_see snake_case here_`.
/** @param {string} s */
function emphasis(s) {
  return s
    .replace(/\*\*(?!\s)([^\n]*?[^\s*])\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[^\w*])\*(?![\s*])([^\n]*?[^\s*])\*(?![\w*])/g, "$1<em>$2</em>")
    .replace(/(^|[^\w])_(?![\s_])([^\n]*?[^\s_])_(?!\w)/g, "$1<em>$2</em>");
}

const LINK = /\[([^\]\n]+)\]\((https?:\/\/[^\s)]+)\)/g;

// Code spans are left alone; links become <a> (their label may have emphasis, their URL never).
/** @param {string} text @returns {string} */
function inline(text) {
  return text
    .split(/(`[^`\n]+`)/g)
    .map((part, i) => {
      if (i % 2 === 1) return `<code>${escapeHtml(part.slice(1, -1))}</code>`;
      /** @type {string[]} */
      const pieces = [];
      let at = 0;
      for (const m of part.matchAll(LINK)) {
        pieces.push(emphasis(escapeHtml(part.slice(at, m.index))));
        pieces.push(`<a href="${escapeHtml(m[2])}" target="_blank" rel="noopener noreferrer">${emphasis(escapeHtml(m[1]))}</a>`);
        at = m.index + m[0].length;
      }
      pieces.push(emphasis(escapeHtml(part.slice(at))));
      return pieces.join("");
    })
    .join("");
}

/**
 * Render Markdown source to an HTML string built only from escaped text and fixed tags.
 * @param {unknown} source
 * @returns {string}
 */
export function renderMarkdown(source) {
  const lines = String(source).replace(/\r\n?/g, "\n").split("\n");
  /** @type {string[]} */
  const out = [];
  /** @type {string[]} */
  let paragraph = [];
  /** @type {{tag: "ul" | "ol", items: string[]} | null} */
  let list = null;
  const flushParagraph = () => {
    if (paragraph.length) out.push(`<p>${inline(paragraph.join("\n")).replace(/\n/g, "<br>")}</p>`);
    paragraph = [];
  };
  const flushList = () => {
    if (list) out.push(`<${list.tag}>${list.items.map((i) => `<li>${inline(i)}</li>`).join("")}</${list.tag}>`);
    list = null;
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const fence = line.match(/^\s*```\s*([\w+-]*)\s*$/);
    if (fence) {
      flushParagraph();
      flushList();
      const code = [];
      for (i++; i < lines.length && !/^\s*```\s*$/.test(lines[i]); i++) code.push(lines[i]);
      const lang = fence[1] ? ` class="language-${escapeHtml(fence[1])}"` : "";
      out.push(`<pre><code${lang}>${escapeHtml(code.join("\n"))}</code></pre>`);
      continue;
    }
    const heading = line.match(/^(#{1,6})\s+(.*)$/);
    const bullet = line.match(/^\s*[-*+]\s+(.*)$/);
    const ordered = line.match(/^\s*\d+[.)]\s+(.*)$/);
    const quote = line.match(/^>\s?(.*)$/);
    if (heading) {
      flushParagraph();
      flushList();
      const level = Math.min(heading[1].length + 2, 6); // the page owns h1/h2
      out.push(`<h${level}>${inline(heading[2])}</h${level}>`);
    } else if (bullet || ordered) {
      flushParagraph();
      const tag = bullet ? "ul" : "ol";
      if (!list || list.tag !== tag) {
        flushList();
        list = { tag, items: [] };
      }
      list.items.push(/** @type {RegExpMatchArray} */ (bullet || ordered)[1]);
    } else if (quote) {
      flushParagraph();
      flushList();
      out.push(`<blockquote>${inline(quote[1])}</blockquote>`);
    } else if (!line.trim()) {
      flushParagraph();
      flushList();
    } else {
      flushList();
      paragraph.push(line);
    }
  }
  flushParagraph();
  flushList();
  return out.join("");
}

// Where streamed text can be cut into finished blocks: the last blank line outside a code fence.
// Returns the index just after it, or -1.
/** @param {string} text @param {boolean} fenceOpen whether `text` starts inside a code fence @returns {number} */
export function lastBlockBoundary(text, fenceOpen) {
  let open = fenceOpen;
  let boundary = -1;
  let pos = 0;
  for (const line of text.split("\n")) {
    const end = pos + line.length + 1;
    if (/^\s*```/.test(line)) open = !open;
    else if (!open && !line.trim() && end <= text.length) boundary = end;
    pos = end;
  }
  return boundary;
}
