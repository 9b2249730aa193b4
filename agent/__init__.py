"""Reference Cocos agent: gRPC `agent.AgentService` that runs one computation inside a confidential VM.

Depends only on the standard library, grpcio, grpcio-health-checking and protobuf, because the guest image
ships nothing else. See agent/README.md for the contract (states, hash rule, limits, error codes).
"""
