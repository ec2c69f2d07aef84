"""Tiny random-weight models, built offline, one per AI Energy Score task.

The plugin's benchmarks load models with the standard transformers/diffusers Auto classes and pipelines. Tests need
folders those loaders accept without the Hugging Face Hub and within a second or two of CPU, so each builder below
writes a real ``save_pretrained`` folder (config, safetensors, tokenizer/processor) of a few hundred kilobytes. Weights
are random but seeded, so two builds give identical bytes and test outputs are reproducible.

Tokenizers are never downloaded: BPE merges and WordPiece vocabularies are learned here from a short built-in text
(by a tiny deterministic trainer) and assembled with the ``tokenizers`` library or the model's own tokenizer class.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import json
import os
import random
import shutil
import string
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerBase

__all__ = ["SEED", "TINY_EXTRA_MODELS", "TINY_TASKS", "build_tiny_model"]

SEED = 0
TINY_TASKS = (
    "text_generation",
    "reasoning",
    "summarization",
    "question_answering",
    "text_classification",
    "sentence_similarity",
    "image_classification",
    "object_detection",
    "automatic_speech_recognition",
    "image_captioning",
    "image_generation",
)

# Models beyond one per task, built by name like the tasks': "t5" serves the leaderboard's T5 rows (summarization,
# question answering, text classification and generation run as text2text generation with a task prefix).
TINY_EXTRA_MODELS = ("t5",)

# Bump when a recipe changes: folders built by an older recipe are then rebuilt rather than reused from a cache.
# 3: DETR's config names its native backbone for 4.x; the diffusion tokenizer has 4.x's vocabulary files.
_RECIPE = 3
_MARKER = ".tiny-model.json"

# Small enough for 2 CPU cores, large enough that every layer type (attention heads, GQA, cross-attention) exists.
_HIDDEN = 32
_FFN = 64
_HEADS = 4
_IMAGE_SIZE = 32
_DETECTION_IMAGE_SIZE = 64
_TEXT_MAX_LENGTH = 256
_BPE_SIZE = 384
_WORDPIECE_SIZE = 320

_TEXT = """
Energy use of machine learning models depends on the task, the model size and the hardware that runs it.
A small model that answers a question can use far less energy than a large model that writes a long story.
The score compares models on the same prompts, with the same number of samples, on the same graphics card.
Text generation, summarization, question answering and text classification read and write words in English.
Image classification looks at a picture of a cat, a dog or a bird and says which one it shows.
Object detection draws boxes around each person, car, bicycle and traffic light in a street photo.
Speech recognition turns a short recording of a voice into written text, one sentence at a time.
Image captioning writes a sentence about a photo, such as a red bus driving down a quiet road at night.
Image generation paints a new picture from a prompt like a blue house next to a green tree under the sun.
Sentence similarity turns two sentences into vectors and measures how close their meanings are.
Reasoning models think step by step before they give the final answer to a hard math problem.
The quick brown fox jumps over the lazy dog while the five boxing wizards jump quickly.
Numbers like 0 1 2 3 4 5 6 7 8 9 10 100 and 2025 appear in dates, prices and measurements.
Please summarize this article in one short paragraph and keep the most important facts.
What is the capital of France? The capital of France is Paris, a city on the river Seine.
"""

_CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Qwen3-style switch: earlier answers lose their thoughts, and `enable_thinking=False` pre-fills an empty think block
# so the model answers directly. Benchmarks pass the switch through `apply_chat_template(..., enable_thinking=...)`.
_THINKING_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- set content = message['content'] %}"
    "{%- if message['role'] == 'assistant' and '</think>' in content %}"
    "{%- set content = content.split('</think>')[-1].lstrip('\\n') %}"
    "{%- endif %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + content + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)

_CHAT_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
_THINK_SPECIALS = (*_CHAT_SPECIALS, "<think>", "</think>")
_BART_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
_BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_WHISPER_SPECIALS = (
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|en|>",
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nocaptions|>",
    "<|notimestamps|>",
)


def build_tiny_model(task: str, dest: Path) -> Path:
    """Build the tiny model for ``task`` into ``dest`` and return ``dest``; a complete folder is reused as is.

    The folder is written next to ``dest`` and renamed into place, so an interrupted build never leaves a folder
    that a later call would mistake for a complete one.
    """
    builder = _builder(task)
    dest = Path(dest)
    if _is_complete(dest, task):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        with _seeded(SEED):
            builder(staging)
        _tidy_tokenizer_configs(staging)
        staging.chmod(0o755)  # mkdtemp makes it owner-only; a built model folder should read like any other
        (staging / _MARKER).write_text(json.dumps({"task": task, "recipe": _RECIPE}) + "\n", encoding="utf-8")
        _install(staging, dest, task)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def _builder(task: str) -> Callable[[Path], None]:
    """The builder for ``task``, with an error that lists the valid names (a typo should not look like a crash)."""
    try:
        return {**_BUILDERS, **_EXTRA_BUILDERS}[task]
    except KeyError:
        names = ", ".join((*TINY_TASKS, *TINY_EXTRA_MODELS))
        raise ValueError(f"unknown task {task!r}; expected one of {names}") from None


def _marker(folder: Path) -> dict[str, Any] | None:
    """The build record of ``folder``, or None when it was not (completely) built here."""
    try:
        data = json.loads((folder / _MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _is_complete(folder: Path, task: str) -> bool:
    """True when ``folder`` holds ``task``'s model from the current recipe; the marker is written last."""
    return _marker(folder) == {"task": task, "recipe": _RECIPE}


