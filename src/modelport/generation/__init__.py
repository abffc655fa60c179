"""Generation: a decoder graph with a KV cache, the loop that decodes with it, and how tokens are chosen.

One stack that ``generate``, ``verify``, serving (HTTP, Triton's Python backend, Ray) and benchmarks share::

    cache.py     the KV cache between steps, kept on the runtime's side (ONNX Runtime IO binding)
    sampling.py  Decoding options; repetition penalty, temperature, top-k, top-p; greedy or seeded sampling
    loop.py      decode(): a left-padded batch, step by step, stop at eos / stop strings / length;
                 Continuation: one prompt's tokens, text and stop
    scheduler.py continuous batching: sequences join and leave a running batch between decode steps
    model.py     LanguageModel: a generation bundle + tokenizer; generate(), stream(), score(), raw calls
    seq2seq.py   Seq2SeqModel: an encoder-decoder bundle (T5, BART, Marian, Whisper): the encoder once per
                 request (cross-attention keys/values held by the cache), then the same loop
    audio.py     16 kHz mono samples from an array or a WAV file (Whisper's input)
    api.py       load(): a LanguageModel / Seq2SeqModel for a generation bundle, a plain Runner for any other
"""
