// @ts-check
// The answer panel: the run's streamed text as Markdown, in a bounded box that scrolls.
//
// It follows the stream (stays scrolled to the bottom) until the reader scrolls up; then it stays
// where they are, and following resumes when they scroll back to the bottom (or press "Follow").
// The text is rendered incrementally: finished blocks become Markdown once, the open tail is a
// text node we append to, so a model streaming thousands of tokens a second costs little.

import { h } from "./dom.js";
import { actor } from "./run-model.js";
import { lastBlockBoundary, renderMarkdown } from "./markdown.js";

const NEAR_BOTTOM = 8; // px: closer than this to the bottom counts as at the bottom

export function answerPanel() {
  let pending = "";
  let tail = "";
  let finished = false;
  let following = true;
  const blocks = h("div", { class: "blocks" });
  const tailNode = document.createTextNode("");
  const box = h("div", {
    class: "answer", id: "answer", role: "region", "aria-label": "Answer text", tabindex: "0", "data-following": "true",
  }, blocks, h("div", { class: "tail" }, tailNode));
  const follow = h("button", { id: "answer-follow", type: "button", class: "follow", hidden: true, text: "↓ Follow the answer" });
  const section = h("section", { class: "panel answer-panel", "aria-label": "Answer" },
    h("div", { class: "panel-head" }, h("h2", { text: "Answer" }), h("span", { class: "spacer" }), follow), box);

  const atBottom = () => box.scrollHeight - box.scrollTop - box.clientHeight <= NEAR_BOTTOM;

  function setFollowing(value) {
    following = value;
    box.dataset.following = String(value);
    follow.hidden = value;
  }

  // Scrolling decides: away from the bottom stops following, back at it resumes. A wheel, key or
  // touch that scrolls up stops it at once, before the scroll lands (a smooth scroll takes frames).
  let touching = false;
  box.addEventListener("scroll", () => {
    if (atBottom() !== following) setFollowing(atBottom());
  }, { passive: true });
  box.addEventListener("wheel", (e) => {
    if (e.deltaY < 0) setFollowing(false);
  }, { passive: true });
  box.addEventListener("keydown", (e) => {
    if (["ArrowUp", "PageUp", "Home"].includes(e.key)) setFollowing(false);
  });
  box.addEventListener("touchstart", () => {
    touching = true;
  }, { passive: true });
  box.addEventListener("touchend", () => {
    touching = false;
  }, { passive: true });
  follow.addEventListener("click", () => {
    setFollowing(true);
    box.scrollTop = box.scrollHeight;
  });

  // Close the answer so far (all of it rendered) and put `node` after it, before what comes next.
  function insert(node) {
    render();
    if (tail) {
      blocks.insertAdjacentHTML("beforeend", renderMarkdown(tail));
      tail = "";
      tailNode.data = "";
    }
    blocks.append(node);
  }

  // Move streamed text into the page: whole blocks as Markdown, the rest as plain text.
  function render() {
    if (pending) {
      tail += pending;
      tailNode.appendData(pending);
      pending = "";
    }
    const cut = finished ? tail.length : lastBlockBoundary(tail, false);
    if (cut > 0) {
      blocks.insertAdjacentHTML("beforeend", renderMarkdown(tail.slice(0, cut)));
      tail = tail.slice(cut);
      tailNode.data = tail;
    }
  }

  return {
    section,
    get following() {
      return following;
    },
    // The events that change the answer; the others are ignored.
    apply(event) {
      switch (event.type) {
        case "token":
          pending += event.text;
          break;
        case "message.received":
          // A person's message: it sits between what the model said before and after it.
          insert(h("div", { class: "said", "data-mode": event.mode },
            h("span", { class: "said-who", text: `${actor(event.by) || "someone"} said:` }), " ",
            h("span", { class: "said-text", text: event.text }),
            h("span", { class: "said-mode", text: event.mode === "interrupt" ? "interrupt" : "after the step" })));
          break;
        case "step.finished":
          if (event.finish_reason === "interrupted") insert(h("div", { class: "marker interrupted", text: "interrupted" }));
          break;
        case "run.resumed":
          pending += "\n\n"; // the interrupted step's text ends; it is said again from here
          break;
        case "run.finished":
          finished = true;
          break;
      }
    },
    render,
    // Keep the end in view while following. Reading the height lays the page out, so call it last
    // in a frame, after every other change: one layout per frame, not two.
    stick() {
      if (following && !touching) box.scrollTop = box.scrollHeight;
    },
  };
}