def _install(staging: Path, dest: Path, task: str) -> None:
    """Move the finished build to ``dest``, replacing only an empty folder or one of our own stale builds."""
    if dest.exists():
        if _is_complete(dest, task):  # a parallel build won the race
            return
        if _marker(dest) is None and any(dest.iterdir()):
            raise FileExistsError(f"{dest} exists and was not built by build_tiny_model; refusing to replace it")
        shutil.rmtree(dest)
    try:
        os.replace(staging, dest)
    except OSError:
        if not _is_complete(dest, task):
            raise


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed every RNG a build touches, and restore the caller's RNG state afterwards."""
    import torch

    state = random.getstate()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(state)


# --- tokenizers -------------------------------------------------------------------------------------------------


def _corpus() -> list[str]:
    """Training lines: the built-in text plus lower-case and numbered variants, a few hundred words in all."""
    lines = [line.strip() for line in _TEXT.strip().splitlines()]
    return lines + [line.lower() for line in lines] + [f"{i} {line}" for i, line in enumerate(lines)]


def _word_counts(split: Callable[[str], list[str]]) -> Counter[str]:
    """How often each pre-tokenized word occurs in the corpus, with ``split`` doing a tokenizer's own splitting."""
    return Counter(word for line in _corpus() for word in split(line))


def _learn_merges(words: Counter[tuple[str, ...]], count: int) -> list[tuple[str, str]]:
    """Learn ``count`` BPE merges: repeatedly join the most frequent adjacent pair, ties broken alphabetically.

    A few lines of our own instead of ``tokenizers``' trainers, whose tie-breaking follows hash-map order and so
    changes between processes; the builds must give the same files every time.
    """
    merges: list[tuple[str, str]] = []
    for _ in range(count):
        pairs: Counter[tuple[str, str]] = Counter()
        for symbols, freq in words.items():
            for pair in itertools.pairwise(symbols):
                pairs[pair] += freq
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        words = Counter({_merge_pair(symbols, best): freq for symbols, freq in words.items()})
    return merges


