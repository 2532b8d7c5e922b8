"""The local server's cost: streaming through HTTP against the engine directly.

Same prompt, sampling, seed and max_tokens on both paths (end-of-text banned so every run makes
the same count), runs alternating. Direct: EngineClient.generate, timed at the client. Server: a
streaming POST /v1/completions read from a plain socket, timed from the connect to each SSE chunk.
Prints medians: decode tokens/s (after the first token) and its ratio, and time to first token with
the difference the server adds.

    .venv/bin/python bench/server.py [--runs 7] [--tokens 200]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import time
from urllib.parse import urlsplit

from desktop_llm.engine.client import EngineClient
from desktop_llm.server.config import ServerConfig
from desktop_llm.server.http_server import LocalServer
from desktop_llm.server.openai_requests import OPENAI_DEFAULTS

PROMPT = "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle."
SAMPLING = {"temperature": 0.8, "top_p": 0.95, "logit_bias": {"0": -100, "2": -100}}


def direct(client: EngineClient, load: dict, n: int, seed: int) -> tuple[float, float, int]:
    params = {**OPENAI_DEFAULTS, **SAMPLING, "logit_bias": SAMPLING["logit_bias"], "max_tokens": n, "seed": seed}
    sent = time.perf_counter()
    stream = client.generate(prompt=PROMPT, params=params, model_load=load)
    times = [time.perf_counter() for _ in stream.tokens()]
    return times[0] - sent, (len(times) - 1) / (times[-1] - times[0]), len(times)


def served(host: str, port: int, path: str, model: str, n: int, seed: int) -> tuple[float, float, int]:
    # A plain socket reader, so the figure is the server's cost, not a Python HTTP parser's.
    body = json.dumps({"model": model, "prompt": PROMPT, "max_tokens": n, "seed": seed, "stream": True,
                       **SAMPLING}).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    sent = time.perf_counter()
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(head + body)
    times: list[float] = []
    seen = b""
    while b"data: [DONE]" not in seen:
        data = sock.recv(65536)
        if not data:
            break
        now = time.perf_counter()
        seen = seen[-64:] + data
        times += [now] * data.count(b"\"text\": \"")
    sock.close()
    times = times[:n]  # the last chunk (finish reason, empty text) is not a token
    return times[0] - sent, (len(times) - 1) / (times[-1] - times[0]), len(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--tokens", type=int, default=200)
    args = ap.parse_args()

    client = EngineClient()
    server = LocalServer(client, ServerConfig(port=0, idle_unload_seconds=0))
    url = urlsplit(server.start())
    ref = server.models.find(server.models.models()[0].id)
    load = server.models.load_request(ref)
    path = url.path + "/completions"
    direct(client, load, 16, 0)  # load the model and warm up both paths
    served(url.hostname, url.port, path, ref.id, 16, 0)

    rows: dict[str, list[tuple[float, float, int]]] = {"direct": [], "server": []}
    for run in range(args.runs):
        seed = 100 + run
        pair = [("direct", lambda s=seed: direct(client, load, args.tokens, s)),
                ("server", lambda s=seed: served(url.hostname, url.port, path, ref.id, args.tokens, s))]
        for name, fn in pair if run % 2 == 0 else reversed(pair):
            rows[name].append(fn())
    server.stop()
    client.shutdown()

    med = {k: (statistics.median(r[0] for r in v) * 1000, statistics.median(r[1] for r in v),
               {r[2] for r in v}) for k, v in rows.items()}
    print(f"model {ref.id}, {args.tokens} tokens, {args.runs} runs each, alternating")
    for name, (ttft, tps, counts) in med.items():
        print(f"  {name:7s} first token {ttft:6.1f} ms   decode {tps:6.1f} tokens/s   tokens/run {sorted(counts)}")
    print(f"server / direct tokens/s: {med['server'][1] / med['direct'][1]:.3f}")
    print(f"time to first token added by the server: {med['server'][0] - med['direct'][0]:+.1f} ms")


if __name__ == "__main__":
    main()
