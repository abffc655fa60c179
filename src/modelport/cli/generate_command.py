"""``modelport generate``: prompts from flags, a file or stdin (or, for a speech bundle, ``--audio`` WAV files);
tokens streamed to the terminal as they come, or one JSON object per prompt."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from modelport.cli.console import emit_json, err, errors_as_json, out
from modelport.errors import UsageError

__all__ = ["generate", "generate_command", "read_prompts"]


def read_prompts(prompts: list[str], prompt_file: Path | None, input_ids: list[str]) -> list[Any]:
    """Texts from --prompt, --prompt-file (one per line) or stdin (``-`` or piped), or ids from --input-ids."""
    listed: list[Any] = list(prompts)
    if prompt_file is not None:
        if not Path(prompt_file).is_file():
            raise UsageError(f"--prompt-file {str(prompt_file)!r} is not a file", "pass a text file, one prompt a line")
        try:
            text = Path(prompt_file).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"--prompt-file {prompt_file} is not UTF-8 text", "save it as UTF-8") from None
        listed += [line for line in text.splitlines() if line.strip()]
    if "-" in listed or (not listed and not input_ids and not sys.stdin.isatty()):
        listed = [p for p in listed if p != "-"] + [sys.stdin.read().rstrip("\n")]
    for text in input_ids:
        try:
            listed.append([int(t) for t in text.replace(" ", "").split(",") if t])
        except ValueError:
            raise UsageError(
                f"--input-ids {text!r} is not a comma-separated list of integers", "e.g. --input-ids 15496,11,995"
            ) from None
    if not listed:
        raise UsageError("no prompt given", "pass --prompt TEXT (repeatable), --prompt-file FILE, or pipe text in")
    return listed


def generate_command(
    out: Console,
    err: Console,
    bundle: Path,
    prompts: list[Any],
    *,
    backend: str | None,
    threads: int | None,
    as_json: bool,
    chat: bool,
    options: dict[str, Any],
    audio: list[str] | None = None,
) -> None:
    """``audio``: WAV paths for a speech bundle (``prompts`` then empty)."""
    from modelport.bundle import Bundle
    from modelport.generation.api import load_generator, load_seq2seq
    from modelport.generation.seq2seq import is_seq2seq

    opened = Bundle.open(bundle)
    if is_seq2seq(opened):
        if chat:
            raise UsageError("--chat applies to chat models, not to an encoder-decoder", "drop --chat")
        with load_seq2seq(opened, backend, threads=threads) as model:
            if model.speech and not audio:
                raise UsageError(f"{bundle} transcribes speech: it reads audio, not text", "pass --audio FILE.wav")
            if audio and not model.speech:
                raise UsageError(f"{bundle} is a text-to-text model: it reads text, not audio", "pass --prompt TEXT")
            _emit(
                out, err, model, None if audio else prompts, as_json, {**options, "audio": audio} if audio else options
            )
        return
    if audio:
        raise UsageError(f"{bundle} is a text generation model: it reads text, not audio", "pass --prompt TEXT")
    with load_generator(opened, backend, threads=threads) as lm:
        _emit(out, err, lm, prompts, as_json, {**options, "chat": chat})


def _emit(out: Console, err: Console, lm: Any, prompts: Any, as_json: bool, options: dict[str, Any]) -> None:
    """Generate, then print: JSON, one streamed text, or one line per prompt; a summary per prompt on stderr."""
    count = len(prompts if prompts is not None else options["audio"])
    if as_json:
        results = lm.generate(prompts, **options)
        emit_json({"backend": lm.name, "results": [r.to_json() for r in results]})
        return
    if count == 1:
        stream = lm.stream(prompts, **options)
        for event in stream:  # Ctrl-C here leaves what was printed on the screen (exit 130)
            if event.text:
                out.print(event.text, end="", highlight=False, soft_wrap=True)
        out.print()
        results = stream.results or []
    else:
        results = lm.generate(prompts, **options)
        for index, result in enumerate(results):
            out.print(
                f"[{index}] {result.text if result.text is not None else result.token_ids}",
                highlight=False,
                soft_wrap=True,
            )
    for index, result in enumerate(results):
        rate = f", {result.decode_tokens_per_s:.1f} tokens/s" if result.decode_tokens_per_s else ""
        tag = f"[{index}] " if len(results) > 1 else ""
        err.print(
            f"{tag}{len(result.token_ids)} tokens, finish: {result.finish_reason}, first token "
            f"{result.time_to_first_token_s * 1000:.1f} ms{rate}",
            highlight=False,
        )
        for notice in result.notices:
            err.print(f"notice: {notice}", highlight=False, soft_wrap=True)


def generate(
    bundle: Path = typer.Argument(
        ...,
        help="a generation bundle (export hf:DIR: --task text-generation, text2text-generation or "
        "automatic-speech-recognition)",
    ),
    prompt: list[str] = typer.Option(
        None, "--prompt", "-p", help="a prompt (repeatable: one left-padded batch); - reads stdin"
    ),
    prompt_file: Path = typer.Option(None, "--prompt-file", help="prompts, one per line"),
    input_ids: list[str] = typer.Option(None, "--input-ids", help="a prompt as token ids: 15496,11,995 (repeatable)"),
    audio: list[Path] = typer.Option(
        None, "--audio", help="speech bundles (Whisper): a 16 kHz WAV file to transcribe (repeatable: one batch)"
    ),
    max_new_tokens: int = typer.Option(32, "--max-new-tokens", help="new tokens per prompt at most"),
    temperature: float = typer.Option(0.0, help="0 (default): greedy; above 0: sampling at this temperature"),
    top_k: int = typer.Option(0, "--top-k", help="sampling: keep the k most likely tokens (0: all)"),
    top_p: float = typer.Option(1.0, "--top-p", help="sampling: keep the most likely tokens up to this probability"),
    repetition_penalty: float = typer.Option(1.0, "--repetition-penalty", help="above 1 discourages repeats"),
    seed: int = typer.Option(None, help="seed for sampling: the same seed gives the same tokens"),
    stop: list[str] = typer.Option(None, "--stop", help="stop when the text contains this (repeatable)"),
    chat: bool = typer.Option(False, "--chat", help="wrap each prompt in the tokenizer's chat template"),
    ignore_eos: bool = typer.Option(False, "--ignore-eos", help="generate --max-new-tokens whatever comes"),
    backend: str = typer.Option(
        None,
        "--backend",
        "-b",
        help="ort:cpu (default, the cache kept by IO binding), openvino, or another backend of `modelport run --help`",
    ),
    threads: int = typer.Option(None, "--threads", help="intra-op threads (default: physical cores)"),
    as_json: bool = typer.Option(False, "--json", help="per prompt: text, token_ids, finish_reason, timings"),
) -> None:
    """Generate text with a generation bundle: greedy by default, tokens streamed as they come. An encoder-decoder
    bundle reads --prompt (T5, BART, Marian: text to text) or --audio (Whisper: speech to text)."""
    errors_as_json(as_json)
    if audio and (prompt or prompt_file or input_ids):
        raise UsageError("--audio and text prompts were both given", "a speech bundle reads --audio; drop the others")
    prompts = [] if audio else read_prompts(prompt or [], prompt_file, input_ids or [])
    options = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                   repetition_penalty=repetition_penalty, stop=stop or (), ignore_eos=ignore_eos)  # fmt: skip
    generate_command(out, err, bundle, prompts, backend=backend, threads=threads, as_json=as_json, chat=chat,
                     options=options, audio=[str(a) for a in audio] if audio else None)  # fmt: skip
