"""How a paced offline-model stream's chunks are made and written: each distinct chunk's bytes made
once per stream, every chunk due written to its socket in one write, each its own HTTP chunk."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from runwatch.agents.offline.stream import CACHED_CHUNK_BYTES, CACHED_CHUNKS, TextStream
from runwatch.api.offline.pacer import _Paced


class _Counting:
    """A frame function that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, chunk: bytes) -> bytes:
        self.calls += 1
        return b"[" + chunk + b"]"


def _all(text: TextStream) -> list[bytes]:
    sent = []
    while not text.done:
        sent.append(text.take())
    return sent


@pytest.mark.parametrize("per_chunk", [1, 2])
def test_a_stream_makes_each_of_its_first_distinct_chunks_once_and_the_others_each_time(per_chunk):
    words = [f"w{i} " for i in range(3 * CACHED_CHUNKS)] * 2  # 192 (or 96) distinct chunks, each twice
    text = TextStream(iter(words), 0, per_chunk, b"<", b">")
    frame = _Counting()
    text.frame(frame)
    sent = _all(text)
    pieces = ["".join(words[i : i + per_chunk]) for i in range(0, len(words), per_chunk)]
    assert sent == [b"[<" + json.dumps(p).encode() + b">]" for p in pieces]
    assert text.sent == len(words)
    assert frame.calls == len(pieces) - CACHED_CHUNKS  # the first 64 distinct ones, made once


def test_a_chunk_over_the_byte_bound_is_made_each_time():
    big = "x" * CACHED_CHUNK_BYTES
    text = TextStream(iter([big, "a", big, "a"]), 0, 1, b"", b"")
    frame = _Counting()
    text.frame(frame)
    assert _all(text) == [b'["' + big.encode() + b'"]', b'["a"]'] * 2
    assert frame.calls == 3  # the big chunk twice, "a" once


def test_framing_can_be_changed_and_taken_off_midway():
    text = TextStream(iter(["a", "b", "a", "b"]), 0, 1, b"", b"")
    text.frame(_Counting())
    assert text.take() == b'["a"]'
    text.frame(None)  # the pacer stopped early: the rest goes the ASGI way, which frames it itself
    assert _all(text) == [b'"b"', b'"a"', b'"b"']


class _Socket:
    """What the pacer writes to: a uvicorn request cycle's transport, recording the writes."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.write = self.writes.append

    def is_closing(self) -> bool:
        return False


def _paced(text: TextStream) -> tuple[_Paced, _Socket]:
    sock = _Socket()
    cycle = SimpleNamespace(
        transport=sock, flow=SimpleNamespace(write_paused=False), disconnected=False, response_complete=False
    )
    return _Paced(cycle, text, None), sock  # type: ignore[arg-type]


def _http_chunks(body: bytes) -> list[bytes]:
    """Split an HTTP/1.1 chunked body: hex size, CRLF, data, CRLF."""
    out = []
    while body:
        size, rest = body.split(b"\r\n", 1)
        n = int(size, 16)
        assert rest[n : n + 2] == b"\r\n"
        out.append(rest[:n])
        body = rest[n + 2 :]
    return out


def test_chunks_due_together_go_out_in_one_write_each_its_own_http_chunk():
    text = TextStream(iter(["a ", "b ", "c ", "d "]), 50, 1, b"{", b"}")
    paced, sock = _paced(text)
    again = paced.write_due(text.start + 0.045)  # a, b and c are due (at 0, 20 and 40 ms)
    assert again == pytest.approx(text.start + 0.06)
    assert len(sock.writes) == 1
    assert _http_chunks(sock.writes[0]) == [b'data: {"a "}\n\n', b'data: {"b "}\n\n', b'data: {"c "}\n\n']
    assert paced.write_due(again) is None and text.done  # d, the last one: done
    assert _http_chunks(sock.writes[1]) == [b'data: {"d "}\n\n']


def test_a_stream_far_behind_is_written_in_one_write_of_every_chunk_due():
    tokens = [f"t{i} " for i in range(5000)]
    text = TextStream(iter(tokens), 1000, 1, b"", b"")
    paced, sock = _paced(text)
    assert paced.write_due(text.start + 10) is None and text.done
    assert len(sock.writes) == 1
    assert _http_chunks(sock.writes[0]) == [b"data: " + json.dumps(t).encode() + b"\n\n" for t in tokens]
