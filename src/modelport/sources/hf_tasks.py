"""Which tasks a transformers folder supports, and which one it was saved for.

transformers' own auto mappings are the table (``MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES`` and
the rest: model type -> class), as optimum's ``TasksManager`` uses them: a folder supports a task when
its model type has a class for it, and was saved for the task whose class is its ``architectures``
entry. Everything here reads ``config.json`` as plain JSON; no model is built.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelport.errors import MissingExtraError, SourceError, UsageError

__all__ = [
    "Task",
    "TASKS",
    "TaskInfo",
    "tasks",
    "task_names",
    "folder_tasks",
    "folder_task",
    "auto_class",
    "is_seq2seq",
    "is_sentence_transformers",
]


@dataclass(frozen=True)
class Task:
    name: str
    # (transformers Auto class, the modeling_auto mapping behind it: model type -> class name), in order
    classes: tuple[tuple[str, str], ...]


def _task(name: str, *pairs: str) -> Task:
    """``pairs``: Auto class, mapping stem (``SEQUENCE_CLASSIFICATION`` for ``MODEL_FOR_..._MAPPING_NAMES``)."""
    stems = pairs[1::2]
    mappings = [f"MODEL_FOR_{stem}_MAPPING_NAMES" if stem else "MODEL_MAPPING_NAMES" for stem in stems]
    return Task(name, tuple(zip(pairs[::2], mappings, strict=True)))


# the specific tasks first: a class in two mappings (CLIPModel is the base model and the zero-shot one)
# is saved for the first one listed
TASKS = (
    _task("text-generation", "AutoModelForCausalLM", "CAUSAL_LM"),
    _task("text2text-generation", "AutoModelForSeq2SeqLM", "SEQ_TO_SEQ_CAUSAL_LM"),
    # a speech-to-text encoder-decoder (Whisper) generates; a CTC model (Wav2Vec2ForCTC) is one pass
    _task("automatic-speech-recognition", "AutoModelForSpeechSeq2Seq", "SPEECH_SEQ_2_SEQ", "AutoModelForCTC", "CTC"),
    _task("fill-mask", "AutoModelForMaskedLM", "MASKED_LM"),
    _task("text-classification", "AutoModelForSequenceClassification", "SEQUENCE_CLASSIFICATION"),
    _task("token-classification", "AutoModelForTokenClassification", "TOKEN_CLASSIFICATION"),
    _task("question-answering", "AutoModelForQuestionAnswering", "QUESTION_ANSWERING"),
    _task("image-classification", "AutoModelForImageClassification", "IMAGE_CLASSIFICATION"),
    _task("object-detection", "AutoModelForObjectDetection", "OBJECT_DETECTION"),
    _task("audio-classification", "AutoModelForAudioClassification", "AUDIO_CLASSIFICATION"),
    _task(
        "zero-shot-image-classification", "AutoModelForZeroShotImageClassification", "ZERO_SHOT_IMAGE_CLASSIFICATION"
    ),
    _task("feature-extraction", "AutoModel", ""),
)
_BY_NAME = {t.name: t for t in TASKS}
#: a sentence-transformers folder's task: the transformer with its pooling (sources.sentence_transformers)
SENTENCE_SIMILARITY = "sentence-similarity"


def task_names() -> tuple[str, ...]:
    return (*_BY_NAME, SENTENCE_SIMILARITY)


def get(name: str) -> Task:
    if name not in _BY_NAME:
        raise UsageError(f"unknown task {name!r}", f"choose one of: {', '.join(_BY_NAME)}")
    return _BY_NAME[name]


def read_config(folder: Path) -> dict[str, Any]:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def _classes(task: Task, model_type: str) -> list[str]:
    """The class names transformers has for ``model_type`` under ``task``."""
    return [name for _, mapping in task.classes for name in _mapped(mapping, model_type)]


def _mapped(mapping: str, model_type: str) -> list[str]:
    from transformers.models.auto import modeling_auto

    value = getattr(modeling_auto, mapping, {}).get(model_type)
    return [value] if isinstance(value, str) else list(value or [])


def folder_tasks(folder: Path) -> list[str]:
    """Every task the folder's model type has a transformers class for, the folder's own first."""

    require_transformers()
    model_type = str(read_config(folder).get("model_type") or "")
    tasks = [t.name for t in TASKS if _classes(t, model_type)]
    own = folder_task(folder)
    if is_sentence_transformers(folder):
        tasks.append(SENTENCE_SIMILARITY)
    return sorted(tasks, key=lambda name: name != own)


def folder_task(folder: Path) -> str | None:
    """The task the folder was saved for: ``sentence-similarity`` for a sentence-transformers folder, else the
    first task whose class is the one in ``config.json``'s ``architectures``; None when none is."""
    if is_sentence_transformers(folder):
        return SENTENCE_SIMILARITY
    require_transformers()
    saved = architecture(folder)
    model_type = str(read_config(folder).get("model_type") or "")
    for task in TASKS:
        if saved and saved in _classes(task, model_type):
            return task.name
    if saved.endswith("ForCausalLM"):  # a class transformers does not map (remote code's), by its name
        return "text-generation"
    return None


