"""Audio for a speech-to-text bundle: 16 kHz mono float samples, from an array or a WAV file.

``read_wav`` reads the RIFF chunks itself (the stdlib ``wave`` module of Python 3.11 reads integer PCM
only): 8-, 16-, 24- and 32-bit integer PCM and 32/64-bit IEEE float, plain or ``WAVE_FORMAT_EXTENSIBLE``.
Several channels are averaged to one. Another sample rate is refused with the fix (resample it) rather
than resampled here: a silent resampler would be one more thing that differs from the reference.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import UsageError

__all__ = ["SAMPLE_RATE", "read_wav", "waveform"]

SAMPLE_RATE = 16_000
_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE
_MAX_BYTES = 2**31  # a WAV file cannot say more than 4 GB; refuse before reading gigabytes of it


def waveform(audio: Any, index: int = 0) -> np.ndarray:
    """A 1-D float32 array of 16 kHz mono samples: ``audio`` as an array (or a list of numbers) or the path
    of a WAV file; ``UsageError`` with the fix for anything else."""
    if isinstance(audio, (str, Path)):
        return read_wav(audio)
    try:
        array = np.asarray(audio, dtype=np.float32)
    except (TypeError, ValueError):
        raise UsageError(
            f"audio {index} is a {type(audio).__name__}, not samples",
            "pass a 1-D float array of 16 kHz mono samples or the path of a 16 kHz WAV file",
        ) from None
    if array.ndim == 2 and 1 in array.shape:
        array = array.reshape(-1)
    if array.ndim != 1 or array.size == 0 or not np.isfinite(array).all():
        raise UsageError(
            f"audio {index} has shape {tuple(array.shape)}" + ("" if array.ndim != 1 else " or non-finite samples"),
            "pass a non-empty 1-D array of finite 16 kHz mono samples (floats in [-1, 1])",
        )
    return array


def read_wav(path: str | Path) -> np.ndarray:
    """The samples of a 16 kHz WAV file as float32 in [-1, 1] (channels averaged)."""
    file = Path(path)
    fix = "pass a 16 kHz WAV file (e.g. `ffmpeg -i IN -ar 16000 -ac 1 OUT.wav`)"
    if not file.is_file():
        raise UsageError(f"audio file {str(path)!r} does not exist", fix)
    if file.stat().st_size > _MAX_BYTES:
        raise UsageError(f"audio file {file} is {file.stat().st_size} bytes, more than a WAV file holds", fix)
    data = file.read_bytes()
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise UsageError(f"{file} is not a WAV file (no RIFF/WAVE header)", fix)
    fmt, samples, offset = None, None, 12
    while offset + 8 <= len(data):
        kind, size = data[offset : offset + 4], struct.unpack("<I", data[offset + 4 : offset + 8])[0]
        body = data[offset + 8 : offset + 8 + size]
        if kind == b"fmt " and len(body) >= 16:
            fmt = body
        elif kind == b"data":
            samples = body
        offset += 8 + size + (size & 1)
    if fmt is None or samples is None:
        raise UsageError(f"{file} is a broken WAV file (no {'fmt' if fmt is None else 'data'} chunk)", fix)
    tag, channels, rate = struct.unpack("<HHI", fmt[:8])
    bits = struct.unpack("<H", fmt[14:16])[0]
    if tag == _EXTENSIBLE and len(fmt) >= 26:
        tag = struct.unpack("<H", fmt[24:26])[0]
    if rate != SAMPLE_RATE:
        raise UsageError(f"{file} is sampled at {rate} Hz; the model reads {SAMPLE_RATE} Hz audio", fix)
    array = _decode(samples, tag, bits, file, fix)
    if channels < 1 or array.size % channels:
        raise UsageError(f"{file} is a broken WAV file ({channels} channels, {array.size} samples)", fix)
    array = array.reshape(-1, channels).mean(axis=1, dtype=np.float64).astype(np.float32)
    if array.size == 0:
        raise UsageError(f"{file} holds no samples", "record some audio")
    return array


def _decode(raw: bytes, tag: int, bits: int, file: Path, fix: str) -> np.ndarray:
    if tag == _FLOAT and bits in (32, 64):
        width = bits // 8
        return np.frombuffer(raw[: len(raw) // width * width], f"<f{width}").astype(np.float32)
    if tag != _PCM or bits not in (8, 16, 24, 32):
        raise UsageError(f"{file} holds {bits}-bit samples of WAV format {tag}, not PCM or float", fix)
    if bits == 8:
        return (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    if bits == 24:
        packed = np.frombuffer(raw[: len(raw) // 3 * 3], np.uint8).reshape(-1, 3).astype(np.int32)
        value = packed[:, 0] | (packed[:, 1] << 8) | (packed[:, 2] << 16)
        value = np.where(value >= 1 << 23, value - (1 << 24), value)
        return value.astype(np.float32) / float(1 << 23)
    width = bits // 8
    ints = np.frombuffer(raw[: len(raw) // width * width], f"<i{width}")
    return (ints.astype(np.float64) / float(1 << (bits - 1))).astype(np.float32)
