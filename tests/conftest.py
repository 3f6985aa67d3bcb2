"""Test setup shared by every test module.

* The Keras ports (keras-bert, keras-xlnet, keras-pos-embd) need tf-keras, which TensorFlow 2.21
  uses only when TF_USE_LEGACY_KERAS=1 and TF_KERAS=1 are set before TensorFlow is imported:
  this file is imported by pytest before any test module, so it sets them here.
* Hypothesis profiles: "ci" (derandomized: the same examples every run, chosen when the CI
  environment variable is set), "dev" (random, the default elsewhere) and "thorough"
  (many more examples). Choose one with HYPOTHESIS_PROFILE=name.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter

from hypothesis import HealthCheck, settings  # noqa: E402

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", derandomize=True, max_examples=30, print_blob=True, **_common)
settings.register_profile("dev", max_examples=30, **_common)
settings.register_profile("thorough", max_examples=500, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