def _merge_pair(symbols: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    """``symbols`` with every adjacent occurrence of ``pair`` joined into one symbol."""
    merged: list[str] = []
    i = 0
    while i < len(symbols):
        if symbols[i : i + 2] == pair:
            merged.append(pair[0] + pair[1])
            i += 2
        else:
            merged.append(symbols[i])
            i += 1
    return tuple(merged)


@functools.cache
def _bpe_tables(style: str) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """Byte-level BPE vocabulary (in id order) and merges, without special tokens; learned once per process.

    ``gpt2`` is the GPT-2/Whisper/BART scheme (a leading ``Ġ`` marks a space); ``clip`` is CLIP's, which lower-cases
    and marks word ends with ``</w>``. Every byte symbol is in the vocabulary, so no text is ever unknown.
    """
    from tokenizers import pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    if style == "gpt2":
        splitter = pre_tokenizers.ByteLevel(add_prefix_space=False)
        counts = _word_counts(lambda line: [piece for piece, _ in splitter.pre_tokenize_str(line)])
        words = Counter({tuple(word): freq for word, freq in counts.items()})
        base = alphabet
    elif style == "clip":
        counts = _word_counts(_clip_split)
        words = Counter({(*word[:-1], word[-1] + "</w>"): freq for word, freq in counts.items()})
        base = alphabet + [symbol + "</w>" for symbol in alphabet]
    else:
        raise ValueError(f"unknown BPE style {style!r}")
    merges = _learn_merges(words, _BPE_SIZE - len(alphabet))
    merged = list(dict.fromkeys(a + b for a, b in merges if a + b not in base))
    return tuple(base + merged), tuple(merges)


def _clip_split(line: str) -> list[str]:
    """Pre-tokenize like CLIP: lower-case; letter runs, single digits, punctuation runs; then byte-level symbols."""
    from tokenizers import Regex, normalizers, pre_tokenizers

    normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    pattern = Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""")
    splitter = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(pattern, behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    return [piece for piece, _ in splitter.pre_tokenize_str(normalizer.normalize_str(line))]


def _bpe_vocab(style: str, specials: tuple[str, ...]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A fresh vocab (special tokens first, as GPT-2 style chat models number them) and merge list."""
    tokens, merges = _bpe_tables(style)
    return {token: i for i, token in enumerate(dict.fromkeys((*specials, *tokens)))}, list(merges)


def _byte_bpe(specials: tuple[str, ...]) -> Tokenizer:
    """A GPT-2 style byte-level BPE ``tokenizers.Tokenizer`` with ``specials`` as never-split special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    vocab, merges = _bpe_vocab("gpt2", specials)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(list(specials))
    return tokenizer


def _tokenizer_from_files(
    class_name: str, vocab: dict[str, int], merges: list[tuple[str, str]] | None, **kwargs: Any
) -> Any:
    """Load a model-specific tokenizer class from vocabulary files, the one constructor transformers 4.x and 5.x share.

    4.x's fast classes need ``vocab.json``/``merges.txt`` (or BERT's ``vocab.txt``) on disk, while 5.x also accepts
    in-memory tables; going through files keeps one code path. ``<Name>Fast`` is an alias of ``<Name>`` in 5.x.
    """
    import transformers

    cls = getattr(transformers, f"{class_name}Fast", None) or getattr(transformers, class_name)
    with tempfile.TemporaryDirectory() as scratch:
        _write_vocabulary_files(Path(scratch), vocab, merges)
        return cls.from_pretrained(scratch, **kwargs)


def _write_vocabulary_files(folder: Path, vocab: dict[str, int], merges: list[tuple[str, str]] | None) -> None:
    """BERT's ``vocab.txt``, or BPE's ``vocab.json`` and ``merges.txt`` (with the version line 4.x skips)."""
    if merges is None:
        ordered = sorted(vocab, key=vocab.__getitem__)
        (folder / "vocab.txt").write_text("".join(f"{token}\n" for token in ordered), encoding="utf-8")
        return
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = "".join(f"{a} {b}\n" for a, b in merges)
    (folder / "merges.txt").write_text(f"#version: 0.2\n{lines}", encoding="utf-8")


def _bert_words() -> Counter[str]:
    """Corpus words as BERT sees them (lower-cased, split on spaces and punctuation)."""
    from tokenizers import normalizers, pre_tokenizers

    normalizer, splitter = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    return _word_counts(lambda line: [w for w, _ in splitter.pre_tokenize_str(normalizer.normalize_str(line))])


def _wordpiece_vocab() -> dict[str, int]:
    """A WordPiece vocabulary: specials, every character bare and as ``##`` continuation, then the commonest words.

    Characters in both forms (all printable ASCII, lower-cased) let WordPiece spell any English word; whole words
    are an optimisation, not a need.
    """
    counts = _bert_words()
    printable = (char for char in string.printable if not char.isspace() and not char.isupper())
    chars = sorted({*printable, *(char for word in counts for char in word)})
    words = sorted(counts, key=lambda word: (-counts[word], word))
    tokens = list(dict.fromkeys([*_BERT_SPECIALS, *chars, *(f"##{char}" for char in chars), *words]))
    return {token: i for i, token in enumerate(tokens[:_WORDPIECE_SIZE])}


def _wordpiece() -> Tokenizer:
    """A BERT-style WordPiece ``tokenizers.Tokenizer`` (lower-casing, ``[UNK]`` for unseen characters)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    tokenizer = Tokenizer(models.WordPiece(vocab=_wordpiece_vocab(), unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.add_special_tokens(list(_BERT_SPECIALS))
    return tokenizer


def _fast_tokenizer(backend: Tokenizer, **kwargs: Any) -> PreTrainedTokenizerBase:
    """Wrap a trained backend in the generic fast tokenizer class every Auto loader accepts."""
    from transformers import PreTrainedTokenizerFast

    kwargs.setdefault("clean_up_tokenization_spaces", False)
    return PreTrainedTokenizerFast(tokenizer_object=backend, **kwargs)


def _tidy_tokenizer_configs(folder: Path) -> None:
    """Make every saved ``tokenizer_config.json`` portable and free of load-time state.

    transformers 5 writes the generic class as ``TokenizersBackend`` (unknown to 4.x; ``PreTrainedTokenizerFast``
    names the same class in both) and records how the tokenizer was last loaded (``is_local``, ``local_files_only``),
    which says nothing about the model.
    """
    for config_file in folder.rglob("tokenizer_config.json"):
        config = json.loads(config_file.read_text(encoding="utf-8"))
        if config.get("tokenizer_class") == "TokenizersBackend":
            config["tokenizer_class"] = "PreTrainedTokenizerFast"
        for key in ("is_local", "local_files_only"):
            config.pop(key, None)
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _chat_tokenizer(specials: tuple[str, ...], template: str) -> PreTrainedTokenizerBase:
    """ChatML byte-level BPE tokenizer for the causal LMs, padding with ``<|endoftext|>`` like Qwen does."""
    return _fast_tokenizer(
        _byte_bpe(specials),
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=[t for t in specials if t.startswith("<|") and t != "<|endoftext|>"],
        chat_template=template,
        model_max_length=_TEXT_MAX_LENGTH,
        model_input_names=["input_ids", "attention_mask"],
    )


def _bert_tokenizer(with_token_types: bool = True) -> PreTrainedTokenizerBase:
    """WordPiece tokenizer with BERT's ``[CLS] A [SEP] B [SEP]`` framing (QA needs the pair form and offsets).

    The model inputs are named explicitly: the generic class defaults differ between transformers 4.x (which returns
    ``token_type_ids``) and 5.x (which does not), and BERT wants them while DistilBERT rejects them.
    """
    from tokenizers import processors

    backend = _wordpiece()
    cls_id, sep_id = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    names = ["input_ids", "token_type_ids", "attention_mask"] if with_token_types else ["input_ids", "attention_mask"]
    return _fast_tokenizer(
        backend,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
        model_max_length=128,
        model_input_names=names,
    )


# --- text models ------------------------------------------------------------------------------------------------


def _save_causal_lm(model: Any, tokenizer: PreTrainedTokenizerBase, out: Path) -> None:
    """Save a causal LM with generation defaults that stop at the end-of-turn token, as chat models ship."""
    from transformers import GenerationConfig

    eos = [tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")]
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


def _build_text_generation(out: Path) -> None:
    """Llama (GQA, RoPE, SwiGLU, tied embeddings) like SmolLM2/Llama-3, with a ChatML template."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _chat_tokenizer(_CHAT_SPECIALS, _CHATML_TEMPLATE)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=_HIDDEN,
        intermediate_size=_FFN,
        num_hidden_layers=2,
        num_attention_heads=_HEADS,
        num_key_value_heads=2,
        max_position_embeddings=_TEXT_MAX_LENGTH,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    _save_causal_lm(LlamaForCausalLM(config), tokenizer, out)


def _build_reasoning(out: Path) -> None:
    """Qwen3 (QK-norm attention, as in the Qwen3 reasoning models) whose chat template honours ``enable_thinking``."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = _chat_tokenizer(_THINK_SPECIALS, _THINKING_TEMPLATE)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=_HIDDEN,
        intermediate_size=_FFN,
        num_hidden_layers=2,
        num_attention_heads=_HEADS,
        num_key_value_heads=2,
        head_dim=_HIDDEN // _HEADS,
        max_position_embeddings=_TEXT_MAX_LENGTH,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    _save_causal_lm(Qwen3ForCausalLM(config), tokenizer, out)


def _build_summarization(out: Path) -> None:
    """BART encoder-decoder, the architecture of the usual summarizers (bart-large-cnn, distilbart)."""
    from tokenizers import processors
    from transformers import BartConfig, BartForConditionalGeneration, GenerationConfig

    backend = _byte_bpe(_BART_SPECIALS)
    bos, eos = backend.token_to_id("<s>"), backend.token_to_id("</s>")
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", bos), ("</s>", eos)]
    )
    tokenizer = _fast_tokenizer(
        backend,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=128,
        model_input_names=["input_ids", "attention_mask"],
    )
    config = BartConfig(
        vocab_size=len(tokenizer),
        d_model=_HIDDEN,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=_HEADS,
        decoder_attention_heads=_HEADS,
        encoder_ffn_dim=_FFN,
        decoder_ffn_dim=_FFN,
        max_position_embeddings=128,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id,
        decoder_start_token_id=eos,
    )
    model = BartForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id,
        decoder_start_token_id=eos,
        forced_bos_token_id=bos,
        forced_eos_token_id=eos,
        max_length=32,
    )
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


def _build_t5(out: Path) -> None:
    """T5 (relative attention buckets, no position table, ReLU feed-forward) as the leaderboard's T5 rows ran it.

    No ``max_position_embeddings``: energy_star then truncates to 512 tokens less its prefix reserve, which is the
    rule the parity tests exercise. The tokenizer appends ``</s>`` as T5's does; pad is the decoder start token.
    """
    from tokenizers import processors
    from transformers import GenerationConfig, T5Config, T5ForConditionalGeneration

    backend = _byte_bpe(("<pad>", "</s>", "<unk>"))
    eos = backend.token_to_id("</s>")
    backend.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", eos)]
    )
    tokenizer = _fast_tokenizer(
        backend,
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        model_max_length=512,
        model_input_names=["input_ids", "attention_mask"],
    )
    pad = tokenizer.pad_token_id
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=_HIDDEN,
        d_kv=_HIDDEN // _HEADS,
        d_ff=_FFN,
        num_layers=1,
        num_decoder_layers=1,
        num_heads=_HEADS,
        relative_attention_num_buckets=8,
        eos_token_id=eos,
        pad_token_id=pad,
    )
    config.decoder_start_token_id = pad  # T5 shifts decoder inputs right from it (t5-small's config.json says 0)
    model = T5ForConditionalGeneration(config)
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=pad, decoder_start_token_id=pad)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


