"""A Jupyter kernel for bash: one persistent bash process per context, so variables, the
working directory and functions carry over between executions.

Each execution writes the code to a private file and has bash `source` it with stdin from
/dev/null (so a command that reads stdin cannot swallow the kernel's own commands), then
print a unique marker with the exit status on stdout. stdout and stderr are streamed to the
client as they arrive until the marker appears.

Interrupts: ipykernel starts with SIGINT ignored, and an ignored signal stays ignored
across exec, so bash is started with SIGINT restored to its default. An interrupt (SIGINT
to the kernel) is passed on to bash's process group; bash's INT trap returns from the
sourced file, so bash itself survives and reports status 130. If bash exits (`exit`, or
killed), the execution reports it and the next one gets a new bash.

A non-zero exit status is reported as an error, as E2B does for its bash kernel.
"""

import os
import secrets
import selectors
import shlex
import shutil
import signal
import subprocess
import tempfile

from ipykernel.kernelapp import IPKernelApp
from ipykernel.kernelbase import Kernel

# Returns from the sourced file on SIGINT; `return` outside a sourced file (bash idle) is an
# error, which is silenced.
_BASH_SETUP = "trap 'return 130 2>/dev/null' INT\n"


class BashKernel(Kernel):
    implementation = "isobox_bash"
    implementation_version = "1.1"
    language = "bash"
    language_version = "5"
    language_info = {"name": "bash", "mimetype": "text/x-sh", "file_extension": ".sh"}
    banner = "Isobox bash kernel"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._dir = tempfile.mkdtemp(prefix="isobox-bash-")
        self._code_path = os.path.join(self._dir, "code.sh")
        self._bash = None
        self._start_bash()

    def _start_bash(self):
        # A Python-level handler is reset to the default by exec; SIG_IGN would be kept.
        previous = signal.getsignal(signal.SIGINT)
        if previous == signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            self._bash = subprocess.Popen(
                ["/bin/bash", "--noprofile", "--norc"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                bufsize=0)
        finally:
            if previous == signal.SIG_IGN:
                signal.signal(signal.SIGINT, previous)
        self._bash.stdin.write(_BASH_SETUP.encode())

    def do_shutdown(self, restart):
        if self._bash and self._bash.poll() is None:
            os.killpg(self._bash.pid, signal.SIGKILL)
        shutil.rmtree(self._dir, ignore_errors=True)
        return {"status": "ok", "restart": restart}

    def _publish(self, silent, name, text):
        if text and not silent:
            self.send_response(self.iopub_socket, "stream", {"name": name, "text": text})

    def _run(self, code, silent):
        """Runs `code`; returns (exit status or None if bash exited, interrupted)."""
        with open(self._code_path, "w", encoding="utf-8") as f:
            f.write(code)
        marker = "__isobox_done_" + secrets.token_hex(8)
        self._bash.stdin.write(
            f"source {shlex.quote(self._code_path)} </dev/null; printf '\\n{marker} %d\\n' \"$?\"\n".encode())
        selector = selectors.DefaultSelector()
        selector.register(self._bash.stdout, selectors.EVENT_READ, "stdout")
        selector.register(self._bash.stderr, selectors.EVENT_READ, "stderr")
        pending = {"stdout": b"", "stderr": b""}
        status, held, interrupted = None, False, False
        try:
            while status is None and selector.get_map():
                try:
                    events = selector.select()
                except KeyboardInterrupt:
                    interrupted = True
                    os.killpg(self._bash.pid, signal.SIGINT)
                    continue
                for key, _ in events:
                    chunk = os.read(key.fileobj.fileno(), 65536)
                    if not chunk:
                        selector.unregister(key.fileobj)
                        continue
                    if key.data == "stderr":
                        self._publish(silent, "stderr", chunk.decode(errors="replace"))
                        continue
                    lines = (pending["stdout"] + chunk).split(b"\n")
                    pending["stdout"] = lines.pop()
                    out = []
                    for line in lines:
                        text = line.decode(errors="replace")
                        if text.startswith(marker):
                            status = int(text.split()[-1])
                            break
                        # An empty line is held back: the one printf writes before the
                        # marker is not the user's.
                        if held:
                            out.append("\n")
                            held = False
                        if text:
                            out.append(text + "\n")
                        else:
                            held = True
                    self._publish(silent, "stdout", "".join(out))
        finally:
            selector.close()
        if status is None:
            self._publish(silent, "stdout", pending["stdout"].decode(errors="replace"))
        # Whatever bash wrote to stderr before the marker is in the pipe by now.
        os.set_blocking(self._bash.stderr.fileno(), False)
        try:
            self._publish(silent, "stderr", (os.read(self._bash.stderr.fileno(), 1 << 20) or
                                             b"").decode(errors="replace"))
        except (BlockingIOError, OSError):
            pass
        finally:
            os.set_blocking(self._bash.stderr.fileno(), True)
        return status, interrupted

    def do_execute(self, code, silent, store_history=True, user_expressions=None,
                   allow_stdin=False):
        if self._bash.poll() is not None:
            self._start_bash()
        try:
            status, interrupted = self._run(code, silent)
        except BrokenPipeError:
            status, interrupted = None, False
        if status == 0:
            return {"status": "ok", "execution_count": self.execution_count, "payload": [],
                    "user_expressions": {}}
        if status is None:
            code = self._bash.wait()
            content = {"ename": "BashExited",
                       "evalue": f"bash exited with status {code}; the next execution starts "
                                 "a new bash (its variables are lost)",
                       "traceback": []}
        elif interrupted:
            content = {"ename": "KeyboardInterrupt", "evalue": "interrupted", "traceback": []}
        else:
            content = {"ename": "BashError", "evalue": f"exit status {status}",
                       "traceback": []}
        if not silent:
            self.send_response(self.iopub_socket, "error", content)
        return {"status": "error", "execution_count": self.execution_count, **content}


if __name__ == "__main__":
    IPKernelApp.launch_instance(kernel_class=BashKernel)
