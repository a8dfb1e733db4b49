"""The offline model: a scripted stand-in for an LLM, spoken to over the OpenAI streaming protocol.

It lets runwatch work with no API key and gives tests, demos and benchmarks a model whose
behaviour is known. The user message decides the script:

* a JSON scenario ``{"tokens": N, "rate": R, "tool_calls": K, "tool_seconds": S}`` makes K calls
  of the ``wait`` tool (S seconds each; ``"parallel": true`` asks for all K in one step; and first
  ``"approvals": A`` calls of ``deploy``, which need a person's approval, their results quoted
  in the answer), then
  streams N tokens at R tokens/s (0 = as fast as possible; ``"token_chars": C`` pads each token;
  ``"chunk_tokens": K`` sends K tokens per chunk;
  ``"ttft": S`` waits S seconds before the first token; tokens are made as they are sent, so a
  scenario of millions of tokens costs no memory up front). What a scenario may ask for is
  bounded (``check_scenario``): a larger one is refused with what to ask for instead;
* ``call NAME {json arguments}`` in the text (once or more) calls those tools, whatever agent
  offers them — handy for trying your own agents without a key; arguments that are not valid
  JSON are answered with what is wrong with them, and no call;
* any other text gets a plausible answer that first uses the demo tools the request offers.

The latest user turn is what it answers. A person's message to a scenario run is quoted back
(``You said: "…"``); earlier turns of the conversation (a thread) are recalled in the answer.

This module only decides *what* to say (``plan_reply``); ``offline_stream.py`` says it, as OpenAI
``chat.completion.chunk`` JSON, and the HTTP endpoint that serves them lives in ``api``.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec

from runwatch.agents.errors import InputTooLarge

OFFLINE_MODEL = "runwatch-offline"
#: Tokens per second of the scripted (non-scenario) answers: fast, but slow enough to watch.
DEMO_RATE = 40.0

WORDS = (
    "the agent streams every token as it is written while watchers follow along live and nothing "
    "is lost when they reconnect because each event carries its sequence number"
).split()
#: The most tokens one scenario answer may stream (each costs the model some 30 µs of CPU).
MAX_TOKENS = 10_000_000
#: The most characters a scenario may pad one token to.
MAX_TOKEN_CHARS = 1024 * 1024
#: The most characters of one streamed chunk (``chunk_tokens`` tokens): each is made in one piece.
MAX_CHUNK_CHARS = 1024 * 1024
#: The most bytes of text one answer may hold (``offline_max_answer_bytes``'s default): 64 MiB.
DEFAULT_MAX_ANSWER_BYTES = 64 * 1024 * 1024
#: The longest token of a scenario that pads none (a word of ``WORDS`` and its space).
_WORD_CHARS = max(len(w) for w in WORDS) + 1
#: Padded words are made once per stream while they fit in this many characters, else per token.
_PADDED_CACHE_CHARS = 1024 * 1024


class Scenario(msgspec.Struct, forbid_unknown_fields=True):
    tokens: int = 50
    rate: float = 0.0
    tool_calls: int = 0
    tool_seconds: float = 0.0
    parallel: bool = False
    #: Pad every token to this many characters (payload-size tests and benchmarks); 0 = plain words.
    token_chars: int = 0
    #: Seconds before the answer's first token (a model's time to first token).
    ttft: float = 0.0
    #: Tokens per streamed chunk (real models send one; more makes huge answers quick to stream).
    chunk_tokens: int = 1
    #: Calls of the ``deploy`` tool (each needs a person's approval) before anything else.
    approvals: int = 0


def scenario_tokens(tokens: int, token_chars: int = 0) -> Iterator[str]:
    """The token deltas a scenario answer of ``tokens`` tokens streams, made one at a time."""
    if token_chars * len(WORDS) <= _PADDED_CACHE_CHARS:
        return itertools.islice(itertools.cycle([(w + " ").ljust(token_chars, ".") for w in WORDS]), tokens)
    return ((WORDS[i % len(WORDS)] + " ").ljust(token_chars, ".") for i in range(tokens))


def scenario_text(tokens: int, token_chars: int = 0) -> list[str]:
    """The exact token deltas a scenario answer of ``tokens`` tokens streams, as a list (for tests)."""
    return list(scenario_tokens(tokens, token_chars))


def parse_scenario(text: str) -> Scenario | None:
    text = text.strip()
    if not text.startswith("{"):
        return None
    try:
        scenario = msgspec.json.decode(text, type=Scenario)
    except msgspec.DecodeError:
        return None
    if (
        min(
            scenario.tokens,
            scenario.rate,
            scenario.tool_calls,
            scenario.tool_seconds,
            scenario.token_chars,
            scenario.ttft,
            scenario.approvals,
        )
        < 0
        or scenario.chunk_tokens < 1
    ):
        return None
    return scenario


def scenario_chars(tokens: int, token_chars: int = 0) -> int:
    """The characters (ASCII: bytes) of a scenario answer's tokens, exactly."""
    sizes = [max(len(w) + 1, token_chars) for w in WORDS]
    cycles, rest = divmod(tokens, len(WORDS))
    return cycles * sum(sizes) + sum(sizes[:rest])


