"""The image's HEALTHCHECK: exit 0 when the service on this container answers /health with 200."""

import os
import sys
import urllib.request

url = f"http://127.0.0.1:{os.environ.get('FV_PORT', '8000')}/health"
try:
    with urllib.request.urlopen(url, timeout=4) as response:
        sys.exit(0 if response.status == 200 else 1)
except OSError as error:
    print(f"{url}: {error}", file=sys.stderr)
    sys.exit(1)
