#!/usr/bin/python3
"""runCode('1+1') round trip: isobox-interpreter (HTTP + NDJSON over its unix socket) against
the same kind of kernel driven directly by jupyter_client, side by side in one run; and the
cold start of the interpreter (process start → first result).

    bench/interpreter_roundtrip.py [--interpreter build/debug/bin/isobox-interpreter] [-n 300]

Needs Debian's python3-jupyter-client and python3-ipykernel. Prints a table; asserts nothing.
"""

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import tempfile
import time

from jupyter_client.manager import start_new_kernel


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost")
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def execute(connection, code):
    connection.request("POST", "/execute", json.dumps({"code": code}),
                       {"Content-Type": "application/json"})
    response = connection.getresponse()
    lines = [json.loads(line) for line in response.read().splitlines() if line]
    assert lines[-1]["type"] == "end_of_execution", lines
    return lines


def percentiles(samples):
    ordered = sorted(samples)
    p = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]
    return statistics.median(ordered) * 1000, p(0.99) * 1000


def bench_direct(n):
    manager, client = start_new_kernel(kernel_name="python3")
    try:
        samples = []
        for i in range(n + 20):
            start = time.perf_counter()
            reply = client.execute_interactive("1+1", output_hook=lambda msg: None)
            elapsed = time.perf_counter() - start
            assert reply["content"]["status"] == "ok"
            if i >= 20:
                samples.append(elapsed)
        return samples
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def bench_interpreter(binary, n):
    workdir = tempfile.mkdtemp(prefix="isobox-bench-")
    path = os.path.join(workdir, "interpreter.sock")
    started = time.perf_counter()
    process = subprocess.Popen([binary, "--socket", path, "--cwd", workdir,
                                "--default-contexts", "python", "--log-level", "warn"])
    try:
        while not os.path.exists(path):
            time.sleep(0.001)
        connection = UnixConnection(path)
        lines = execute(connection, "1+1")
        cold = time.perf_counter() - started
        assert any(l.get("text") == "2" for l in lines), lines
        samples = []
        for i in range(n + 20):
            start = time.perf_counter()
            execute(connection, "1+1")
            if i >= 20:
                samples.append(time.perf_counter() - start)
        return cold, samples
    finally:
        process.terminate()
        process.wait()


def main():
    parser = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--interpreter",
                        default=os.path.join(here, "..", "build", "debug", "bin",
                                             "isobox-interpreter"))
    parser.add_argument("-n", type=int, default=300)
    args = parser.parse_args()
    direct = bench_direct(args.n)
    cold, via = bench_interpreter(args.interpreter, args.n)
    d50, d99 = percentiles(direct)
    v50, v99 = percentiles(via)
    print(f"runCode('1+1'), {args.n} runs after 20 warm-up runs, same machine, same kernel")
    print(f"{'path':<44} {'p50 ms':>8} {'p99 ms':>8}")
    print(f"{'jupyter_client (direct ZeroMQ)':<44} {d50:8.2f} {d99:8.2f}")
    print(f"{'isobox-interpreter (HTTP+NDJSON, unix socket)':<44} {v50:8.2f} {v99:8.2f}")
    print(f"{'overhead of isobox-interpreter':<44} {v50 - d50:8.2f} {v99 - d99:8.2f}")
    print(f"{'cold start: interpreter start → first result':<44} {cold * 1000:8.0f}")


if __name__ == "__main__":
    main()