def check_scenario(scenario: Scenario, max_answer_bytes: int) -> None:
    """Refuse (``InputTooLarge``, 413) a scenario that asks for more than one answer may hold: more
    than ``MAX_TOKENS`` tokens, tokens over ``MAX_TOKEN_CHARS``, chunks over ``MAX_CHUNK_CHARS``, or
    more than ``max_answer_bytes`` of text in all (tokens x token size)."""
    problem = ""
    if scenario.tokens > MAX_TOKENS:
        problem = f"{scenario.tokens} tokens, over the limit of {MAX_TOKENS}"
    elif scenario.token_chars > MAX_TOKEN_CHARS:
        problem = f"tokens of {scenario.token_chars} characters, over the limit of {MAX_TOKEN_CHARS}"
    elif scenario.chunk_tokens * max(scenario.token_chars, _WORD_CHARS) > MAX_CHUNK_CHARS:
        problem = f"chunks of {scenario.chunk_tokens} tokens, over the limit of {MAX_CHUNK_CHARS} characters a chunk"
    elif (size := scenario_chars(scenario.tokens, scenario.token_chars)) > max_answer_bytes:
        problem = (
            f"{size} bytes of text ({scenario.tokens} tokens), over the limit of {max_answer_bytes} bytes an"
            " answer (setting offline_max_answer_bytes, RUNWATCH_OFFLINE_MAX_ANSWER_BYTES)"
        )
    if problem:
        raise InputTooLarge(f"the scenario asks for {problem}; ask for fewer or smaller tokens")


@dataclass
class Reply:
    """One assistant turn: tool calls to make, or text to stream at ``rate`` tokens/s."""

    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    #: Read once, as the reply streams: a scenario's tokens are generated, not held.
    tokens: Iterable[str] = ()
    rate: float = 0.0
    #: Seconds to wait before the first token.
    delay: float = 0.0
    #: Tokens per streamed chunk.
    chunk_tokens: int = 1
    #: Bytes of text (and tool-call arguments) the reply streams, about: what it holds while in flight.
    size: int = 0


def _text_reply(text: str) -> Reply:
    """A scripted answer of ``text``, streamed at the demo's rate."""
    return Reply(tokens=_words(text), rate=DEMO_RATE, size=len(text.encode()))


def _calls_reply(calls: list[tuple[str, dict[str, Any]]]) -> Reply:
    return Reply(tool_calls=calls, size=sum(len(msgspec.json.encode(args)) for _, args in calls))


def _content(message: dict[str, Any]) -> str:
    content = message.get("content") or ""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


def _words(text: str) -> list[str]:
    """Token-sized pieces that keep every character, newlines included."""
    return re.findall(r"\s*\S+\s*?(?=\s|$)|\s+$", text) or [text]