def _bert_config(**kwargs: Any) -> Any:
    """A 2-layer BERT config shared by the QA, classification and embedding models."""
    from transformers import BertConfig

    return BertConfig(
        hidden_size=_HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=_HEADS,
        intermediate_size=_FFN,
        max_position_embeddings=128,
        **kwargs,
    )


def _build_question_answering(out: Path) -> None:
    """Extractive QA head on BERT: start and end logits over the context tokens."""
    from transformers import BertForQuestionAnswering

    tokenizer = _bert_tokenizer()
    config = _bert_config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    BertForQuestionAnswering(config).save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


def _build_text_classification(out: Path) -> None:
    """DistilBERT sentiment classifier (the SST-2 style label names the text-classification pipeline reports)."""
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    tokenizer = _bert_tokenizer(with_token_types=False)  # DistilBERT's forward() has no token_type_ids argument
    config = DistilBertConfig(
        vocab_size=len(tokenizer),
        dim=_HIDDEN,
        n_layers=2,
        n_heads=_HEADS,
        hidden_dim=_FFN,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        id2label={0: "NEGATIVE", 1: "POSITIVE"},
        label2id={"NEGATIVE": 0, "POSITIVE": 1},
    )
    DistilBertForSequenceClassification(config).save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


def _build_sentence_similarity(out: Path) -> None:
    """BERT encoder for mean-pooled embeddings, plus the sentence-transformers files that describe the pooling."""
    from transformers import BertModel

    tokenizer = _bert_tokenizer()
    config = _bert_config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    BertModel(config).save_pretrained(str(out))  # with the pooler, as all-MiniLM ships it
    tokenizer.save_pretrained(str(out))
    _write_sentence_transformers_files(out, dimension=_HIDDEN)


