"""The HTTP layer: one module per resource, routed by ``app.routes``."""