_CALL = re.compile(r"\bcall\s+([A-Za-z_][\w-]*)\s*")
_EXPRESSION = re.compile(r"[-+(]*\d[\d.\s()+\-*/%]*[+\-*/%][\d.\s()+\-*/%]*\d\)*")
_SECONDS = re.compile(r"(\d+(?:\.\d+)?)\s*(?:s\b|sec|second)")
_ZONE = re.compile(r"\b([A-Z][a-z]+/[A-Z][A-Za-z_]+)\b")


def _recall(earlier: list[str]) -> str:
    """Earlier user turns of the conversation, quoted (the last five, each cut at 200 characters)."""
    if not earlier:
        return ""
    quoted = "; ".join(f'"{t[:200]}"' for t in earlier[-5:])
    return f"Earlier in this conversation you said: {quoted}."


def _demo_plan(prompt: str, tools: set[str], results: list[tuple[str, str]], earlier: list[str] = ()) -> Reply:
    """What the scripted assistant does for free text: tools first, then an answer that uses them."""
    lower = prompt.lower()
    done = {name for name, _ in results}
    explicit, problem = _explicit_calls(prompt, tools)
    if problem:
        return _text_reply(problem)
    if explicit:
        step = len(results)  # explicit calls are made one per step, in the order written
        if step < len(explicit):
            return _calls_reply([explicit[step]])
    elif not results:
        calls: list[tuple[str, dict[str, Any]]] = []
        if "calculator" in tools and (m := _EXPRESSION.search(prompt)):
            calls.append(("calculator", {"expression": m.group(0).strip()}))
        if "clock" in tools and any(w in lower for w in ("time", "clock", "date", "day")):
            zone = _ZONE.search(prompt)
            calls.append(("clock", {"timezone": zone.group(1) if zone else "UTC"}))
        if "wait" in tools and (m := _SECONDS.search(lower)) and "wait" in lower:
            calls.append(("wait", {"seconds": min(float(m.group(1)), 60.0)}))
        if "deploy" in tools and "deploy" in lower:
            version = re.search(r"\d+(?:\.\d+)+", prompt)
            environment = "production" if "production" in lower else "staging"
            calls.append(("deploy", {"version": version.group(0) if version else "1.0.0", "environment": environment}))
        if "list_files" in tools and any(w in lower for w in ("file", "read", "notes", "inventory")):
            calls.append(("list_files", {"path": "."}))
        if not calls:
            calls = [
                (name, args)
                for name, args in (("clock", {"timezone": "UTC"}), ("calculator", {"expression": "6 * 7"}))
                if name in tools
            ]
        if calls:
            return _calls_reply(calls)
    if "list_files" in done and "read_file" in tools and "read_file" not in done:
        listing = next(r for n, r in results if n == "list_files")
        names = [n for n in re.findall(r'"([^"/]+\.(?:md|txt|csv))"', listing)]
        plain = re.sub(r"[-_]", " ", lower)
        wanted = next(
            (n for n in names if re.sub(r"[-_]", " ", n.split(".")[0].lower()) in plain), names[0] if names else None
        )
        if wanted:
            return _calls_reply([("read_file", {"path": wanted})])
    described = [_describe_result(name, result) for name, result in results]
    items = "\n".join(d for d in described if d.startswith("- "))
    quotes = [d for d in described if not d.startswith("- ")]
    parts = [f"You asked: {prompt[:300]}", "Here is what I found:", items, *quotes, _recall(list(earlier))]
    parts.append("_This answer comes from runwatch's offline model; set OPENAI_BASE_URL for a real one._")
    return _text_reply("\n\n".join(p for p in parts if p))


def _describe_result(name: str, result: str) -> str:
    """A tool result as Markdown: text results (a file) are quoted whole, values inline."""
    try:
        value = msgspec.json.decode(result)
    except msgspec.DecodeError:
        value = result
    if isinstance(value, str) and "\n" in value:
        text = value if len(value) <= 2000 else value[:2000] + "\n…"
        return f"The **{name}** tool returned:\n\n{text.strip()}"
    shown = result if len(result) <= 300 else result[:297] + "..."
    return f"- **{name}** answered `{shown}`"


