#!/usr/bin/python3
"""Peer timings through jupyter_client directly (Debian python3-jupyter-client), for
bench/run. Prints one JSON object of millisecond samples on stdout.

    jupyter_direct.py roundtrip N   # runCode('1+1') equivalent on one running kernel
    jupyter_direct.py cold N        # start_new_kernel -> first '1+1' result, N times
"""

import json
import sys
import time

from jupyter_client.manager import start_new_kernel


def run(client):
    reply = client.execute_interactive("1+1", output_hook=lambda msg: None)
    if reply["content"]["status"] != "ok":
        raise SystemExit(f"1+1 failed: {reply['content']}")


def roundtrip(n):
    manager, client = start_new_kernel(kernel_name="python3")
    try:
        for _ in range(5):
            run(client)
        samples = []
        for _ in range(n):
            start = time.perf_counter()
            run(client)
            samples.append((time.perf_counter() - start) * 1000)
        return samples
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def cold(n):
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        manager, client = start_new_kernel(kernel_name="python3")
        try:
            run(client)
            samples.append((time.perf_counter() - start) * 1000)
        finally:
            client.stop_channels()
            manager.shutdown_kernel(now=True)
    return samples


if __name__ == "__main__":
    mode, count = sys.argv[1], int(sys.argv[2])
    samples = roundtrip(count) if mode == "roundtrip" else cold(count)
    print(json.dumps({"samples": samples}))
