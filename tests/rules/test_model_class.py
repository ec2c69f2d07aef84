"""Model class of quantised checkpoints: parameters are counted unpacked, so a 4-bit model keeps its class."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from pytest_aienergyscore.rules import model_class as modelclass


def _header(path: Path, tensors: dict[str, tuple[str, list[int]]]) -> None:
    """A safetensors file that holds only its header (dtype and shape per tensor): all the count reads."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    for name, (dtype, shape) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [0, 0]}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)


def _config(folder: Path, quantization: dict[str, Any] | None) -> None:
    config: dict[str, Any] = {"model_type": "gpt_oss"}
    if quantization:
        config["quantization_config"] = quantization
    (folder / "config.json").write_text(json.dumps(config))


def test_mxfp4_experts_count_two_parameters_a_byte_and_their_scales_none(tmp_path: Path) -> None:
    # gpt-oss-20b's shape: 24 layers of 32 experts in MXFP4 blocks (16 bytes = 32 values per block), the rest BF16
    _config(tmp_path, {"quant_method": "mxfp4"})
    tensors = {
        "experts.gate_up_proj_blocks": ("U8", [24, 32, 5760, 90, 16]),
        "experts.gate_up_proj_scales": ("U8", [24, 32, 5760, 90]),
        "experts.down_proj_blocks": ("U8", [24, 32, 2880, 90, 16]),
        "experts.down_proj_scales": ("U8", [24, 32, 2880, 90]),
        "embed_tokens.weight": ("BF16", [201088, 2880]),
        "lm_head.weight": ("BF16", [201088, 2880]),
        "attention.weight": ("BF16", [24, 2880, 4096 * 3]),
    }
    _header(tmp_path / "model.safetensors", tensors)
    packed = sum(_prod(shape) for dtype, shape in tensors.values())
    counted = modelclass.count_from_safetensors(tmp_path)
    assert counted is not None and counted > 20_000_000_000 > packed  # stored bytes would say class A
    experts = 2 * (_prod([24, 32, 5760, 90, 16]) + _prod([24, 32, 2880, 90, 16]))
    assert counted == experts + 2 * 201088 * 2880 + 24 * 2880 * 4096 * 3
    assert modelclass.classify(counted) == "B"


def test_gptq_qweight_holds_eight_four_bit_values_and_its_zeros_and_scales_are_not_parameters(tmp_path: Path) -> None:
    _config(tmp_path, {"quant_method": "gptq", "bits": 4})
    _header(
        tmp_path / "model.safetensors",
        {
            "layer.qweight": ("I32", [512, 4096]),
            "layer.qzeros": ("I32", [32, 512]),
            "layer.scales": ("F16", [32, 4096]),
            "layer.g_idx": ("I32", [4096]),
        },
    )
    assert modelclass.count_from_safetensors(tmp_path) == 512 * 4096 * 8


def test_an_unquantised_model_counts_every_tensor_as_stored(tmp_path: Path) -> None:
    _config(tmp_path, None)
    _header(tmp_path / "model.safetensors", {"a.weight": ("BF16", [10, 10]), "a.scales": ("BF16", [3])})
    assert modelclass.count_from_safetensors(tmp_path) == 103


def _prod(shape: list[int]) -> int:
    total = 1
    for dim in shape:
        total *= dim
    return total