_JSON = json.JSONDecoder()


def _explicit_calls(prompt: str, tools: set[str]) -> tuple[list[tuple[str, dict[str, Any]]], str]:
    """The ``call NAME {json}`` calls of offered tools in ``prompt``, in order, each with the JSON
    object that follows its name (nested ones too; none: ``{}``); or, if one's arguments are not
    valid JSON, a sentence saying what is wrong and what to write instead."""
    calls: list[tuple[str, dict[str, Any]]] = []
    at = 0
    while match := _CALL.search(prompt, at):
        name, at = match.group(1), match.end()
        args: dict[str, Any] = {}
        if prompt.startswith("{", at):
            try:
                args, at = _JSON.raw_decode(prompt, at)
            except json.JSONDecodeError as exc:
                if name in tools:
                    return [], _not_json(name, f"{exc.msg} at character {exc.pos - at + 1} of them")
                continue
            except RecursionError:
                if name in tools:
                    return [], _not_json(name, "nested too deeply")
                continue
        if name in tools:
            calls.append((name, args))
    return calls, ""


def _not_json(name: str, what: str) -> str:
    return (
        f"The arguments of `call {name}` are not valid JSON ({what}), so I did not call it. "
        f'Write them as one JSON object, e.g. `call {name} {{"key": "value"}}`.'
    )


def plan_reply(
    messages: list[dict[str, Any]], tool_names: set[str], *, max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES
) -> Reply:
    """Decide the next assistant turn from the conversation so far: it answers the latest user
    turn, with the tool results that came after it. A scenario over the bounds (``check_scenario``)
    raises ``InputTooLarge`` at its first turn as at its last."""
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    latest = users[-1] if users else len(messages)
    prompt = _content(messages[latest]) if users else ""
    earlier = [_content(messages[i]) for i in users[:-1]]
    call_names = {
        c.get("id"): c.get("function", {}).get("name", "")
        for m in messages
        if m.get("role") == "assistant"
        for c in m.get("tool_calls") or ()
    }
    results = [
        (call_names.get(m.get("tool_call_id"), "tool"), _content(m))
        for m in messages[latest + 1 :]
        if m.get("role") == "tool"
    ]
    scenario = parse_scenario(prompt)
    if scenario is None:
        if earlier and parse_scenario(earlier[0]) is not None:  # a person's message to a scenario run
            return _text_reply(f'You said: "{prompt[:500]}"')
        return _demo_plan(prompt, tool_names, results, [e for e in earlier if parse_scenario(e) is None])
    check_scenario(scenario, max_answer_bytes)
    deployed = [r for name, r in results if name == "deploy"]
    if "deploy" in tool_names and len(deployed) < scenario.approvals:
        versions = range(len(deployed) + 1, scenario.approvals + 1)
        calls = [("deploy", {"version": f"1.{v}.0"}) for v in versions]
        return _calls_reply(calls if scenario.parallel else calls[:1])
    waited = sum(1 for name, _ in results if name == "wait")
    remaining = scenario.tool_calls - waited if "wait" in tool_names else 0
    if remaining > 0:
        batch = remaining if scenario.parallel else 1
        return _calls_reply([("wait", {"seconds": scenario.tool_seconds})] * batch)
    tokens: Iterable[str] = scenario_tokens(scenario.tokens, scenario.token_chars)
    size = scenario_chars(scenario.tokens, scenario.token_chars)
    if deployed:
        said = "\n".join(_describe_result("deploy", r) for r in deployed) + "\n\n"
        tokens = itertools.chain(_words(said), tokens)
        size += len(said.encode())
    return Reply(tokens=tokens, rate=scenario.rate, delay=scenario.ttft, chunk_tokens=scenario.chunk_tokens, size=size)


def estimate_tokens(messages: list[dict[str, Any]]) -> int:
    """The prompt's size in tokens, roughly (four characters a token), for the usage chunk."""
    return sum(len(_content(m)) for m in messages) // 4 + 4 * len(messages)
