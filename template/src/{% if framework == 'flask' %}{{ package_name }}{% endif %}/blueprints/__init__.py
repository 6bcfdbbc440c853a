"""The HTTP layer: one blueprint per resource, registered by ``create_app``."""
