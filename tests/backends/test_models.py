"""A model's files read one way for every backend: the local folder, the config's facts, the architecture check, the
dtype, and the parameter count from safetensors headers (no weights loaded), packed quantised values unpacked."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from pytest_aienergyscore.backends import models
from pytest_aienergyscore.backends.base import BackendError, ModelUnavailable
from pytest_aienergyscore.rules.model_class import classify
from pytest_aienergyscore.rules.tasks import get_task
from tests.support.tiny_models import build_tiny_model

REPO = Path(__file__).resolve().parents[2]
TINY_TEXT = REPO / ".cache" / "tiny-models" / "text_generation"


def write_header(path: Path, tensors: dict[str, tuple[str, list[int]]]) -> Path:
    """A safetensors file that holds only its header (dtype and shape per tensor): all the count reads."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    for name, (dtype, shape) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [0, 0]}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    return path


def write_bf16_header(path: Path, shapes: dict[str, list[int]]) -> Path:
    return write_header(path, {name: ("BF16", shape) for name, shape in shapes.items()})


def write_config(folder: Path, config: dict[str, Any]) -> None:
    (folder / "config.json").write_text(json.dumps(config))


def _prod(shape: list[int]) -> int:
    total = 1
    for dim in shape:
        total *= dim
    return total


# -- counting from safetensors headers -----------------------------------------------------------------------------


def test_a_35b_checkpoint_is_class_b_from_its_header_alone(tmp_path: Path) -> None:
    # 35 billion parameters declared; the file is a few hundred bytes, so nothing but the header can have been read.
    write_bf16_header(tmp_path / "model.safetensors", {"a": [35_000, 1_000_000], "b": [7]})
    assert (tmp_path / "model.safetensors").stat().st_size < 1000
    assert models.count_parameters(tmp_path) == (35_000_000_007, "safetensors headers")
    size = models.model_size([str(tmp_path)])
    assert (size.model_class, size.parameters) == ("B", 35_000_000_007)
    assert size.class_source == "35,000,000,007 parameters (safetensors headers)"


def test_sharded_checkpoint_counts_every_shard_the_index_names(tmp_path: Path) -> None:
    write_bf16_header(tmp_path / "model-00001-of-00002.safetensors", {"x": [40_000, 1_000_000]})
    write_bf16_header(tmp_path / "model-00002-of-00002.safetensors", {"y": [30_000, 1_000_000]})
    write_bf16_header(tmp_path / "stray.safetensors", {"z": [10**6]})  # not in the index: not counted
    weight_map = {"x": "model-00001-of-00002.safetensors", "y": "model-00002-of-00002.safetensors"}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    assert models.count_parameters(tmp_path) == (70_000_000_000, "safetensors headers")
    assert models.model_size([str(tmp_path)]).model_class == "C"


def test_mxfp4_experts_count_two_parameters_a_byte_and_their_scales_none(tmp_path: Path) -> None:
    # gpt-oss-20b's shape: 24 layers of 32 experts in MXFP4 blocks (16 bytes = 32 values per block), the rest BF16
    write_config(tmp_path, {"model_type": "gpt_oss", "quantization_config": {"quant_method": "mxfp4"}})
    tensors = {
        "experts.gate_up_proj_blocks": ("U8", [24, 32, 5760, 90, 16]),
        "experts.gate_up_proj_scales": ("U8", [24, 32, 5760, 90]),
        "experts.down_proj_blocks": ("U8", [24, 32, 2880, 90, 16]),
        "experts.down_proj_scales": ("U8", [24, 32, 2880, 90]),
        "embed_tokens.weight": ("BF16", [201088, 2880]),
        "lm_head.weight": ("BF16", [201088, 2880]),
        "attention.weight": ("BF16", [24, 2880, 4096 * 3]),
    }
    write_header(tmp_path / "model.safetensors", tensors)
    packed = sum(_prod(shape) for dtype, shape in tensors.values())
    counted = models.count_from_safetensors(tmp_path)
    assert counted is not None and counted > 20_000_000_000 > packed  # stored bytes would say class A
    experts = 2 * (_prod([24, 32, 5760, 90, 16]) + _prod([24, 32, 2880, 90, 16]))
    assert counted == experts + 2 * 201088 * 2880 + 24 * 2880 * 4096 * 3
    assert classify(counted) == "B"


