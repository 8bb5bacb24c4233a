"""Start a command that receives SIGTERM when the sweep that started it dies (Linux only).

The sweep runs `python -I _deathsig.py SWEEP_PID COMMAND...` (a script of the standard library
alone, so it starts in milliseconds). It asks the kernel for SIGTERM on the death of its parent
thread (prctl PR_SET_PDEATHSIG), a request that survives exec, then becomes COMMAND: a trainer
whose sweep is SIGKILLed stops gracefully instead of running on as an orphan.
"""

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def main() -> None:
    parent, command = int(sys.argv[1]), sys.argv[2:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")
    if os.getppid() != parent:  # the sweep died before the request was in place
        sys.exit(128 + signal.SIGTERM)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
