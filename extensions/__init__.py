"""servicecraft's template-side Python: the option rules and the Jinja extension."""
