"""Make the repository's module_utils importable as ansible.module_utils.*, as ansible.cfg does."""
import os
import sys

import ansible.module_utils

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ansible.module_utils.__path__.append(os.path.join(ROOT, "module_utils"))  # type: ignore[attr-defined]
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
