#!/usr/bin/env python3
"""Runs a command as the foreground job of a new pseudo-terminal, as an interactive shell
runs what a user types, and acts as the terminal for the test that drives it.

    foreground_job.py COMMAND [ARG...]

A session leader (the "shell") owns the terminal; the command runs in a process group
of its own, which the shell makes the terminal's foreground group. Lines on stdin:
    intr    the user presses Ctrl-C: the terminal's interrupt character (^C) is written
            to the terminal, and the kernel's line discipline sends SIGINT to every
            process of the foreground group
Lines on stdout:
    pid N           the command runs, as pid N
    exit N          it exited with status N
    signal N        it was ended by signal N
Everything the command writes to the terminal is copied to stderr. End of stdin closes
the terminal (the shell gets SIGHUP) and ends this program.
"""
import os
import pty
import select
import signal
import sys


def shell(argv, report_fd):
    """The session leader, with the terminal as its controlling terminal."""
    go_read, go_write = os.pipe()
    job = os.fork()
    if job == 0:
        os.close(go_write)
        os.setpgid(0, 0)
        os.read(go_read, 1)  # wait until the group is the foreground one
        os.execvp(argv[0], argv)
    os.close(go_read)
    try:
        os.setpgid(job, job)  # both sides set it, as shells do: no race
    except OSError:
        pass
    # A background group may not change the foreground group unless SIGTTOU is ignored
    # (needed to take the terminal back below).
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    os.tcsetpgrp(0, job)
    os.write(go_write, b"x")
    os.close(go_write)
    os.write(report_fd, f"pid {job}\n".encode())
    _, status = os.waitpid(job, 0)
    if os.WIFSIGNALED(status):
        os.write(report_fd, f"signal {os.WTERMSIG(status)}\n".encode())
    else:
        os.write(report_fd, f"exit {os.WEXITSTATUS(status)}\n".encode())
    os.tcsetpgrp(0, os.getpgrp())
    os.close(report_fd)
    while True:  # an idle shell, until the terminal goes away (SIGHUP)
        signal.pause()


def main():
    argv = sys.argv[1:]
    if not argv:
        sys.exit("usage: foreground_job.py COMMAND [ARG...]")
    report_read, report_write = os.pipe()
    leader, master = pty.fork()
    if leader == 0:
        os.close(report_read)
        try:
            shell(argv, report_write)
        finally:
            os._exit(1)
    os.close(report_write)
    inputs = [master, report_read, sys.stdin.fileno()]
    pending = b""
    while report_read in inputs or sys.stdin.fileno() in inputs:
        ready, _, _ = select.select(inputs, [], [])
        if master in ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: no process has the terminal open any more
                data = b""
            if data:
                os.write(sys.stderr.fileno(), data)
            else:
                inputs.remove(master)
        if report_read in ready:
            data = os.read(report_read, 4096)
            if data:
                os.write(sys.stdout.fileno(), data)
            else:
                inputs.remove(report_read)
        if sys.stdin.fileno() in ready:
            data = os.read(sys.stdin.fileno(), 4096)
            if not data:
                break
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                if line.strip() == b"intr":
                    os.write(master, b"\x03")
    os.close(master)  # hangs up the terminal: the shell gets SIGHUP
    os.waitpid(leader, 0)


if __name__ == "__main__":
    main()