def _write_sentence_transformers_files(out: Path, dimension: int) -> None:
    """The module list and mean-pooling config of an all-MiniLM-style folder, so sentence-transformers loads it too."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    pooling = {
        "word_embedding_dimension": dimension,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    }
    _write_json(out / "modules.json", modules)
    _write_json(out / "sentence_bert_config.json", {"max_seq_length": 128, "do_lower_case": False})
    _write_json(out / "1_Pooling" / "config.json", pooling)  # Normalize has no files, as in all-MiniLM-L6-v2


def _write_json(path: Path, data: object) -> None:
    """Write a small JSON file, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


# --- vision and audio models ------------------------------------------------------------------------------------


def _vit_config(**kwargs: Any) -> Any:
    """A 2-layer ViT over 32x32 images in 8x8 patches (16 patches plus CLS)."""
    from transformers import ViTConfig

    return ViTConfig(
        image_size=_IMAGE_SIZE,
        patch_size=8,
        hidden_size=_HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=_HEADS,
        intermediate_size=_FFN,
        **kwargs,
    )


def _vit_image_processor() -> Any:
    """ViT preprocessing (resize to 32x32, scale, normalise) matching ``_vit_config``."""
    from transformers import ViTImageProcessor

    return ViTImageProcessor(size={"height": _IMAGE_SIZE, "width": _IMAGE_SIZE})


