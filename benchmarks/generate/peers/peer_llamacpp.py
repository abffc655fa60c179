"""Peer: llama.cpp through llama-cpp-python, GGUF converted from the same transformers weights and quantized
to Q4_0, Q4_K_M or Q8_0 by llama.cpp's own quantizer.

Run with build/gen-llamacpp-env/bin/python (benchmarks/generate/peers/setup.sh llamacpp). See protocol.py for
the arguments and the JSON lines.

The f16 GGUF comes from llama.cpp's ``convert_hf_to_gguf.py`` (from the llama-cpp-python sdist the setup
unpacks into build/gen-src), with one change: the vocabulary it writes is a stand-in (the 256 byte tokens of
byte-level BPE, then ``t<id>``), because the benchmark feeds token ids and the converter refuses tokenizers
it does not know by hash. Weights, their permutation and the quantization are llama.cpp's.

Generation runs llama.cpp's batched decoding through the C API: the prompt rows as sequences 0..B-1 of one
``llama_batch`` (one ``llama_decode``), then one batch of B tokens per step, greedy argmax over each row's
logits, exactly N steps (no end-of-sequence check).
"""

import ctypes
import glob
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import protocol  # noqa: E402

SYSTEM = "llama.cpp"
PACKAGES = ("llama_cpp_python", "numpy")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
FTYPES = {"q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0", "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M", "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0"}
# llama.cpp's weight repacking into its "extra" buffers (AMX tiles where the CPU has AMX, else its AVX
# layouts). On this Sapphire Rapids VM the AMX path segfaults at the first decode (ggml-org/llama.cpp#20824,
# open); LLAMACPP_EXTRA_BUFFERS=0 turns the repacking off (plain ggml-cpu kernels, still AVX-512 VNNI).
EXTRA_BUFFERS = os.environ.get("LLAMACPP_EXTRA_BUFFERS", "1") != "0"


def _converter_dir():
    found = sorted(glob.glob(os.path.join(ROOT, "build", "gen-src", "llama_cpp_python-*", "vendor", "llama.cpp")))
    if not found:
        raise RuntimeError("no llama.cpp sources in build/gen-src: run benchmarks/generate/peers/setup.sh llamacpp")
    return found[-1]


def _byte_tokens():
    """GPT-2's byte-to-unicode table: the 256 single-character tokens of byte-level BPE."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    extra = iter(range(256, 512))
    return [chr(b) if b in keep else chr(next(extra)) for b in range(256)]


def convert_f16(model_dir, out):
    """``convert_hf_to_gguf.py MODEL --outtype f16`` in this process, with the stand-in vocabulary."""
    sys.path.insert(0, _converter_dir())
    import convert_hf_to_gguf
    import gguf
    from conversion import llama

    def stand_in_vocab(self):
        n = self.hparams["vocab_size"]
        tokens = (_byte_tokens() + ["ĠĠ"] + [f"t{i}" for i in range(257, n)])[:n]
        w = self.gguf_writer
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("default")
        w.add_token_list(tokens)
        w.add_token_types([gguf.TokenType.NORMAL] * n)
        w.add_token_merges(["Ġ Ġ"])
        w.add_bos_token_id(self.hparams.get("bos_token_id") or 0)
        w.add_eos_token_id(self.hparams.get("eos_token_id") or 0)

    llama.LlamaModel.set_vocab = stand_in_vocab
    argv, sys.argv = sys.argv, ["convert_hf_to_gguf.py", model_dir, "--outfile", out, "--outtype", "f16"]
    try:
        convert_hf_to_gguf.main()
    finally:
        sys.argv = argv


def build(args):
    import llama_cpp

    def quantize(folder):
        f16 = os.path.join(args.work, "model-f16.gguf")
        if not os.path.exists(f16):
            convert_f16(args.model, f16 + ".partial")
            os.replace(f16 + ".partial", f16)
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = getattr(llama_cpp, FTYPES[args.precision])
        params.nthread = args.threads
        out = os.path.join(folder, "model.gguf")
        if llama_cpp.llama_model_quantize(f16.encode(), out.encode(), ctypes.byref(params)) != 0:
            raise RuntimeError(f"llama_model_quantize to {args.precision} failed")

    return os.path.join(protocol.once(os.path.join(args.work, args.precision), quantize), "model.gguf")


class Decoder:
    """One llama.cpp model and context: ``decode(rows, positions, want_logits)`` runs one ``llama_decode``."""

    def __init__(self, path, threads, tokens, sequences):
        import llama_cpp as L

        self.L = L
        L.llama_backend_init()
        model_params = L.llama_model_default_params()
        model_params.use_extra_bufts = EXTRA_BUFFERS
        self.model = L.llama_model_load_from_file(path.encode(), model_params)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {path}")
        params = L.llama_context_default_params()
        params.n_ctx = tokens + 16 * sequences
        params.n_batch = params.n_ubatch = tokens
        params.n_seq_max = sequences
        params.n_threads = params.n_threads_batch = threads
        self.ctx = L.llama_init_from_model(self.model, params)
        self.vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(self.model))
        self.batch = L.llama_batch_init(tokens, 0, sequences)

    def clear(self):
        self.L.llama_memory_clear(self.L.llama_get_memory(self.ctx), True)

    def decode(self, entries):
        """ENTRIES: (token, position, sequence, want_logits); returns the logits rows asked for, in order."""
        import numpy as np

        b = self.batch
        for j, (token, pos, seq, logits) in enumerate(entries):
            b.token[j], b.pos[j], b.n_seq_id[j], b.logits[j] = token, pos, 1, logits
            b.seq_id[j][0] = seq
        b.n_tokens = len(entries)
        if self.L.llama_decode(self.ctx, b) != 0:
            raise RuntimeError("llama_decode failed")
        rows = [j for j, e in enumerate(entries) if e[3]]
        return np.stack([np.ctypeslib.as_array(self.L.llama_get_logits_ith(self.ctx, j), (self.vocab,)) for j in rows])


def main():
    args = protocol.parse_args(__doc__, list(FTYPES))
    path = build(args)
    weights = protocol.file_bytes(path)
    if args.score:
        chunks = protocol.load_chunks(args)
        decoder = Decoder(path, args.threads, max(len(c) for c in chunks), 1)
        logits = []
        for chunk in chunks:
            decoder.clear()
            logits.append(decoder.decode([(t, i, 0, True) for i, t in enumerate(chunk)]).copy())
        return protocol.scored(SYSTEM, args, logits, weights)

    rows = protocol.load_prompts(args)
    p, b = args.prompt_tokens, args.batch
    decoder = Decoder(path, args.threads, b * (p + args.new_tokens), b)

    def generate(n):
        decoder.clear()
        start = time.perf_counter()
        entries = [(t, i, s, i == p - 1) for s, row in enumerate(rows) for i, t in enumerate(row)]
        nxt = decoder.decode(entries).argmax(-1)
        first = time.perf_counter()
        out = [int(nxt[0])]
        for step in range(1, n):
            nxt = decoder.decode([(int(nxt[s]), p + step - 1, s, True) for s in range(b)]).argmax(-1)
            out.append(int(nxt[0]))
        end = time.perf_counter()
        return first - start, (n - 1) * b / (end - first) if n > 1 else None, out

    protocol.rounds(SYSTEM, args, generate, weights, PACKAGES)


if __name__ == "__main__":
    protocol.run(SYSTEM, main)
