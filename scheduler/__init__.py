"""The GPU pool scheduler: a pure policy core, wrapped by storage, HTTP and actuators."""
