"""Audio samples reach the ASR preprocessing as one shape, however the dataset library hands them over."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from pytest_aienergyscore.rules.datasets import DatasetError, load_audio, offline_sample_set
from pytest_aienergyscore.rules.tasks import TASKS

torch = pytest.importorskip("torch")


@dataclass
class _Samples:
    data: Any
    sample_rate: int


class _Decoder:
    """The part of torchcodec's ``AudioDecoder`` that datasets 4 and later return for an Audio column."""

    def __init__(self, data: Any, rate: int) -> None:
        self._samples = _Samples(data, rate)

    def get_all_samples(self) -> _Samples:
        return self._samples


def test_a_dict_with_an_array_is_taken_as_it_is() -> None:
    assert load_audio({"array": [0.0, 0.5], "sampling_rate": 16000}) == {"array": [0.0, 0.5], "sampling_rate": 16000}


def test_a_decoder_object_from_datasets_4_is_read_channels_averaged() -> None:
    stereo = torch.tensor([[0.0, 1.0, 0.5], [1.0, 0.0, 0.5]])
    assert load_audio(_Decoder(stereo, 16000)) == {"array": [0.5, 0.5, 0.5], "sampling_rate": 16000}
    mono = torch.tensor([[0.25, -0.25]])
    assert load_audio(_Decoder(mono, 8000)) == {"array": [0.25, -0.25], "sampling_rate": 8000}


def test_a_decoder_that_fails_is_one_line_naming_it() -> None:
    class Broken:
        def get_all_samples(self) -> Any:
            raise RuntimeError("could not open the stream")

    with pytest.raises(DatasetError, match=r"^cannot decode audio from Broken: could not open the stream$"):
        load_audio(Broken())


def test_tasks_reading_one_official_dataset_share_its_offline_sample_set() -> None:
    sets = {name: offline_sample_set(spec) for name, spec in TASKS.items()}
    assert {name: found for name, found in sets.items() if found} == {
        "text_generation": "text_generation",
        "reasoning": "text_generation",  # reasoning reads the text generation dataset
        "sentence_similarity": "sentence_similarity",
        "text_classification": "text_classification",
        "question_answering": "extractive_qa",  # named after its official dataset, AIEnergyScore/extractive_qa
    }
    for name, spec in TASKS.items():
        if sets[name]:
            assert spec.dataset.endswith("/" + str(sets[name]))
