"""Cocos manager service: HTTP (Bottle) on 9021 and gRPC on 7001, driving playbooks through ansible-runner."""

__version__ = "0.1.0"