def _build_image_classification(out: Path) -> None:
    """ViT classifier over three labels, with its image processor."""
    from transformers import ViTForImageClassification

    labels = ["cat", "dog", "bird"]
    config = _vit_config(id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)})
    ViTForImageClassification(config).save_pretrained(str(out))
    _vit_image_processor().save_pretrained(str(out))


def _build_object_detection(out: Path) -> None:
    """DETR (the facebook/detr-resnet-50 architecture) on a tiny transformers-native ResNet, so timm is not needed."""
    from transformers import DetrConfig, DetrForObjectDetection, DetrImageProcessor, ResNetConfig

    labels = ["person", "car", "bicycle"]
    backbone = ResNetConfig(
        embedding_size=8,
        hidden_sizes=[8, 16, 16, 16],
        depths=[1, 1, 1, 1],
        layer_type="basic",
        out_features=["stage4"],
    )
    # transformers 4.x defaults to a timm ResNet-50 and must be told to build the native backbone; 5.x has no switch.
    legacy = {"use_timm_backbone": False, "backbone": None, "use_pretrained_backbone": False}
    accepted = inspect.signature(DetrConfig.__init__).parameters
    config = DetrConfig(
        **{key: value for key, value in legacy.items() if key in accepted},
        backbone_config=backbone,
        d_model=_HIDDEN,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=_HEADS,
        decoder_attention_heads=_HEADS,
        encoder_ffn_dim=_FFN,
        decoder_ffn_dim=_FFN,
        num_queries=5,
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    DetrForObjectDetection(config).save_pretrained(str(out))
    # 4.x reads a config without these keys as "timm's resnet50 and this backbone_config" and refuses it; 5.x
    # writes no such keys. Naming the native backbone in the file lets both load the same folder.
    saved = json.loads((out / "config.json").read_text(encoding="utf-8"))
    for key, value in legacy.items():
        saved.setdefault(key, value)
    _write_json(out / "config.json", saved)
    size = {"shortest_edge": _DETECTION_IMAGE_SIZE, "longest_edge": _DETECTION_IMAGE_SIZE}
    DetrImageProcessor(size=size).save_pretrained(str(out))


def _build_automatic_speech_recognition(out: Path) -> None:
    """Whisper with the real 80-mel, 30 s feature extractor and a multilingual-style prompt (only ``<|en|>``)."""
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
    )

    # Specials go after the BPE tokens, as in Whisper's vocabulary, and into the vocab file itself: 4.x looks up the
    # decoder prompt tokens while constructing the tokenizer, before any could be added.
    tokens, merges = _bpe_tables("gpt2")
    vocab = {token: i for i, token in enumerate((*tokens, *_WHISPER_SPECIALS))}
    tokenizer = _tokenizer_from_files("WhisperTokenizer", vocab, list(merges), model_max_length=448)
    tokenizer.add_special_tokens({"additional_special_tokens": list(_WHISPER_SPECIALS[1:])})
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in _WHISPER_SPECIALS}
    eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    config = WhisperConfig(
        vocab_size=len(tokenizer),
        num_mel_bins=80,
        d_model=_HIDDEN,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=_HEADS,
        decoder_attention_heads=_HEADS,
        encoder_ffn_dim=_FFN,
        decoder_ffn_dim=_FFN,
        max_source_positions=1500,  # 30 s of audio = 3000 mel frames, halved by the conv stem
        max_target_positions=128,  # the protocol's 100 new tokens after the 3 start tokens
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=sot,
        begin_suppress_tokens=[eot],
        suppress_tokens=[],
    )
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        max_length=128,
        is_multilingual=True,
        lang_to_id={"<|en|>": ids["<|en|>"]},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        no_timestamps_token_id=ids["<|notimestamps|>"],
        prev_sot_token_id=ids["<|startofprev|>"],
        begin_suppress_tokens=[eot],
        suppress_tokens=[],
    )
    model.save_pretrained(str(out))
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer).save_pretrained(
        str(out)
    )


