#!/usr/bin/env python3
"""Load test for `mamba2 serve`, on loopback only, bounded in requests and time.

Starts the release binary on a free loopback port (or uses --url, which must be loopback), then
for each concurrency level runs `--requests` completions (greedy, `--max-tokens` each) from that
many client threads, stopping early at `--seconds` per level. Prints one JSON line per level:
requests/s, completion tokens/s, median and p90 latency, and the server's largest batch.

    swift build -c release
    python3 scripts/load_serve.py                      # the built-in model, 1, 4 and 8 clients
    python3 scripts/load_serve.py --model /path/to/mamba2-130m --max-tokens 64

Needs only the Python standard library.
"""
import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

PROMPTS = [
    "def fibonacci(n):", "import os\n", "class Stack:\n    def __init__(self):", "for i in range(10):",
    "def read_file(path):\n    with open(path) as f:", "x = [", "# Sort a list\n", "def main():\n    args =",
]


def post(host, port, body, timeout):
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {data[:200]!r}")
        return json.loads(data)
    finally:
        connection.close()


def run_level(host, port, clients, requests, seconds, max_tokens):
    latencies, tokens, errors = [], [0], []
    lock = threading.Lock()
    issued = [0]
    deadline = time.monotonic() + seconds

    def client(number):
        while True:
            with lock:
                if issued[0] >= requests or time.monotonic() >= deadline:
                    return
                index = issued[0]
                issued[0] += 1
            body = {"prompt": PROMPTS[index % len(PROMPTS)], "max_tokens": max_tokens, "temperature": 0}
            start = time.monotonic()
            try:
                reply = post(host, port, body, timeout=seconds + 60)
            except Exception as error:  # noqa: BLE001 - reported, not hidden
                with lock:
                    errors.append(str(error))
                continue
            with lock:
                latencies.append(time.monotonic() - start)
                tokens[0] += reply["usage"]["completion_tokens"]

    start = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - start
    latencies.sort()
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": len(errors),
        "seconds": round(elapsed, 2),
        "requests_per_second": round(len(latencies) / elapsed, 2),
        "completion_tokens_per_second": round(tokens[0] / elapsed, 1),
        "latency_median_s": round(statistics.median(latencies), 3) if latencies else None,
        "latency_p90_s": round(latencies[int(0.9 * (len(latencies) - 1))], 3) if latencies else None,
        "first_error": errors[0] if errors else None,
    }


def health(host, port):
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request("GET", "/health")
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=".build/release/mamba2")
    parser.add_argument("--model", help="model folder (default: the built-in model)")
    parser.add_argument("--url", help="an already running server, e.g. http://127.0.0.1:8080 (loopback only)")
    parser.add_argument("--clients", default="1,4,8")
    parser.add_argument("--requests", type=int, default=32, help="requests per level (at most)")
    parser.add_argument("--seconds", type=float, default=60, help="time per level (at most)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--max-batch", type=int, default=8)
    args = parser.parse_args()

    server = None
    if args.url:
        url = urllib.parse.urlparse(args.url)
        host, port = url.hostname, url.port or 80
        if host not in ("127.0.0.1", "localhost", "::1"):
            sys.exit("load tests run on loopback only")
    else:
        command = [args.binary, "serve", "--port", "0", "--max-batch", str(args.max_batch), "--max-queue", "256"]
        if args.model:
            command += ["--model", args.model]
        server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        line = server.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if not match:
            server.kill()
            sys.exit(f"the server did not start: {line}{server.stderr.read()}")
        host, port = "127.0.0.1", int(match.group(1))
    try:
        print(json.dumps({"server": f"http://{host}:{port}", "max_tokens": args.max_tokens, "cpus": os.cpu_count()}))
        post(host, port, {"prompt": PROMPTS[0], "max_tokens": 8, "temperature": 0}, timeout=120)  # warm-up
        for clients in [int(c) for c in args.clients.split(",")]:
            result = run_level(host, port, clients, args.requests, args.seconds, args.max_tokens)
            status = health(host, port)
            result["server_running_after"] = status["running"]
            result["largest_batch_so_far"] = status["largest_batch"]
            print(json.dumps(result), flush=True)
    finally:
        if server:
            server.terminate()
            server.wait(timeout=60)


if __name__ == "__main__":
    main()
