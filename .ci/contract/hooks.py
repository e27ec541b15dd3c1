"""schemathesis hooks for .ci/contract.sh.

The region policy is state every later request depends on: a fuzzed PATCH /admin/policy
may raise the minimum password length to 128, allow no file kind but `pdf` or cap
uploads at one byte, and every schema-valid password or upload after it would then be
refused (rightly — but for the rest of the run). After each policy change the run puts
back the policy the data was set up under, as an administrator would after a test.
"""

import os

import requests
import schemathesis

BASELINE = {
    "mfa_required": False,
    "password_min_length": 8,
    "access_token_ttl_secs": 3600,
    "max_file_bytes": 512 * 1024 * 1024,
    "allowed_file_kinds": ["image", "pdf", "word", "excel", "powerpoint", "text", "other"],
}


@schemathesis.hook
def after_call(context, case, response):
    if case.method.upper() != "PATCH" or not case.path.endswith("/admin/policy"):
        return
    restored = requests.patch(
        os.environ["CONTRACT_URL"] + "/api/v1/admin/policy",
        json=BASELINE,
        headers={"Authorization": "Bearer " + os.environ["ADMIN_TOKEN"]},
        timeout=30,
    )
    restored.raise_for_status()