def test_gptq_qweight_holds_eight_four_bit_values_and_its_zeros_and_scales_are_not_parameters(tmp_path: Path) -> None:
    write_config(tmp_path, {"model_type": "llama", "quantization_config": {"quant_method": "gptq", "bits": 4}})
    write_header(
        tmp_path / "model.safetensors",
        {
            "layer.qweight": ("I32", [512, 4096]),
            "layer.qzeros": ("I32", [32, 512]),
            "layer.scales": ("F16", [32, 4096]),
            "layer.g_idx": ("I32", [4096]),
        },
    )
    assert models.count_from_safetensors(tmp_path) == 512 * 4096 * 8


def test_an_unquantised_model_counts_every_tensor_as_stored(tmp_path: Path) -> None:
    write_config(tmp_path, {"model_type": "gpt_oss"})
    write_header(tmp_path / "model.safetensors", {"a.weight": ("BF16", [10, 10]), "a.scales": ("BF16", [3])})
    assert models.count_from_safetensors(tmp_path) == 103


def test_a_diffusers_pipeline_counts_the_weights_of_every_component(tmp_path: Path) -> None:
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "P", "unet": ["d", "U"], "vae": ["d", "V"]}))
    for name, shape in (("unet", [1000, 1000]), ("vae", [10, 10])):
        (tmp_path / name).mkdir()
        write_bf16_header(tmp_path / name / "model.safetensors", {"w": shape})
    write_bf16_header(tmp_path / "stray.safetensors", {"z": [7]})  # beside the components: not a component's
    assert models.count_from_safetensors(tmp_path) == 1_000_100


# -- estimating from config.json -------------------------------------------------------------------------------------


def test_a_missing_shard_falls_back_to_the_config_estimate(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": "gone.safetensors"}}))
    write_config(tmp_path, LLAMA3_8B)
    parameters, source = models.count_parameters(tmp_path) or (0, "")
    assert source == "config.json estimate" and 7.9e9 < parameters < 8.2e9


# Published dimensions of well-known models, and their parameter counts (from their model cards).
LLAMA3_8B = {
    "hidden_size": 4096,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "intermediate_size": 14336,
    "vocab_size": 128256,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
}
LLAMA3_70B = {**LLAMA3_8B, "hidden_size": 8192, "num_hidden_layers": 80, "num_attention_heads": 64}
LLAMA3_70B["intermediate_size"] = 28672
MIXTRAL_8X7B = {**LLAMA3_8B, "vocab_size": 32000, "num_local_experts": 8}


@pytest.mark.parametrize(
    ("config", "published", "klass"),
    [(LLAMA3_8B, 8.03e9, "A"), (LLAMA3_70B, 70.6e9, "C"), (MIXTRAL_8X7B, 46.7e9, "B")],
    ids=["llama3-8b", "llama3-70b", "mixtral-8x7b"],
)
def test_config_estimate_is_within_two_percent(config: dict[str, Any], published: float, klass: str) -> None:
    estimate = models.estimate_from_config(config)
    assert estimate is not None and abs(estimate - published) / published < 0.02
    assert classify(estimate) == klass


def test_config_without_dimensions_gives_no_estimate() -> None:
    assert models.estimate_from_config({"model_type": "vit", "image_size": 224}) is None


def test_a_config_that_is_not_a_json_object_gives_no_facts_instead_of_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('["LlamaForCausalLM"]')
    assert models.read_config(tmp_path) == {}
    assert models.local_model_type(str(tmp_path)) is None
    assert models.count_parameters(tmp_path) is None
    models.check_architecture(get_task("text_classification").default_protocol, "m", str(tmp_path))  # no facts: passes


def test_local_model_type_reads_the_configs_model_type(tmp_path: Path) -> None:
    write_config(tmp_path, {"model_type": "t5"})
    assert models.local_model_type(str(tmp_path)) == "t5"
    assert models.local_model_type(None) is None and models.local_model_type(str(tmp_path / "absent")) is None


# -- where the files are ---------------------------------------------------------------------------------------------


def _hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_ref: bool) -> Path:
    """A Hub cache holding one snapshot of org/big-model (25B parameters), with or without its ``refs/main``."""
    cache = tmp_path / "hub"
    snapshot = cache / "models--org--big-model" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    if with_ref:
        (cache / "models--org--big-model" / "refs").mkdir()
        (cache / "models--org--big-model" / "refs" / "main").write_text("0123abcd")
    write_bf16_header(snapshot / "model.safetensors", {"w": [25_000, 1_000_000]})
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return snapshot


