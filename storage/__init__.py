"""Models, migrations and domain operations. Domain functions take a session; the caller commits."""
