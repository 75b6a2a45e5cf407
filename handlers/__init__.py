"""Conversation flows, one module per flow, platform-neutral. Registered in handlers.registry."""
