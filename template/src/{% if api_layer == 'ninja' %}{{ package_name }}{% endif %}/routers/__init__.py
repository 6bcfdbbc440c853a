"""The HTTP layer: one router per resource, mounted by ``api``."""