def is_seq2seq(folder: Path) -> bool:
    """An encoder-decoder (T5, BART, Marian, Whisper): generation runs an encoder graph and a decoder graph."""
    return bool(read_config(folder).get("is_encoder_decoder"))


def auto_class(task_name: str, folder: Path) -> Any:
    """The transformers Auto class that builds the folder's model for ``task_name``; a UsageError naming the
    tasks it does support when there is none."""

    transformers = require_transformers()
    task = get(task_name)
    model_type = str(read_config(folder).get("model_type") or "")
    for auto, mapping in task.classes:
        if _mapped(mapping, model_type):
            return getattr(transformers, auto)
    raise UsageError(
        f"transformers has no {task_name} model for {model_type or 'this'} folders ({folder})",
        f"choose one of its tasks: {', '.join(folder_tasks(folder)) or 'none'} (modelport tasks hf:{folder})",
    )


def is_sentence_transformers(folder: Path) -> bool:
    """A folder ``SentenceTransformer.save`` wrote: its pipeline (transformer, pooling...) in ``modules.json``."""
    return (folder / "modules.json").is_file()


@dataclass(frozen=True)
class TaskInfo:
    """One task of a folder: the class it loads as and the bundle ``export --task`` writes for it."""

    name: str
    model_class: str  # "" without a folder
    bundle: str  # "generation: a decoder with a KV cache", ..., "one graph"
    own: bool  # the task the folder was saved for: export's default


def tasks(model: str | Path | None = None) -> list[TaskInfo]:
    """The tasks an ``hf:DIR`` folder supports (its own first), or every task modelport exports without one."""
    if model is None:
        return [TaskInfo(name, "", _bundle_kind(name, seq2seq=True), False) for name in task_names()]
    folder = Path(str(model).removeprefix("hf:")).expanduser()

    check_folder(folder)
    own = folder_task(folder)
    model_type = str(read_config(folder).get("model_type") or "")
    seq2seq = is_seq2seq(folder)
    found = []
    for name in folder_tasks(folder):
        if name == SENTENCE_SIMILARITY:
            model_class = "SentenceTransformer pipeline"
        elif name == "feature-extraction":  # export's meaning: the folder's own class, one pass
            model_class = architecture(folder)
        else:
            model_class = _classes(_BY_NAME[name], model_type)[0]
        found.append(TaskInfo(name, model_class, _bundle_kind(name, seq2seq), name == own))
    return found


def _bundle_kind(name: str, seq2seq: bool) -> str:
    if name == "text-generation":
        return "generation: a decoder with a KV cache"
    if name in ("text2text-generation", "automatic-speech-recognition") and seq2seq:
        return "generation: an encoder and a decoder with a KV cache"
    return "one graph"


WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def require_transformers() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import transformers
    except ImportError:
        raise MissingExtraError("hf: models", "hf") from None
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    return transformers


def check_folder(folder: Path) -> None:
    """A folder with a config and weights, or a SourceError that says which is missing."""
    if not folder.is_dir():
        raise SourceError(
            f"transformers folder {str(folder)!r} does not exist",
            "pass hf:DIR with a folder written by model.save_pretrained(DIR)",
        )
    if not (folder / "config.json").is_file():
        raise SourceError(
            f"{folder} has no config.json, so it is not a transformers model folder",
            "pass a folder written by model.save_pretrained(DIR)",
        )
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise SourceError(
            f"{folder} has a config but no weights ({', '.join(WEIGHT_FILES[::2])})",
            "save the weights too: model.save_pretrained(DIR)",
        )


def architecture(folder: Path) -> str:
    """The class name a folder was saved from (``config.json``'s ``architectures``), read as plain JSON."""
    try:
        names = json.loads((folder / "config.json").read_text()).get("architectures") or [""]
    except (OSError, ValueError, AttributeError):
        return ""
    return str(names[0]) if isinstance(names, list) and names else ""
