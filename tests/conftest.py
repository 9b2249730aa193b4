"""Make the repository's module_utils importable as ansible.module_utils.*, as ansible.cfg does."""
import os
import sys

import ansible.module_utils

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ansible.module_utils.__path__.append(os.path.join(ROOT, "module_utils"))  # type: ignore[attr-defined]
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# manager_api/__init__.py turns gRPC core's fork handlers off, but only takes effect when it runs before grpc is
# first imported; test modules import grpc first, and the manager servers they start then fork ansible-playbook
# children that die before exec (jobs "failed (rc None)", about 1 run in 10). So the tests set it first too.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
