"""One streamed answer parsed: both servers' event shapes in any pieces, usage or counted chunks, errors mid-stream.
(Hostile streams, huge events and impossible counts: tests/end_to_end/test_hostile_input.py.)"""

from __future__ import annotations

import json
from typing import Any

import pytest

from pytest_aienergyscore.backends.secret import Secret
from pytest_aienergyscore.backends.vllm.stream import StreamReader, streamed_text


def _sse(events: list[Any], crlf: bool = False) -> bytes:
    end = b"\r\n" if crlf else b"\n"
    return b"".join(b"data: " + (e if isinstance(e, bytes) else json.dumps(e).encode()) + end + end for e in events)


VLLM_STREAM = _sse(
    [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
        *({"choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": None}]} for _ in range(3)),
        {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}},
        b"[DONE]",
    ]
)
TSERVE_STREAM = _sse(
    [
        {"choices": [{"delta": {"role": "assistant"}, "index": 0}]},
        *({"choices": [{"delta": {"content": "a"}, "index": 0}]} for _ in range(2)),
        {"choices": [{"delta": {}, "index": 0, "finish_reason": "length"}], "usage": {"completion_tokens": 3}},
    ],
    crlf=True,
)


@pytest.mark.parametrize(("stream", "done"), [(VLLM_STREAM, True), (TSERVE_STREAM, False)])
@pytest.mark.parametrize("piece", [1, 7, 10_000])
def test_stream_reader_takes_both_servers_shapes_in_any_pieces(stream: bytes, done: bool, piece: int) -> None:
    reader = StreamReader()
    for i in range(0, len(stream), piece):
        reader.feed(stream[i : i + piece], float(i + 1))  # "now" is the piece's first byte + 1
    assert reader.usage is not None and reader.usage["completion_tokens"] == 3
    blank = b"\r\n\r\n" if b"\r" in stream else b"\n\n"  # the event that ends the first token's line
    last_byte = stream.index(blank, stream.index(b'"a"')) + len(blank) - 1
    assert reader.first_token == (last_byte // piece) * piece + 1  # its piece's time; the role chunk is no token
    assert reader.done is done and reader.error is None


def test_stream_without_usage_is_counted_by_chunks() -> None:
    reader = StreamReader()
    reader.feed(_sse([{"choices": [{"text": "x"}]} for _ in range(4)]), 1.0)
    assert reader.usage is None and reader.chunks == 4


def test_usage_null_on_every_chunk_and_quoted_keys_in_text_are_not_usage() -> None:
    reader = StreamReader()
    tokens = [
        {"choices": [{"delta": {"content": t}}], "usage": None} for t in ('say "usage"', '"completion_tokens": 99')
    ]
    final = {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2, "completion_tokens_details": None}}
    reader.feed(_sse([*tokens, final, b"[DONE]"]), 1.0)
    assert reader.usage == {"completion_tokens": 2, "prompt_tokens": 4} and reader.chunks == 2


def test_error_event_mid_stream_is_seen() -> None:
    reader = StreamReader()
    reader.feed(_sse([{"error": {"message": "EngineCore died", "code": 500}}, b"[DONE]"]), 1.0)
    assert reader.error == "EngineCore died"


# -- the answer's text, read from the kept pieces after the phase -----------------------------------------------------
COMPLETION_WORDS = ["Spring", " rain,", "\n", " été ☀", ' "usage"']
COMPLETION_STREAM = _sse(
    [
        {"choices": [{"index": 0, "text": "", "finish_reason": None}]},
        *({"choices": [{"index": 0, "text": word, "finish_reason": None}], "usage": None} for word in COMPLETION_WORDS),
        {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 5}},
        b"[DONE]",
    ],
    crlf=True,
)


@pytest.mark.parametrize("piece", [1, 3, 10_000])
def test_streamed_text_is_the_completions_words_in_order_whatever_the_pieces(piece: int) -> None:
    pieces = [COMPLETION_STREAM[i : i + piece] for i in range(0, len(COMPLETION_STREAM), piece)]
    assert streamed_text(pieces) == 'Spring rain,\n été ☀ "usage"'


@pytest.mark.parametrize(("stream", "text"), [(VLLM_STREAM, "aaa"), (TSERVE_STREAM, "aa")])
def test_streamed_text_reads_the_chat_deltas_of_both_servers(stream: bytes, text: str) -> None:
    assert streamed_text([stream[:9], stream[9:]]) == text


def test_streamed_text_leaves_a_reasoning_models_thinking_out_of_its_answer() -> None:
    stream = _sse(
        [
            {"choices": [{"delta": {"reasoning_content": "Two and two... "}}]},
            {"choices": [{"delta": {"reasoning": "is four."}}]},
            {"choices": [{"delta": {"content": "4"}}]},
            {"error": {"message": "late"}},
            b"[DONE]",
        ]
    )
    assert streamed_text([stream]) == "4"


def test_streamed_text_masks_the_api_key_a_server_repeated() -> None:
    key = "sk-test-0123-SECRET-value-9876"
    stream = _sse([{"choices": [{"text": f"your key is {key}."}]}])
    answer = streamed_text([stream], (Secret(key),))
    assert key not in answer and answer.startswith("your key is ") and answer.endswith(".")


def test_streamed_text_of_a_stream_that_carried_no_text_is_empty() -> None:
    assert streamed_text([_sse([{"choices": []}, b"[DONE]"])]) == ""
    assert streamed_text([]) == ""
