"""Typed agent errors, each carrying the gRPC status the servicer answers with.

The domain code raises these; only the servicer turns them into gRPC aborts, so messages stay precise and no
traceback ever reaches a client.
"""

import grpc


class AgentError(Exception):
    """Base class: `code` is the gRPC status sent with the message."""

    code = grpc.StatusCode.INTERNAL


class InvalidInput(AgentError):
    """The request itself is wrong (bad manifest, undeclared hash); nothing was changed."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class OutOfOrder(AgentError):
    """The call is valid but not in the current state (e.g. Algo before Run)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class AlreadyUploaded(AgentError):
    """The same content was already uploaded for this computation."""

    code = grpc.StatusCode.ALREADY_EXISTS


class AlgorithmFailed(AgentError):
    """The algorithm exited non-zero or was killed; the message carries the status and stderr tail."""

    code = grpc.StatusCode.ABORTED


class AlgorithmTimedOut(AgentError):
    """The algorithm ran past the computation's ttl and its process group was killed."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class OutputTooLarge(AgentError):
    """The algorithm wrote more than the configured output limit."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class NoAttestationDevice(AgentError):
    """No TEE attestation device exists in this guest: there is no report to give, and we never fake one."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class AttestationFailed(AgentError):
    """The device exists but the kernel or firmware refused the report request."""

    code = grpc.StatusCode.UNAVAILABLE
