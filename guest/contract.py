"""What the guest promises the host (see docs/ARCHITECTURE.md, Conventions)."""

MARKER = "COCOS-GUEST-READY"  # on the serial console once eth0 has an address
AGENT_MISSING_MARKER = "COCOS-AGENT-MISSING"  # the image was built before agent/ existed
AGENT_PORT = 7002  # the agent's gRPC port inside the guest (AGENT_GRPC_PORT)
