"""Helper service: prints "ready pid N", then one line per signal received.

--ignore-term: SIGTERM is reported but ignored (the supervisor must SIGKILL after the grace).
Otherwise SIGTERM/SIGINT end it with exit code 0 after reporting.
"""

import os
import signal
import sys

ignore_term = "--ignore-term" in sys.argv
watched = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2]
signal.pthread_sigmask(signal.SIG_BLOCK, watched)
print(f"ready pid {os.getpid()}", flush=True)
while True:
    signum = signal.sigwait(watched)
    print(f"signal {signal.Signals(signum).name}", flush=True)
    if signum in (signal.SIGTERM, signal.SIGINT) and not (ignore_term and signum == signal.SIGTERM):
        sys.exit(0)