def _build_image_captioning(out: Path) -> None:
    """BLIP captioner (the Salesforce/blip-image-captioning architecture) with its ``BlipProcessor``.

    BLIP rather than ViT+GPT-2: transformers 5 captions through the image-text-to-text pipeline, which needs a real
    processor class, and VisionEncoderDecoder has none.
    """
    from transformers import (
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
        BlipTextConfig,
        BlipVisionConfig,
        GenerationConfig,
    )

    tokenizer = _blip_tokenizer()
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in (("dec", "[DEC]"), ("sep", "[SEP]"))}
    text = BlipTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=_HIDDEN,
        encoder_hidden_size=_HIDDEN,
        intermediate_size=_FFN,
        projection_dim=_HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=_HEADS,
        max_position_embeddings=128,  # the protocol's 100 new tokens after the start token
        bos_token_id=ids["dec"],
        eos_token_id=ids["sep"],
        sep_token_id=ids["sep"],
        pad_token_id=tokenizer.pad_token_id,
    )
    vision = BlipVisionConfig(
        hidden_size=_HIDDEN,
        intermediate_size=_FFN,
        projection_dim=_HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=_HEADS,
        image_size=_IMAGE_SIZE,
        patch_size=8,
    )
    config = BlipConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=_HIDDEN)
    model = BlipForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        bos_token_id=ids["dec"], eos_token_id=ids["sep"], pad_token_id=tokenizer.pad_token_id, max_length=20
    )
    model.save_pretrained(str(out))
    image_processor = BlipImageProcessor(size={"height": _IMAGE_SIZE, "width": _IMAGE_SIZE})
    BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(str(out))


