"""``python -m bench.peers.drf.serve DB PORT``: the DRF peer served by waitress (8 threads), like ``crm serve``."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> None:
    import waitress

    from bench.peers import drf

    drf.setup(argv[0])
    waitress.serve(drf.wsgi_app(), host="127.0.0.1", port=int(argv[1]), threads=8, _quiet=True)


if __name__ == "__main__":
    main(sys.argv[1:])
