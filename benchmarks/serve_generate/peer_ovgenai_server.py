"""Peer: OpenVINO GenAI's continuous-batching pipeline behind a minimal streamed ``/v1/completions``, for the
serve-generate benchmark. OpenVINO GenAI has no HTTP server of its own (OpenVINO Model Server, which wraps
this same pipeline, is not on the package index), so this file is the thinnest one that lets the benchmark's
load generator reach it: the standard library's threading HTTP server, one thread stepping the pipeline.

Requests are token ids (the load generator's ``prompt``), greedy, ``max_tokens`` new tokens,
``ignore_eos``; each new token is one SSE event whose text is the stand-in tokenizer's word for it
(``t<id> ``), then a usage event and ``[DONE]``. Prefix caching is off (every stream's prompt differs
anyway). The model folder is ``optimum-cli export openvino`` of the benchmark's model (``peer_ovgenai.py``
builds it).

    build/gen-ovgenai-env/bin/python benchmarks/serve_generate/peer_ovgenai_server.py \\
        --model DIR --port 8000 --threads 2 --max-sequences 16
"""

import argparse
import itertools
import json
import queue
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import openvino as ov
import openvino_genai as ov_genai


class Engine:
    """The pipeline and its stepping thread; ``submit`` gives a queue of token lists (None: finished)."""

    def __init__(self, folder: str, threads: int, max_sequences: int) -> None:
        config = ov_genai.SchedulerConfig()
        config.enable_prefix_caching = False
        config.max_num_seqs = max_sequences
        config.cache_size = 2  # GB of paged KV cache: 16 streams of 256 tokens need far less
        self.pipe = ov_genai.ContinuousBatchingPipeline(folder, config, "CPU", {"INFERENCE_NUM_THREADS": threads})
        self.cond = threading.Condition()
        self.live: dict[int, tuple] = {}
        self.ids = itertools.count()
        threading.Thread(target=self._loop, daemon=True).start()

    def submit(self, prompt: list[int], max_tokens: int, ignore_eos: bool) -> "queue.Queue":
        config = ov_genai.GenerationConfig(max_new_tokens=max_tokens, ignore_eos=ignore_eos, do_sample=False)
        out: queue.Queue = queue.Queue()
        with self.cond:
            rid = next(self.ids)
            handle = self.pipe.add_request(rid, ov.Tensor(np.array([prompt], np.int64)), config)
            self.live[rid] = (handle, out)
            self.cond.notify()
        return out

    def _loop(self) -> None:
        while True:
            with self.cond:
                while not self.live:
                    self.cond.wait()
            self.pipe.step()
            with self.cond:
                for rid, (handle, out) in list(self.live.items()):
                    running = handle.get_status() == ov_genai.GenerationStatus.RUNNING
                    if handle.can_read():
                        for piece in handle.read().values():  # the tokens since the last read
                            out.put(list(piece.generated_ids))
                    if not running:
                        out.put(None)
                        del self.live[rid]


def handler(engine: Engine, name: str):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            body = json.dumps({"object": "list", "data": [{"id": name, "object": "model"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            prompt = [int(t) for t in request["prompt"]]
            tokens = engine.submit(prompt, int(request.get("max_tokens", 16)), bool(request.get("ignore_eos")))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            count = 0
            while (piece := tokens.get()) is not None:
                for token in piece:
                    count += 1
                    self._event({"object": "text_completion", "choices": [{"index": 0, "text": f"t{token} "}]})
            usage = {"prompt_tokens": len(prompt), "completion_tokens": count, "total_tokens": len(prompt) + count}
            self._event({"object": "text_completion", "choices": [], "usage": usage})
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

        def _event(self, data: dict) -> None:
            self.wfile.write(f"data: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()

    return Handler


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-sequences", type=int, default=16)
    p.add_argument("--name", default="lm")
    args = p.parse_args()
    engine = Engine(args.model, args.threads, args.max_sequences)
    ThreadingHTTPServer.request_queue_size = 64  # the listen backlog (5 by default): 16 streams connect at once
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler(engine, args.name))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
