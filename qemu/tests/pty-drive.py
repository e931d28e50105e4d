#!/usr/bin/env python3
"""Drives a command on a terminal, as a person at a keyboard would.

    pty-drive.py ROWS COLS STEP... -- COMMAND [ARG...]

The command runs as the session leader on a new pseudo-terminal (Python's
pty module) of ROWS x COLS, so that it is the terminal's foreground job:
a window change reaches it as SIGWINCH and ^C as the terminal's own. Steps,
in order:

    send:TEXT       type TEXT (backslash escapes: \\n, \\x03 ...)
    expect:TEXT     wait until the output since the last expect holds TEXT
    resize:R:C      change the window to R rows, C columns

Everything the command wrote goes to stdout; the exit status is the
command's. Each expect waits at most PTY_TIMEOUT seconds (default 120).
"""

import fcntl
import os
import pty
import select
import struct
import sys
import termios
import time

TIMEOUT = float(os.environ.get("PTY_TIMEOUT", "120"))


def winsize(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def main():
    args = sys.argv[1:]
    if "--" not in args or len(args) < 4:
        sys.exit(__doc__)
    split = args.index("--")
    rows, cols, steps, command = int(args[0]), int(args[1]), args[2:split], args[split + 1:]
    pid, master = pty.fork()
    if pid == 0:
        winsize(0, rows, cols)
        os.execvp(command[0], command)
    seen = b""
    mark = 0

    def pump(wait):
        nonlocal seen
        r, _, _ = select.select([master], [], [], wait)
        if not r:
            return True
        try:
            data = os.read(master, 65536)
        except OSError:
            return False
        if not data:
            return False
        seen += data
        return True

    for step in steps:
        kind, _, arg = step.partition(":")
        if kind == "send":
            os.write(master, arg.encode().decode("unicode_escape").encode("latin-1"))
        elif kind == "resize":
            r, c = arg.split(":")
            winsize(master, int(r), int(c))
        elif kind == "expect":
            want = arg.encode().decode("unicode_escape").encode("latin-1")
            deadline = time.monotonic() + TIMEOUT
            while want not in seen[mark:]:
                left = deadline - time.monotonic()
                if left <= 0 or not pump(min(left, 1.0)):
                    sys.stdout.write(seen.decode(errors="replace"))
                    sys.exit(f"pty-drive: no {arg!r} in the output (step {step!r})")
            mark = seen.index(want, mark) + len(want)
        else:
            sys.exit(f"pty-drive: unknown step {step!r}")
    # The rest of the output, until the command's side of the terminal
    # closes; then its status (a command still running is killed).
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline and pump(1.0):
        pass
    status = None
    for _ in range(100):
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
            break
        time.sleep(0.1)
    if status is None:
        os.kill(pid, 9)
        _, status = os.waitpid(pid, 0)
    sys.stdout.write(seen.decode(errors="replace"))
    sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main()