def _blip_tokenizer() -> Any:
    """BLIP's tokenizer: a ``BertTokenizer`` whose BOS is ``[DEC]`` (start of a caption) plus an ``[ENC]`` marker."""
    tokenizer = _tokenizer_from_files("BertTokenizer", _wordpiece_vocab(), None, model_max_length=64)
    tokenizer.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    return tokenizer


# --- diffusion ----------------------------------------------------------------------------------------------------


def _clip_vocabulary() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's layout: byte symbols bare and with ``</w>``, merges, then the two specials."""
    tokens, merges = _bpe_tables("clip")
    vocab = {token: i for i, token in enumerate((*tokens, "<|startoftext|>", "<|endoftext|>"))}
    return vocab, list(merges)


def _clip_tokenizer() -> Any:
    """A real ``CLIPTokenizer`` (lower-case, ``</w>`` word ends), the class diffusers' SD pipelines are typed with."""
    vocab, merges = _clip_vocabulary()
    return _tokenizer_from_files("CLIPTokenizer", vocab, merges, model_max_length=77)


def _build_image_generation(out: Path) -> None:
    """Stable Diffusion 1.x layout (UNet, VAE, CLIP text encoder, DDIM) producing 16x16 images from 8x8 latents."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = _clip_tokenizer()
    text_width = 16
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=text_width,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=text_width,
        attention_head_dim=2,
        norm_num_groups=4,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(str(out))
    # model_index.json names the slow CLIPTokenizer, which in transformers 4.x (diffusers' loader in optimum-benchmark's
    # environment) reads vocab.json and merges.txt; 5.x saves only tokenizer.json.
    _write_vocabulary_files(out / "tokenizer", *_clip_vocabulary())


_BUILDERS: dict[str, Callable[[Path], None]] = {
    "text_generation": _build_text_generation,
    "reasoning": _build_reasoning,
    "summarization": _build_summarization,
    "question_answering": _build_question_answering,
    "text_classification": _build_text_classification,
    "sentence_similarity": _build_sentence_similarity,
    "image_classification": _build_image_classification,
    "object_detection": _build_object_detection,
    "automatic_speech_recognition": _build_automatic_speech_recognition,
    "image_captioning": _build_image_captioning,
    "image_generation": _build_image_generation,
}
assert tuple(_BUILDERS) == TINY_TASKS, "every task needs exactly one builder"
_EXTRA_BUILDERS: dict[str, Callable[[Path], None]] = {"t5": _build_t5}
assert tuple(_EXTRA_BUILDERS) == TINY_EXTRA_MODELS
