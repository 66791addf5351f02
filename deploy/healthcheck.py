"""The container's HEALTHCHECK: GET /healthz on the replica's own WEBHOOK_LISTEN address.

Exit 0 when the bot answers 200 (its database answers), 1 otherwise. Only a bot in webhook
mode listens: in polling mode there is nothing to ask, so run that container with
`--no-healthcheck` (compose: `healthcheck: {disable: true}`). Standard library only: the
image has no curl, and the check must not import the bot (seconds on a small machine).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

DEFAULT_LISTEN = "127.0.0.1:8080"
TIMEOUT = 4.0


def probe_url(listen: str) -> str:
    """Where to ask: the listen address, with a wildcard host replaced by loopback."""
    host, _, port = listen.strip().rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/healthz"


def main() -> int:
    url = probe_url(os.environ.get("WEBHOOK_LISTEN") or DEFAULT_LISTEN)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            healthy = response.status == 200
    except (urllib.error.URLError, OSError, ValueError) as error:
        print(f"unhealthy: {url}: {error}", file=sys.stderr)
        return 1
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
