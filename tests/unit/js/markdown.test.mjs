// The Markdown renderer (dashboard/js/markdown.js): safe by construction, and the few blocks and
// spans model output uses.

import assert from "node:assert/strict";
import { test } from "node:test";

import { escapeHtml, lastBlockBoundary, renderMarkdown } from "../../../dashboard/js/markdown.js";

test("escapeHtml escapes the five characters HTML gives meaning to", () => {
  assert.equal(escapeHtml(`<a href="x">&'`), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
});

test("HTML in the source is shown as text, never as markup", () => {
  assert.equal(renderMarkdown("<script>alert(1)</script>"), "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>");
});

test("a link to http(s) becomes an anchor that opens apart", () => {
  assert.equal(
    renderMarkdown("see [the docs](https://example.com/a?b=1&c=2)"),
    '<p>see <a href="https://example.com/a?b=1&amp;c=2" target="_blank" rel="noopener noreferrer">the docs</a></p>',
  );
});

test("a link to any other scheme stays text", () => {
  assert.equal(renderMarkdown("[x](javascript:alert(1))"), "<p>[x](javascript:alert(1))</p>");
});

test("a quote in a link's URL cannot leave its attribute", () => {
  const html = renderMarkdown('[x](https://e.com/"onmouseover="alert(1))');
  assert.doesNotMatch(html, /href="[^"]*"onmouseover/);
});

test("strong and emphasis", () => {
  assert.equal(renderMarkdown("**bold** and *it* and _it_"), "<p><strong>bold</strong> and <em>it</em> and <em>it</em></p>");
});

test("underscores inside words are text", () => {
  assert.equal(renderMarkdown("set OPENAI_BASE_URL and snake_case_name"), "<p>set OPENAI_BASE_URL and snake_case_name</p>");
});

test("an emphasis may hold words with underscores", () => {
  assert.equal(renderMarkdown("_see snake_case here_"), "<p><em>see snake_case here</em></p>");
});

test("a code span is left as it is, escaped", () => {
  assert.equal(renderMarkdown("run `a *b* <c>`"), "<p>run <code>a *b* &lt;c&gt;</code></p>");
});

test("a fenced block keeps its lines and names its language", () => {
  assert.equal(
    renderMarkdown("```python\nx = 1 < 2\n**not bold**\n```"),
    '<pre><code class="language-python">x = 1 &lt; 2\n**not bold**</code></pre>',
  );
});

test("headings start at h3: the page owns h1 and h2", () => {
  assert.equal(renderMarkdown("# Title\n###### Small"), "<h3>Title</h3><h6>Small</h6>");
});

test("bullets and numbered items become lists, one per kind", () => {
  assert.equal(renderMarkdown("- a\n- b\n1. c"), "<ul><li>a</li><li>b</li></ul><ol><li>c</li></ol>");
});

test("a quote becomes a blockquote", () => {
  assert.equal(renderMarkdown("> wise"), "<blockquote>wise</blockquote>");
});

test("lines of a paragraph keep their breaks; a blank line starts another", () => {
  assert.equal(renderMarkdown("one\ntwo\n\nthree"), "<p>one<br>two</p><p>three</p>");
});

test("Windows line ends read as plain ones", () => {
  assert.equal(renderMarkdown("one\r\ntwo"), "<p>one<br>two</p>");
});

test("streamed text can be cut after its last blank line", () => {
  assert.equal(lastBlockBoundary("para one\n\npara two", false), "para one\n\n".length);
});

test("streamed text has no cut before a blank line arrives", () => {
  assert.equal(lastBlockBoundary("just one paragraph, still streaming", false), -1);
});

test("a blank line inside an open code fence is no cut", () => {
  assert.equal(lastBlockBoundary("```\ncode\n\nmore code", false), -1);
  assert.equal(lastBlockBoundary("```\ncode\n```\n\nafter", false), "```\ncode\n```\n\n".length);
});

test("text that starts inside a fence is cut only after the fence closes", () => {
  assert.equal(lastBlockBoundary("code\n\n```\n\nafter", true), "code\n\n```\n\n".length);
});
