"""A Jupyter kernel for bash: one persistent bash process per context, so variables, the
working directory and functions carry over between executions.

Each execution writes the code to bash's stdin followed by a line that prints a unique
marker with the exit status; output is streamed to the client line by line until the
marker appears. An interrupt (SIGINT to the kernel) is passed on to bash's process group.
A non-zero exit status is reported as an error, as E2B does for its bash kernel.
"""

import os
import secrets
import signal
import subprocess
import sys

from ipykernel.kernelapp import IPKernelApp
from ipykernel.kernelbase import Kernel


class BashKernel(Kernel):
    implementation = "isobox_bash"
    implementation_version = "1.0"
    language = "bash"
    language_version = "5"
    language_info = {"name": "bash", "mimetype": "text/x-sh", "file_extension": ".sh"}
    banner = "Isobox bash kernel"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._bash = subprocess.Popen(
            ["/bin/bash", "--noprofile", "--norc"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            bufsize=0)

    def _send(self, text):
        self._bash.stdin.write(text.encode())
        self._bash.stdin.flush()

    def do_execute(self, code, silent, store_history=True, user_expressions=None,
                   allow_stdin=False):
        marker = "__isobox_done_" + secrets.token_hex(8)
        self._send(code.rstrip("\n") + f"\nprintf '\\n{marker} %d\\n' \"$?\"\n")
        status, pending, held = None, b"", False
        while status is None:
            try:
                chunk = os.read(self._bash.stdout.fileno(), 65536)
            except KeyboardInterrupt:
                os.killpg(self._bash.pid, signal.SIGINT)
                continue
            if not chunk:
                status = -1
                break
            pending += chunk
            lines = pending.split(b"\n")
            pending = lines.pop()
            out = []
            for line in lines:
                text = line.decode(errors="replace")
                if text.startswith(marker):
                    status = int(text.split()[-1])
                    break
                # An empty line is held back: the one printf writes before the marker is
                # not the user's.
                if held:
                    out.append("\n")
                    held = False
                if text:
                    out.append(text + "\n")
                else:
                    held = True
            if out and not silent:
                self.send_response(self.iopub_socket, "stream",
                                   {"name": "stdout", "text": "".join(out)})
        if status == 0:
            return {"status": "ok", "execution_count": self.execution_count, "payload": [],
                    "user_expressions": {}}
        reason = "bash exited" if status == -1 else f"exit status {status}"
        content = {"ename": "BashError", "evalue": reason, "traceback": []}
        if not silent:
            self.send_response(self.iopub_socket, "error", content)
        return {"status": "error", "execution_count": self.execution_count, **content}


if __name__ == "__main__":
    IPKernelApp.launch_instance(kernel_class=BashKernel)
