"""Cocos manager service: HTTP (Bottle) on 9021 and gRPC on 7001, driving playbooks through ansible-runner."""

import os

# ansible-runner forks (pexpect) to start ansible-playbook while gRPC threads are busy. gRPC core's fork handlers
# then either skip ("other threads are calling into gRPC") or restart its threads in the child, which crashed the
# child before exec (SIGSEGV in event_engine; the job failed with rc None). The children never use gRPC, so the
# handlers are off; set before anything imports grpc, which is why it lives in the package's __init__.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

__version__ = "0.1.0"
