"""Put first on PYTHONPATH by tests/test_bad_inputs.py: a machine without dlib, even where the
dev extra installed it."""
raise ImportError("dlib is hidden by facetrack's tests")
