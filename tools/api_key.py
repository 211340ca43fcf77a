"""`python -m tools.api_key`: print a new backend API key of the recognisable form.

`tck_` + 43 base64url characters (32 random bytes) + `_` + an 8-hex check: a presented key of this
form that matches no cached key forces a re-read of the keys secret at once (a key just added by a
rotation works immediately), while random or mistyped tokens cannot use that re-read up (security
review 3, G5; docs/security.md). Add the key to the `api_keys` list of the ApiKeysSecretArn secret.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import teams_connect.rules.security  # noqa: F401
except ImportError:  # run from a checkout without PYTHONPATH=layers/core
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "layers" / "core"))

from teams_connect.rules.security import new_api_key


def main() -> int:
    print(new_api_key())
    return 0


if __name__ == "__main__":
    sys.exit(main())
