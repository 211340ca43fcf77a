"""``python -m local.nylas_emulator``: run the emulator in the foreground (Ctrl-C stops it)."""

from __future__ import annotations

import argparse
import os
import sys

import uvicorn

from .app import create_app
from .config import (
    DEFAULT_API_KEY,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_HOST,
    DEFAULT_PORT,
    EmulatorConfig,
)


def parse_args(argv: list[str] | None = None) -> EmulatorConfig:
    env = os.environ
    parser = argparse.ArgumentParser(
        prog="python -m local.nylas_emulator", description="Local Nylas emulator"
    )
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=int(env.get("NYLAS_EMULATOR_PORT", DEFAULT_PORT)))
    parser.add_argument("--client-id", default=env.get("NYLAS_EMULATOR_CLIENT_ID", DEFAULT_CLIENT_ID))
    parser.add_argument("--api-key", default=env.get("NYLAS_EMULATOR_API_KEY", DEFAULT_API_KEY))
    parser.add_argument(
        "--client-secret", default=env.get("NYLAS_EMULATOR_CLIENT_SECRET", DEFAULT_CLIENT_SECRET)
    )
    parser.add_argument("--public-url", default=None, help="base URL used in URLs the emulator hands out")
    parser.add_argument("--code-ttl-seconds", type=float, default=60.0)
    args = parser.parse_args(argv)
    return EmulatorConfig(
        host=args.host,
        port=args.port,
        client_id=args.client_id,
        api_key=args.api_key,
        client_secret=args.client_secret,
        public_url=args.public_url,
        code_ttl_seconds=args.code_ttl_seconds,
    )


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    print(
        f"Nylas emulator on {config.base_url} (client id {config.client_id}); "
        f"control API {config.base_url}/_emulator/"
    )
    sys.stdout.flush()
    uvicorn.run(create_app(config), host=config.host, port=config.port, log_level="info", lifespan="off")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