def test_a_hub_id_in_the_local_cache_is_found_without_downloading(tmp_path: Path, monkeypatch) -> None:
    snapshot = _hub_cache(tmp_path, monkeypatch, with_ref=True)
    assert models.local_model_folder("org/big-model") == snapshot
    assert models.model_size(["org/big-model"]).model_class == "B"
    assert models.local_model_folder("org/not-cached") is None
    assert models.model_size(["org/not-cached"]) == models.ModelSize()


def test_the_loader_and_the_class_rule_find_the_same_snapshot_when_huggingface_hub_cannot_say(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No refs/main: huggingface_hub refuses the snapshot, the cache scan finds it. Before, the class came from these
    # files while the loader called the model unavailable: two rules for one question.
    snapshot = _hub_cache(tmp_path, monkeypatch, with_ref=False)
    assert models.model_size(["org/big-model"]).model_class == "B"
    assert models.resolve_model_path("org/big-model") == str(snapshot)


def test_resolve_model_path_keeps_a_folder_and_refuses_an_unknown_id_offline_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert models.resolve_model_path(str(tmp_path)) == str(tmp_path)
    with pytest.raises(ModelUnavailable, match="'nobody/nothing' cannot be had here") as caught:
        models.resolve_model_path("nobody/nothing")
    assert "\n" not in str(caught.value)


def test_the_hub_counts_as_offline_only_when_hf_hub_offline_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    for value, offline in (("1", True), ("TRUE", True), ("", False), ("0", False), ("no", False)):
        monkeypatch.setenv("HF_HUB_OFFLINE", value)
        assert models.hub_offline() is offline, value


# -- the size the class rule is given ------------------------------------------------------------------------------


def test_the_option_decides_the_class_and_the_count_is_kept(tmp_path: Path) -> None:
    write_bf16_header(tmp_path / "model.safetensors", {"w": [1000, 1000]})
    size = models.model_size([str(tmp_path)], override="c")
    assert (size.model_class, size.class_source, size.parameters) == ("C", "--energy-model-class", 1_000_000)
    assert models.model_size(["http://a-vllm-endpoint/v1"], override="B").model_class == "B"


def test_a_loaded_models_count_is_the_last_resort() -> None:
    size = models.model_size(["nobody/nothing"], loaded=70_000_000_000)
    assert (size.model_class, size.parameters_source) == ("C", "loaded model")


def test_tiny_model_is_class_a_by_its_safetensors() -> None:
    pytest.importorskip("transformers")
    build_tiny_model("text_generation", TINY_TEXT)
    size = models.model_size([str(TINY_TEXT)])
    assert size.model_class == "A" and size.parameters_source == "safetensors headers"
    estimate = models.estimate_from_config(models.read_config(TINY_TEXT))
    assert estimate is not None and size.parameters is not None
    assert abs(estimate - size.parameters) / size.parameters < 0.05  # the estimate leaves out the norms only


# -- what the model may do, and in which precision -------------------------------------------------------------------


def test_check_architecture_refuses_a_model_not_made_for_the_task_in_one_line(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    write_config(tmp_path, {"model_type": "llama", "architectures": ["LlamaForCausalLM"]})
    with pytest.raises(BackendError, match=r"'m' \(LlamaForCausalLM\) is not a text_classification model") as caught:
        models.check_architecture(get_task("text_classification").default_protocol, "m", str(tmp_path))
    assert "\n" not in str(caught.value)
    models.check_architecture(get_task("text_generation").default_protocol, "m", str(tmp_path))  # its own task: fine


def test_pick_dtype_keeps_fp32_off_the_gpu_even_for_text_generation() -> None:
    torch = pytest.importorskip("torch")
    assert models.pick_dtype(get_task("text_generation"), "cpu") is torch.float32
    assert models.pick_dtype(get_task("image_classification"), "cuda:0") is torch.float32
